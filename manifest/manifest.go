package manifest

import (
	"errors"
	"fmt"
	"strings"
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

// Component kinds. The numbers are the wire values.
const (
	KindImage       ComponentKind = 1 // a whole image for an A/B slot group
	KindUserPatch   ComponentKind = 2 // a userspace live patch (ptrace-injected)
	KindKernelPatch ComponentKind = 3 // a kernel livepatch module
)

// String names the kind as messages and status reports do.
func (k ComponentKind) String() string {
	switch k {
	case KindImage:
		return "image"
	case KindUserPatch:
		return "userspace live patch"
	case KindKernelPatch:
		return "kernel live patch"
	}
	return fmt.Sprintf("kind(%d)", uint(k))
}

// Live reports whether the kind is applied to the running system rather
// than to an A/B slot.
func (k ComponentKind) Live() bool { return k == KindUserPatch || k == KindKernelPatch }

// MaxBundles is the most bundles (target builds) one userspace live-patch
// component may name.
const MaxBundles = 64

// Image is an A/B image component: a whole image for the inactive slot of a
// slot group.
type Image struct {
	SlotGroup   string      // e.g. "rootfs"
	Target      string      // TUF target name of the (possibly compressed) image
	Size        uint64      // bytes written to the slot (decompressed size)
	SHA256      []byte      // 32 bytes, SHA-256 of the decompressed image (what lands in the slot)
	Compression Compression // how Target is compressed
}

// UserPatch is a userspace live-patch component: the same fix for one
// library or program (one soname), as one bundle per build of it. The
// agent patches every process that maps one of those builds.
type UserPatch struct {
	Soname   string        // e.g. "libc.so.6"; what status reports name
	Bundles  []PatchBundle // one per target build, build IDs unique
	Fallback string        // name of the image component with the same fix; empty = none
}

// PatchBundle names the bundle for one build of the target ELF.
type PatchBundle struct {
	BuildID []byte // the target's GNU build ID (NT_GNU_BUILD_ID), 8..64 bytes
	Target  string // TUF target name of the bundle (format: manifest/ulp)
	SHA256  []byte // 32 bytes, SHA-256 of the bundle
}

// KernelPatch is a kernel livepatch component: one module for one exact
// kernel release.
type KernelPatch struct {
	Target   string // TUF target name of the .ko
	SHA256   []byte // 32 bytes, SHA-256 of the .ko
	Release  string // the kernel release (uname -r) the module is built for
	Name     string // the livepatch name (/sys/kernel/livepatch/<Name>)
	Replace  bool   // an atomic-replace (cumulative) patch: replaces all earlier ones
	Fallback string // name of the image component with the same fix; empty = none
	// Params are the module parameters handed to finit_module at load,
	// "name=value" each (see CheckModuleParams); nil for none.
	Params []string
}

// Limits of a kernel patch's module parameters.
const (
	MaxModuleParams     = 32  // parameters per kernel patch
	MaxModuleParamName  = 64  // bytes of a parameter's name
	MaxModuleParamBytes = 256 // bytes of one "name=value"
)

// CheckModuleParams checks module parameters as the kernel's parser must
// read them, with no quoting: each is "name=value" (or a bare "name" for
// a boolean), the name of [a-z0-9_] (1..MaxModuleParamName bytes), the
// value without spaces, quotes or control characters; no name twice; at
// most MaxModuleParams of at most MaxModuleParamBytes each. The error
// wraps ErrInvalid.
func CheckModuleParams(field string, params []string) error {
	if len(params) > MaxModuleParams {
		return invalid(field, "%d module parameters, limit %d", len(params), MaxModuleParams)
	}
	seen := map[string]bool{}
	for i, p := range params {
		f := fmt.Sprintf("%s[%d]", field, i)
		if len(p) > MaxModuleParamBytes {
			return invalid(f, "%d bytes, limit %d", len(p), MaxModuleParamBytes)
		}
		name, value, _ := strings.Cut(p, "=")
		if name == "" || len(name) > MaxModuleParamName {
			return invalid(f, "parameter name must be 1..%d bytes", MaxModuleParamName)
		}
		for _, c := range []byte(name) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
				return invalid(f, "parameter name %q: only a-z, 0-9 and _", name)
			}
		}
		for _, c := range []byte(value) {
			if c <= ' ' || c == 0x7f || c == '"' || c >= 0x80 {
				return invalid(f, "value of %s: byte %#x (no spaces, quotes, control or non-ASCII characters)", name, c)
			}
		}
		if seen[name] {
			return invalid(f, "parameter %s given twice", name)
		}
		seen[name] = true
	}
	return nil
}

