package manifest_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/manifest"
)

// The fixture is written in canonical order with shortest integers, so it
// is the exact encoding Encode must produce: this pins the wire format.
func TestEncodeGolden(t *testing.T) {
	got, err := fixtureManifest().Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if want := newFixture().bytes(); !bytes.Equal(got, want) {
		t.Errorf("Encode =\n%x\nwant\n%x", got, want)
	}
}

func TestEncodeDeterministic(t *testing.T) {
	m := fixtureManifest()
	m.Components = append(m.Components, manifest.Component{
		Kind: manifest.KindImage, Name: "boot",
		Image: &manifest.Image{SlotGroup: "boot", Target: "boot.vfat.gz", Size: 64 << 20, SHA256: make([]byte, 32), Compression: manifest.CompressionGzip},
	})
	first, err := m.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	for i := range 20 {
		again, err := m.Encode()
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("Encode #%d = %x, %v; want %x", i+2, again, err, first)
		}
	}
	back, err := manifest.Decode(first)
	if err != nil {
		t.Fatalf("Decode(Encode(m)): %v", err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("Decode(Encode(m)) =\n%+v\nwant\n%+v", back, m)
	}
}

// The same manifest written with keys in other orders (and integers in
// longer forms) decodes to the same value and re-encodes to the canonical
// bytes.
func TestEncodeCanonicalizesKeyOrder(t *testing.T) {
	canonical := newFixture().bytes()
	reverse := func(ps []pair) []pair {
		out := slices.Clone(ps)
		slices.Reverse(out)
		return out
	}
	rotate := func(ps []pair) []pair { return append(slices.Clone(ps[3:]), ps[:3]...) }
	tests := []struct {
		name string
		fn   func(f *fixture)
	}{
		{"all maps reversed, components first", func(f *fixture) {
			f.top = reverse(append(f.top, kv(kComponents, nil)))
			f.comp = reverse(append(f.comp, kv(kImage, nil)))
			f.img = reverse(f.img)
		}},
		{"rotated", func(f *fixture) {
			f.top = rotate(f.top)
			f.comp = []pair{kv(kImage, nil), f.comp[1], f.comp[0]}
			f.img = rotate(f.img)
		}},
		{"long-form integers", func(f *fixture) {
			f.top = set(f.top, kSequence, []byte{0x1b, 0, 0, 0, 0, 0, 0, 0, 7})
			f.top = set(f.top, kFormat, []byte{0x18, 1})
			f.img[0].k = []byte{0x19, 0, kSlotGroup}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := edit(tt.fn)
			if bytes.Equal(in, canonical) {
				t.Fatal("test input is already canonical")
			}
			m, err := manifest.Decode(in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got, err := m.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(got, canonical) {
				t.Errorf("Encode =\n%x\nwant\n%x", got, canonical)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		fn   func(m *manifest.Manifest)
		want error
	}{
		{"fixture", func(m *manifest.Manifest) {}, nil},
		{"no optional fields", func(m *manifest.Manifest) { m.DeviceClass, m.Arch, m.MinAgentVersion = "", "", "" }, nil},
		{"format 0", func(m *manifest.Manifest) { m.Format = 0 }, manifest.ErrUnsupportedFormat},
		{"format 2", func(m *manifest.Manifest) { m.Format = 2 }, manifest.ErrUnsupportedFormat},
		{"no name", func(m *manifest.Manifest) { m.Name = "" }, manifest.ErrInvalid},
		{"no version", func(m *manifest.Manifest) { m.Version = "" }, manifest.ErrInvalid},
		{"invalid UTF-8 name", func(m *manifest.Manifest) { m.Name = "v\xff" }, manifest.ErrInvalid},
		{"invalid UTF-8 arch", func(m *manifest.Manifest) { m.Arch = "\xff" }, manifest.ErrInvalid},
		{"bad min agent version", func(m *manifest.Manifest) { m.MinAgentVersion = "1.2" }, manifest.ErrInvalid},
		{"nil boards", func(m *manifest.Manifest) { m.Boards = nil }, manifest.ErrInvalid},
		{"257 boards", func(m *manifest.Manifest) {
			m.Boards = nil
			for i := range 257 {
				m.Boards = append(m.Boards, strings.Repeat("b", i+1))
			}
		}, manifest.ErrInvalid},
		{"nil components", func(m *manifest.Manifest) { m.Components = nil }, manifest.ErrInvalid},
		{"kind 2", func(m *manifest.Manifest) { m.Components[0].Kind = 2 }, manifest.ErrInvalid},
		{"image component without image", func(m *manifest.Manifest) { m.Components[0].Image = nil }, manifest.ErrInvalid},
		{"no component name", func(m *manifest.Manifest) { m.Components[0].Name = "" }, manifest.ErrInvalid},
		{"no slot group", func(m *manifest.Manifest) { m.Components[0].Image.SlotGroup = "" }, manifest.ErrInvalid},
		{"no target", func(m *manifest.Manifest) { m.Components[0].Image.Target = "" }, manifest.ErrInvalid},
		{"size 0", func(m *manifest.Manifest) { m.Components[0].Image.Size = 0 }, manifest.ErrInvalid},
		{"nil sha256", func(m *manifest.Manifest) { m.Components[0].Image.SHA256 = nil }, manifest.ErrInvalid},
		{"compression 3", func(m *manifest.Manifest) { m.Components[0].Image.Compression = 3 }, manifest.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fixtureManifest()
			tt.fn(m)
			err := m.Validate()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
			// Encode validates first: it never writes what Decode refuses.
			b, err := m.Encode()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Encode error = %v, want %v", err, tt.want)
			}
			if tt.want != nil && b != nil {
				t.Errorf("Encode returned bytes with error %v", err)
			}
		})
	}
	var nilManifest *manifest.Manifest
	if err := nilManifest.Validate(); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("nil Validate = %v, want ErrInvalid", err)
	}
}

func TestEncodeRefusesOversized(t *testing.T) {
	m := fixtureManifest()
	m.Name = strings.Repeat("n", manifest.MaxSize)
	if _, err := m.Encode(); !errors.Is(err, manifest.ErrTooLarge) {
		t.Errorf("Encode = %v, want ErrTooLarge", err)
	}
}

func TestCompression(t *testing.T) {
	for _, c := range []manifest.Compression{manifest.CompressionNone, manifest.CompressionGzip, manifest.CompressionZstd} {
		got, err := manifest.ParseCompression(c.String())
		if err != nil || got != c {
			t.Errorf("ParseCompression(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if s := manifest.CompressionZstd.String(); s != "zstd" {
		t.Errorf("CompressionZstd.String() = %q", s)
	}
	if s := manifest.Compression(7).String(); s != "compression(7)" {
		t.Errorf("Compression(7).String() = %q", s)
	}
	for _, s := range []string{"", "xz", "ZSTD", "compression(7)"} {
		if _, err := manifest.ParseCompression(s); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("ParseCompression(%q) error = %v, want ErrInvalid", s, err)
		}
	}
}
