package release

import (
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/graft-dev/graft/manifest"
)

// Errors returned by Build and Check; match them with errors.Is.
var (
	// ErrInvalidSpec: a required field is missing or malformed.
	ErrInvalidSpec = errors.New("release: invalid release description")
	// ErrEmptyImage: the image has no bytes.
	ErrEmptyImage = errors.New("release: empty image")
	// ErrDuplicateName: a release with this name is already published.
	ErrDuplicateName = errors.New("release: release name already published")
	// ErrSequenceNotAbove: the sequence is not above the highest published
	// sequence of the same device class. See SequenceError.
	ErrSequenceNotAbove = errors.New("release: sequence not above the highest published")
)

// SequenceHeadroom is how many sequence numbers must stay free above a
// release, so that later releases (fixes, rollbacks re-released under a
// new number) can still follow it.
const SequenceHeadroom = 1000

// MaxSequence is the highest sequence a release may take.
const MaxSequence uint64 = math.MaxUint64 - SequenceHeadroom

// SequenceError details ErrSequenceNotAbove.
type SequenceError struct {
	DeviceClass string
	Sequence    uint64 // the new release's
	Highest     uint64 // the highest published for DeviceClass
	HighestName string // the release that holds Highest
}

func (e *SequenceError) Error() string {
	return fmt.Sprintf("release: sequence %d for device class %q is not above %d (release %q)",
		e.Sequence, e.DeviceClass, e.Highest, e.HighestName)
}

// Unwrap lets errors.Is match ErrSequenceNotAbove.
func (e *SequenceError) Unwrap() error { return ErrSequenceNotAbove }

// Prefix is the target path under which every release lives.
const Prefix = "releases/"

// DefaultSlotGroup is the slot group an image goes to when none is named.
const DefaultSlotGroup = "rootfs"

// Spec describes a single-image release.
type Spec struct {
	Name            string // release name, also its target directory; required
	Version         string // human version, e.g. 2.0.0; required
	DeviceClass     string // the sequence is counted per class
	Sequence        uint64 // anti-rollback counter; must be > 0
	Boards          []string
	Arch            string
	MinAgentVersion string
	SlotGroup       string // "" means DefaultSlotGroup
	Compression     manifest.Compression
}

// ManifestTarget is the TUF target name of release name's manifest.
func ManifestTarget(name string) string { return Prefix + name + "/manifest.cbor" }

// ImageTarget is the TUF target name of an image for slotGroup in release
// name, with the file extension of its compression.
func ImageTarget(name, slotGroup string, c manifest.Compression) string {
	ext := ".img"
	switch c {
	case manifest.CompressionGzip:
		ext += ".gz"
	case manifest.CompressionZstd:
		ext += ".zst"
	}
	return Prefix + name + "/" + slotGroup + ext
}

// NameFromTarget returns the release name a target belongs to, or false
// when the target is not under Prefix.
func NameFromTarget(target string) (string, bool) {
	rest, ok := strings.CutPrefix(target, Prefix)
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, "/")
	if !ok || name == "" {
		return "", false
	}
	return name, true
}

// Validate checks the fields Build needs.
func (s Spec) Validate() error {
	if !validName(s.Name) {
		return fmt.Errorf("%w: name %q must be non-empty letters, digits, '.', '_' or '-'", ErrInvalidSpec, s.Name)
	}
	if s.Version == "" {
		return fmt.Errorf("%w: version is empty", ErrInvalidSpec)
	}
	if s.Sequence == 0 {
		return fmt.Errorf("%w: sequence must be above 0", ErrInvalidSpec)
	}
	if s.Sequence > MaxSequence {
		return fmt.Errorf("%w: sequence %d is within %d of the top of the range (at most %d): no release could follow it", ErrInvalidSpec, s.Sequence, SequenceHeadroom, MaxSequence)
	}
	if len(s.Boards) == 0 {
		return fmt.Errorf("%w: at least one board is required", ErrInvalidSpec)
	}
	for _, b := range s.Boards {
		if b == "" {
			return fmt.Errorf("%w: empty board name", ErrInvalidSpec)
		}
	}
	if s.SlotGroup != "" && !validName(s.SlotGroup) {
		return fmt.Errorf("%w: slot group %q", ErrInvalidSpec, s.SlotGroup)
	}
	switch s.Compression {
	case manifest.CompressionNone, manifest.CompressionGzip, manifest.CompressionZstd:
	default:
		return fmt.Errorf("%w: unknown compression %d", ErrInvalidSpec, s.Compression)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// Built is what Build returns: the manifest and the target names.
type Built struct {
	Manifest       *manifest.Manifest
	ImageTarget    string
	ManifestTarget string
	PayloadSize    int64 // bytes written to the payload writer
}

// Build reads the whole uncompressed image, writes the payload (the image,
// compressed per spec.Compression) to payload, and returns the manifest
// whose single image component records the uncompressed size and SHA-256.
func Build(spec Spec, image io.Reader, payload io.Writer) (*Built, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	group := spec.SlotGroup
	if group == "" {
		group = DefaultSlotGroup
	}

	counted := &countWriter{w: payload}
	var (
		enc io.WriteCloser
		err error
	)
	switch spec.Compression {
	case manifest.CompressionGzip:
		enc, err = gzip.NewWriterLevel(counted, gzip.BestCompression)
	case manifest.CompressionZstd:
		enc, err = zstd.NewWriter(counted, zstd.WithEncoderConcurrency(1))
	default:
		enc = nopCloser{counted}
	}
	if err != nil {
		return nil, fmt.Errorf("release: compressor: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, enc), image)
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("release: read image: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("release: write payload: %w", err)
	}
	if n == 0 {
		return nil, ErrEmptyImage
	}

	m := NewManifest(spec)
	m.Components = []manifest.Component{{
		Kind: manifest.KindImage,
		Name: group,
		Image: &manifest.Image{
			SlotGroup:   group,
			Target:      ImageTarget(spec.Name, group, spec.Compression),
			Size:        uint64(n),
			SHA256:      h.Sum(nil),
			Compression: spec.Compression,
		},
	}}
	return &Built{
		Manifest:       m,
		ImageTarget:    m.Components[0].Image.Target,
		ManifestTarget: ManifestTarget(spec.Name),
		PayloadSize:    counted.n,
	}, nil
}

// Published is a release already in the repository.
type Published struct {
	Name     string             // from its target path
	Manifest *manifest.Manifest // nil when the release has no readable manifest
}

// Check refuses a new release whose name is already published or whose
// sequence is not above every published release of the same device class.
func Check(m *manifest.Manifest, published []Published) error {
	var highest *Published
	for i := range published {
		p := &published[i]
		if p.Name == m.Name || (p.Manifest != nil && p.Manifest.Name == m.Name) {
			return fmt.Errorf("%w: %q", ErrDuplicateName, m.Name)
		}
		if p.Manifest == nil || p.Manifest.DeviceClass != m.DeviceClass {
			continue
		}
		if highest == nil || p.Manifest.Sequence > highest.Manifest.Sequence {
			highest = p
		}
	}
	if highest != nil && m.Sequence <= highest.Manifest.Sequence {
		return &SequenceError{
			DeviceClass: m.DeviceClass,
			Sequence:    m.Sequence,
			Highest:     highest.Manifest.Sequence,
			HighestName: highest.Name,
		}
	}
	return nil
}

// IsManifestTarget reports whether target is a release's manifest.
func IsManifestTarget(target string) bool {
	name, ok := NameFromTarget(target)
	return ok && target == ManifestTarget(name) && path.Clean(target) == target
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