// Component is one part of a release. Exactly one of Image, UserPatch and
// KernelPatch is set, the one Kind says.
type Component struct {
	Kind        ComponentKind
	Name        string       // e.g. "rootfs", "glibc-cve-2026-1234"
	Image       *Image       // Kind == KindImage
	UserPatch   *UserPatch   // Kind == KindUserPatch
	KernelPatch *KernelPatch // Kind == KindKernelPatch
}

// Fallback returns the name of the image component that carries the same
// fix as a live component, or "" (also for images).
func (c *Component) Fallback() string {
	switch {
	case c.UserPatch != nil:
		return c.UserPatch.Fallback
	case c.KernelPatch != nil:
		return c.KernelPatch.Fallback
	}
	return ""
}

// Component returns the component called name, or nil.
func (m *Manifest) Component(name string) *Component {
	for i := range m.Components {
		if m.Components[i].Name == name {
			return &m.Components[i]
		}
	}
	return nil
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
		if err := c.validateBody(field); err != nil {
			return err
		}
		if c.Kind != KindImage {
			continue
		}
		if groups[c.Image.SlotGroup] {
			return invalid(field+".image.slot group", "slot group %q has two images", c.Image.SlotGroup)
		}
		groups[c.Image.SlotGroup] = true
	}
	for i := range m.Components {
		c := &m.Components[i]
		fb := c.Fallback()
		if fb == "" {
			continue
		}
		if t := m.Component(fb); t == nil || t.Kind != KindImage {
			return invalid(fmt.Sprintf("components[%d].fallback", i), "%q is not an image component of this release", fb)
		}
	}
	return nil
}

// validateBody checks that exactly the body Kind names is set, and checks it.
func (c *Component) validateBody(field string) error {
	set := 0
	for _, p := range []bool{c.Image != nil, c.UserPatch != nil, c.KernelPatch != nil} {
		if p {
			set++
		}
	}
	switch {
	case c.Kind == KindImage && c.Image != nil && set == 1:
		return c.Image.validate(field + ".image")
	case c.Kind == KindUserPatch && c.UserPatch != nil && set == 1:
		return c.UserPatch.validate(field + ".userspace patch")
	case c.Kind == KindKernelPatch && c.KernelPatch != nil && set == 1:
		return c.KernelPatch.validate(field + ".kernel patch")
	case c.Kind < KindImage || c.Kind > KindKernelPatch:
		return invalid(field+".kind", "unknown component kind %d", c.Kind)
	}
	return invalid(field, "a %s component needs exactly its own body", c.Kind)
}

func (u *UserPatch) validate(field string) error {
	if err := requireText(field+".soname", u.Soname); err != nil {
		return err
	}
	if !utf8.ValidString(u.Fallback) {
		return invalid(field+".fallback", "not valid UTF-8")
	}
	if len(u.Bundles) == 0 {
		return invalid(field+".bundles", "empty")
	}
	if len(u.Bundles) > MaxBundles {
		return invalid(field+".bundles", "%d bundles, limit %d", len(u.Bundles), MaxBundles)
	}
	seen := make(map[string]bool, len(u.Bundles))
	for i, b := range u.Bundles {
		f := fmt.Sprintf("%s.bundles[%d]", field, i)
		if n := len(b.BuildID); n < 8 || n > 64 {
			return invalid(f+".build id", "%d bytes, want 8..64", n)
		}
		if seen[string(b.BuildID)] {
			return invalid(f+".build id", "build %x listed twice", b.BuildID)
		}
		seen[string(b.BuildID)] = true
		if err := requireText(f+".target", b.Target); err != nil {
			return err
		}
		if len(b.SHA256) != 32 {
			return invalid(f+".sha256", "%d bytes, want 32", len(b.SHA256))
		}
	}
	return nil
}

func (k *KernelPatch) validate(field string) error {
	for _, f := range [...]struct{ name, s string }{
		{".target", k.Target}, {".release", k.Release}, {".name", k.Name},
	} {
		if err := requireText(field+f.name, f.s); err != nil {
			return err
		}
	}
	if !utf8.ValidString(k.Fallback) {
		return invalid(field+".fallback", "not valid UTF-8")
	}
	if len(k.SHA256) != 32 {
		return invalid(field+".sha256", "%d bytes, want 32", len(k.SHA256))
	}
	if k.Params != nil && len(k.Params) == 0 {
		return invalid(field+".params", "empty (leave it out)")
	}
	return CheckModuleParams(field+".params", k.Params)
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
