package manifest

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// FormatVersion is the manifest format this package reads and writes.
const FormatVersion = 1

// MaxSize is the largest encoded manifest Decode accepts, in bytes. It is
// checked before any decoding.
const MaxSize = 64 << 10

// Errors. Every error returned by Decode, Validate, Check and
// CompareVersions wraps exactly one of these; test with errors.Is.
var (
	// ErrMalformed: not one well-formed, strict CBOR item of the expected
	// shape (bad bytes, duplicate keys, indefinite lengths, tags, invalid
	// UTF-8, trailing bytes, wrong types, non-integer keys).
	ErrMalformed = errors.New("manifest: malformed")
	// ErrTooLarge: the input is larger than MaxSize.
	ErrTooLarge = errors.New("manifest: too large")
	// ErrUnknownKey: a map holds a key in the core range 0..255 that this
	// format version does not define.
	ErrUnknownKey = errors.New("manifest: unknown core key")
	// ErrUnsupportedFormat: the format version is not FormatVersion.
	ErrUnsupportedFormat = errors.New("manifest: unsupported format")
	// ErrInvalid: well-formed, but a field is missing or has a value the
	// format does not allow.
	ErrInvalid = errors.New("manifest: invalid")

	// Check refusals.
	ErrWrongBoard  = errors.New("manifest: wrong board")
	ErrWrongArch   = errors.New("manifest: wrong arch")
	ErrWrongClass  = errors.New("manifest: wrong device class")
	ErrOldSequence = errors.New("manifest: old sequence")
	ErrAgentTooOld = errors.New("manifest: agent too old")
)

// Compression is how an image target is compressed on the wire. The slot
// always receives the decompressed bytes.
type Compression uint8

// Compressions. The numbers are the wire values.
const (
	CompressionNone Compression = 0
	CompressionGzip Compression = 1
	CompressionZstd Compression = 2
)

var compressionNames = [...]string{
	CompressionNone: "none",
	CompressionGzip: "gzip",
	CompressionZstd: "zstd",
}

