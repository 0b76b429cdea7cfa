package manifest_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/graft-dev/graft/manifest"
)

// FuzzDecode: Decode never panics and classifies every refusal; whatever it
// accepts encodes, decodes back to an equal manifest, and encodes to the
// same bytes again. Seeds: testdata/fuzz/FuzzDecode (see TestFuzzSeeds).
func FuzzDecode(f *testing.F) {
	sentinels := []error{manifest.ErrMalformed, manifest.ErrTooLarge, manifest.ErrUnknownKey, manifest.ErrUnsupportedFormat, manifest.ErrInvalid}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := manifest.Decode(b)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode returned a manifest and error %v", err)
			}
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Decode error %v wraps %d sentinels, want 1", err, n)
			}
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded manifest: %v", err)
		}
		m2, err := manifest.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(m)): %v\n%x", err, enc)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("Decode(Encode(m)) =\n%+v\nwant\n%+v", m2, m)
		}
		enc2, err := m2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %x, %v; first %x", enc2, err, enc)
		}
		if len(enc) > len(b) {
			t.Fatalf("canonical encoding (%d bytes) longer than the input (%d)", len(enc), len(b))
		}
	})
}

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzDecode seeds from seedCorpus")

type seed struct {
	name string
	in   []byte
	want error // nil: Decode must accept it
}

// seedCorpus builds the seeds from real encodings (Encode output) and
// small edits of them.
func seedCorpus(t *testing.T) []seed {
	encode := func(m *manifest.Manifest) []byte {
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("seed: Encode: %v", err)
		}
		return b
	}
	minimal := &manifest.Manifest{
		Format: manifest.FormatVersion, Name: "v1", Version: "1.0.0", Sequence: 1, Boards: []string{"qemu-arm64"},
		Components: []manifest.Component{{Kind: manifest.KindImage, Name: "rootfs", Image: &manifest.Image{
			SlotGroup: "rootfs", Target: "rootfs.img", Size: 4096, SHA256: bytes.Repeat([]byte{0xab}, 32),
		}}},
	}
	two := fixtureManifest()
	two.Components = append(two.Components, manifest.Component{Kind: manifest.KindImage, Name: "boot", Image: &manifest.Image{
		SlotGroup: "boot", Target: "boot.vfat.gz", Size: 32 << 20, SHA256: bytes.Repeat([]byte{0x11}, 32), Compression: manifest.CompressionGzip,
	}})
	full := encode(fixtureManifest())
	// Replace the format value (top map head, key 0, value 1) with 2.
	format2 := bytes.Clone(full)
	if format2[1] != 0x00 || format2[2] != 0x01 {
		t.Fatalf("seed: unexpected encoding start %x", full[:3])
	}
	format2[2] = 0x02
	params := liveManifest()
	params.Components[2].KernelPatch.Params = []string{"replace=1", "debug"}
	return []seed{
		{"valid-minimal", encode(minimal), nil},
		{"valid-kernel-params", encode(params), nil},
		{"valid-full", full, nil},
		{"valid-two-images", encode(two), nil},
		{"valid-extensions", edit(func(f *fixture) {
			f.top = append(f.top, kv(256, cMap(kv(1, cText("x")))))
			f.img = append(f.img, kv(1000, cArray(cUint(1), cNull)))
		}), nil},
		{"valid-reordered", edit(func(f *fixture) { f.top = append([]pair{kv(kComponents, nil)}, f.top...) }), nil},
		{"invalid-trailing-byte", append(bytes.Clone(full), 0x00), manifest.ErrMalformed},
		{"invalid-truncated", full[:len(full)/2], manifest.ErrMalformed},
		{"invalid-duplicate-key", edit(func(f *fixture) { f.top = append(f.top, kv(kSequence, cUint(99))) }), manifest.ErrMalformed},
		{"invalid-indefinite-map", append(append([]byte{0xbf}, full[1:]...), 0xff), manifest.ErrMalformed},
		{"invalid-tag", edit(func(f *fixture) { f.top = set(f.top, kName, cTag(32, cText("v2"))) }), manifest.ErrMalformed},
		{"invalid-unknown-core-key", edit(func(f *fixture) { f.img = append(f.img, kv(5, cUint(0))) }), manifest.ErrUnknownKey},
		{"invalid-format-2", format2, manifest.ErrUnsupportedFormat},
		{"invalid-kind-9", edit(func(f *fixture) { f.comp = set(f.comp, kKind, cUint(9)) }), manifest.ErrInvalid},
		{"invalid-kind-2-image-body", edit(func(f *fixture) { f.comp = set(f.comp, kKind, cUint(2)) }), manifest.ErrUnknownKey},
		{"valid-live", liveManifestBytes(t), nil},
		{"invalid-short-sha256", edit(func(f *fixture) { f.img = set(f.img, kSHA256, cBytes(rootfsSum[:16])) }), manifest.ErrInvalid},
	}
}

// TestFuzzSeeds keeps the seed files equal to seedCorpus and checks each
// seed still means what its name says. Regenerate with
// go test ./manifest -run TestFuzzSeeds -update-seeds.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	for _, s := range seedCorpus(t) {
		file := filepath.Join(dir, s.name)
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.in)
		if *updateSeeds {
			if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		disk, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (regenerate with -update-seeds)", err)
		}
		if string(disk) != content {
			t.Errorf("%s differs from seedCorpus (regenerate with -update-seeds)", file)
		}
		in, err := parseCorpusFile(disk)
		if err != nil || !bytes.Equal(in, s.in) {
			t.Fatalf("%s: parse: %v", file, err)
		}
		_, err = manifest.Decode(in)
		if s.want == nil && err != nil {
			t.Errorf("%s: Decode = %v, want success", s.name, err)
		}
		if s.want != nil && !errors.Is(err, s.want) {
			t.Errorf("%s: Decode = %v, want %v", s.name, err, s.want)
		}
	}
}

// parseCorpusFile reads a one-value []byte corpus file as go test writes it.
func parseCorpusFile(b []byte) ([]byte, error) {
	s, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
	if !ok {
		return nil, errors.New("not a []byte corpus file")
	}
	s, ok = strings.CutSuffix(s, ")\n")
	if !ok {
		return nil, errors.New("no closing parenthesis")
	}
	v, err := strconv.Unquote(s)
	return []byte(v), err
}