// String returns "none", "gzip" or "zstd", or "compression(N)" for an
// unknown value.
func (c Compression) String() string {
	if int(c) < len(compressionNames) {
		return compressionNames[c]
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

func (c Compression) valid() bool { return int(c) < len(compressionNames) }

// ParseCompression is the inverse of Compression.String for known values.
func ParseCompression(s string) (Compression, error) {
	for i, name := range compressionNames {
		if s == name {
			return Compression(i), nil
		}
	}
	return 0, fmt.Errorf("manifest: compression %q is not one of none, gzip, zstd: %w", s, ErrInvalid)
}

// ComponentKind says how a component is applied.
type ComponentKind uint

// Component kinds. Kinds 2 (userspace live patch) and 3 (kernel live
// patch) are reserved in the format and refused by this version.
const KindImage ComponentKind = 1

// Image is an A/B image component: a whole image for the inactive slot of a
// slot group.
type Image struct {
	SlotGroup   string      // e.g. "rootfs"
	Target      string      // TUF target name of the (possibly compressed) image
	Size        uint64      // bytes written to the slot (decompressed size)
	SHA256      []byte      // 32 bytes, SHA-256 of the decompressed image (what lands in the slot)
	Compression Compression // how Target is compressed
}

// Component is one part of a release.
type Component struct {
	Kind  ComponentKind
	Name  string // e.g. "rootfs"
	Image *Image // set when Kind == KindImage
}

// Manifest is a decoded release manifest. The zero value is not valid; see
// Validate. A Manifest is a plain value: not safe for concurrent mutation,
// safe to read concurrently.
type Manifest struct {
	Format          uint     // must be FormatVersion
	Name            string   // release name, e.g. "v2"
	Version         string   // e.g. "2.0.0"
	DeviceClass     string   // the sequence number is per device class; empty = any
	Sequence        uint64   // anti-rollback: must be above the installed one
	Boards          []string // compatible board names; at least one
	Arch            string   // "arm64", "arm", "amd64"; empty = any
	MinAgentVersion string   // semver "X.Y.Z"; empty = any
	Components      []Component
}

// Images returns the image components in manifest order.
func (m *Manifest) Images() []*Image {
	if m == nil {
		return nil
	}
	var out []*Image
	for i := range m.Components {
		if c := &m.Components[i]; c.Kind == KindImage && c.Image != nil {
			out = append(out, c.Image)
		}
	}
	return out
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("manifest: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalid)
}

// Validate checks everything the format demands of a manifest that types
// alone do not: the format version, required fields, unique names, image
// fields and UTF-8 strings. It returns the first failure, naming the field.
// Decode and Encode both call it.
func (m *Manifest) Validate() error {
	if m == nil {
		return fmt.Errorf("manifest: nil manifest: %w", ErrInvalid)
	}
	if m.Format != FormatVersion {
		return fmt.Errorf("manifest: format %d, this agent reads %d: %w", m.Format, FormatVersion, ErrUnsupportedFormat)
	}
	if err := requireText("name", m.Name); err != nil {
		return err
	}
	if err := requireText("version", m.Version); err != nil {
		return err
	}
	for _, f := range [...]struct{ field, s string }{
		{"device class", m.DeviceClass}, {"arch", m.Arch}, {"min agent version", m.MinAgentVersion},
	} {
		if !utf8.ValidString(f.s) {
			return invalid(f.field, "not valid UTF-8")
		}
	}
	if m.MinAgentVersion != "" {
		v, err := parseVersion(m.MinAgentVersion)
		if err != nil {
			return invalid("min agent version", "%v", err)
		}
		if v.devel {
			return invalid("min agent version", "%q is a development build, not a release", m.MinAgentVersion)
		}
	}
	if len(m.Boards) == 0 {
		return invalid("boards", "empty")
	}
	if len(m.Boards) > maxArrayElements {
		return invalid("boards", "%d boards, limit %d", len(m.Boards), maxArrayElements)
	}
	seen := make(map[string]bool, len(m.Boards))
	for i, b := range m.Boards {
		field := fmt.Sprintf("boards[%d]", i)
		if err := requireText(field, b); err != nil {
			return err
		}
		if seen[b] {
			return invalid(field, "board %q listed twice", b)
		}
		seen[b] = true
	}
	if len(m.Components) == 0 {
		return invalid("components", "empty")
	}
	if len(m.Components) > maxArrayElements {
		return invalid("components", "%d components, limit %d", len(m.Components), maxArrayElements)
	}
	names := make(map[string]bool, len(m.Components))
	groups := make(map[string]bool)
	for i := range m.Components {
		c := &m.Components[i]
		field := fmt.Sprintf("components[%d]", i)
		if err := requireText(field+".name", c.Name); err != nil {
			return err
		}
		if names[c.Name] {
			return invalid(field+".name", "component %q listed twice", c.Name)
		}
		names[c.Name] = true
		if c.Kind != KindImage {
			return invalid(field+".kind", "unknown component kind %d", c.Kind)
		}
		if c.Image == nil {
			return invalid(field+".image", "missing for an image component")
		}
		if err := c.Image.validate(field + ".image"); err != nil {
			return err
		}
		if groups[c.Image.SlotGroup] {
			return invalid(field+".image.slot group", "slot group %q has two images", c.Image.SlotGroup)
		}
		groups[c.Image.SlotGroup] = true
	}
	return nil
}

func (im *Image) validate(field string) error {
	if err := requireText(field+".slot group", im.SlotGroup); err != nil {
		return err
	}
	if err := requireText(field+".target", im.Target); err != nil {
		return err
	}
	if im.Size == 0 {
		return invalid(field+".size", "zero")
	}
	if len(im.SHA256) != 32 {
		return invalid(field+".sha256", "%d bytes, want 32", len(im.SHA256))
	}
	if !im.Compression.valid() {
		return invalid(field+".compression", "unknown compression %d", uint8(im.Compression))
	}
	return nil
}

func requireText(field, s string) error {
	if s == "" {
		return invalid(field, "empty")
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	return nil
}
