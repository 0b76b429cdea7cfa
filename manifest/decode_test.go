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

// fixtureManifest is newFixture() as a Go value.
func fixtureManifest() *manifest.Manifest {
	return &manifest.Manifest{
		Format:          manifest.FormatVersion,
		Name:            "v2",
		Version:         "2.0.0",
		DeviceClass:     "gateway",
		Sequence:        7,
		Boards:          []string{"rpi4", "qemu-arm64"},
		Arch:            "arm64",
		MinAgentVersion: "1.2.0",
		Components: []manifest.Component{{
			Kind: manifest.KindImage,
			Name: "rootfs",
			Image: &manifest.Image{
				SlotGroup:   "rootfs",
				Target:      "rootfs-2.0.0.img.zst",
				Size:        1 << 20,
				SHA256:      slices.Clone(rootfsSum[:]),
				Compression: manifest.CompressionZstd,
			},
		}},
	}
}

func TestDecodeFixture(t *testing.T) {
	got, err := manifest.Decode(newFixture().bytes())
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if want := fixtureManifest(); !reflect.DeepEqual(got, want) {
		t.Errorf("Decode =\n%+v\nwant\n%+v", got, want)
	}
	if imgs := got.Images(); len(imgs) != 1 || imgs[0] != got.Components[0].Image {
		t.Errorf("Images() = %v, want the one image component", imgs)
	}
}

// edit returns the fixture's bytes after applying fn to a fresh fixture.
func edit(fn func(f *fixture)) []byte {
	f := newFixture()
	fn(f)
	return f.bytes()
}

func nested(depth int, leaf []byte) []byte {
	for range depth {
		leaf = cArray(leaf)
	}
	return leaf
}

func TestDecodeRefuses(t *testing.T) {
	valid := newFixture().bytes()
	manyBoards := make([][]byte, 257)
	for i := range manyBoards {
		manyBoards[i] = cText("b" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)))
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		// Not one strict CBOR item.
		{"empty input", nil, manifest.ErrMalformed},
		{"truncated", valid[:len(valid)-1], manifest.ErrMalformed},
		{"reserved additional info", []byte{0xbc}, manifest.ErrMalformed},
		{"trailing zero byte", append(slices.Clone(valid), 0x00), manifest.ErrMalformed},
		{"two manifests", append(slices.Clone(valid), valid...), manifest.ErrMalformed},
		{"top-level array", cArray(cUint(1)), manifest.ErrMalformed},
		{"top-level null", cNull, manifest.ErrMalformed},
		{"duplicate top key", edit(func(f *fixture) { f.top = append(f.top, kv(kName, cText("v3"))) }), manifest.ErrMalformed},
		{"duplicate key, second in long form", edit(func(f *fixture) { f.top = append(f.top, pair{[]byte{0x18, kName}, cText("v2")}) }), manifest.ErrMalformed},
		{"duplicate image key", edit(func(f *fixture) { f.img = append(f.img, kv(kSize, cUint(1))) }), manifest.ErrMalformed},
		{"duplicate extension key", edit(func(f *fixture) { f.top = append(f.top, kv(300, cUint(1)), kv(300, cUint(2))) }), manifest.ErrMalformed},
		{"duplicate key inside extension value", edit(func(f *fixture) {
			f.top = append(f.top, kv(300, cMap(kv(1, cUint(1)), kv(1, cUint(2)))))
		}), manifest.ErrMalformed},
		{"indefinite-length top map", append(append([]byte{0xbf}, valid[1:]...), 0xff), manifest.ErrMalformed},
		{"indefinite-length name", edit(func(f *fixture) { f.top = set(f.top, kName, []byte{0x7f, 0x62, 'v', '2', 0xff}) }), manifest.ErrMalformed},
		{"indefinite-length boards", edit(func(f *fixture) { f.top = set(f.top, kBoards, []byte{0x9f, 0x64, 'r', 'p', 'i', '4', 0xff}) }), manifest.ErrMalformed},
		{"indefinite-length extension", edit(func(f *fixture) { f.top = append(f.top, kv(256, []byte{0x5f, 0x41, 0x00, 0xff})) }), manifest.ErrMalformed},
		{"tagged name", edit(func(f *fixture) { f.top = set(f.top, kName, cTag(32, cText("v2"))) }), manifest.ErrMalformed},
		{"tagged sha256", edit(func(f *fixture) { f.img = set(f.img, kSHA256, cTag(2, cBytes(rootfsSum[:]))) }), manifest.ErrMalformed},
		{"tag in extension", edit(func(f *fixture) { f.top = append(f.top, kv(256, cTag(1, cUint(0)))) }), manifest.ErrMalformed},
		{"invalid UTF-8 name", edit(func(f *fixture) { f.top = set(f.top, kName, cText("v\xff")) }), manifest.ErrMalformed},
		{"invalid UTF-8 board", edit(func(f *fixture) { f.top = set(f.top, kBoards, cArray(cText("rpi\xc0"))) }), manifest.ErrMalformed},
		{"invalid UTF-8 in extension", edit(func(f *fixture) { f.top = append(f.top, kv(256, cText("\xed\xa0\x80"))) }), manifest.ErrMalformed},
		{"text key", edit(func(f *fixture) { f.top = append(f.top, pair{cText("name"), cText("v2")}) }), manifest.ErrMalformed},
		{"negative key", edit(func(f *fixture) { f.top = append(f.top, pair{cNeg(0), cUint(1)}) }), manifest.ErrMalformed},
		{"name is an integer", edit(func(f *fixture) { f.top = set(f.top, kName, cUint(2)) }), manifest.ErrMalformed},
		{"name is a byte string", edit(func(f *fixture) { f.top = set(f.top, kName, cBytes([]byte("v2"))) }), manifest.ErrMalformed},
		{"sequence is null", edit(func(f *fixture) { f.top = set(f.top, kSequence, cNull) }), manifest.ErrMalformed},
		{"sequence is negative", edit(func(f *fixture) { f.top = set(f.top, kSequence, cNeg(6)) }), manifest.ErrMalformed},
		{"sequence is a float", edit(func(f *fixture) { f.top = set(f.top, kSequence, []byte{0xf9, 0x47, 0x00}) }), manifest.ErrMalformed},
		{"board is an integer", edit(func(f *fixture) { f.top = set(f.top, kBoards, cArray(cText("rpi4"), cUint(4))) }), manifest.ErrMalformed},
		{"boards is a text", edit(func(f *fixture) { f.top = set(f.top, kBoards, cText("rpi4")) }), manifest.ErrMalformed},
		{"components is a map", edit(func(f *fixture) { f.components = cMap(f.comp...) }), manifest.ErrMalformed},
		{"component is an array", edit(func(f *fixture) { f.components = cArray(cArray()) }), manifest.ErrMalformed},
		{"image is an array", edit(func(f *fixture) { f.components = cArray(cMap(set(f.comp, kImage, cArray())...)) }), manifest.ErrMalformed},
		{"sha256 is text", edit(func(f *fixture) { f.img = set(f.img, kSHA256, cText(strings.Repeat("a", 32))) }), manifest.ErrMalformed},
		{"nested too deep", edit(func(f *fixture) { f.top = append(f.top, kv(256, nested(8, cUint(0)))) }), manifest.ErrMalformed},
		{"too many boards", edit(func(f *fixture) { f.top = set(f.top, kBoards, cArray(manyBoards...)) }), manifest.ErrMalformed},

		// Size.
		{"oversized", edit(func(f *fixture) { f.top = append(f.top, kv(256, cText(strings.Repeat("x", manifest.MaxSize)))) }), manifest.ErrTooLarge},
		{"oversized garbage", bytes.Repeat([]byte{0xff}, manifest.MaxSize+1), manifest.ErrTooLarge},

		// Unknown keys in the core range.
		{"unknown top key 9", edit(func(f *fixture) { f.top = append(f.top, kv(9, cUint(0))) }), manifest.ErrUnknownKey},
		{"unknown top key 255", edit(func(f *fixture) { f.top = append(f.top, kv(255, cText("x"))) }), manifest.ErrUnknownKey},
		{"reserved component key 3", edit(func(f *fixture) { f.comp = append(f.comp, kv(3, cMap())) }), manifest.ErrUnknownKey},
		{"reserved component key 4", edit(func(f *fixture) { f.comp = append(f.comp, kv(4, cMap())) }), manifest.ErrUnknownKey},
		{"unknown image key 5", edit(func(f *fixture) { f.img = append(f.img, kv(5, cUint(0))) }), manifest.ErrUnknownKey},

		// Format version.
		{"format 2", edit(func(f *fixture) { f.top = set(f.top, kFormat, cUint(2)) }), manifest.ErrUnsupportedFormat},
		{"format 2 with a key format 1 lacks", edit(func(f *fixture) {
			f.top = append(set(f.top, kFormat, cUint(2)), kv(9, cUint(0)))
		}), manifest.ErrUnsupportedFormat},
		{"format 0", edit(func(f *fixture) { f.top = set(f.top, kFormat, cUint(0)) }), manifest.ErrUnsupportedFormat},
		{"format 2^32+1", edit(func(f *fixture) { f.top = set(f.top, kFormat, cUint(1<<32+1)) }), manifest.ErrUnsupportedFormat},
		{"format is text", edit(func(f *fixture) { f.top = set(f.top, kFormat, cText("1")) }), manifest.ErrMalformed},
		{"format missing", edit(func(f *fixture) { f.top = del(f.top, kFormat) }), manifest.ErrInvalid},

		// Required fields and values.
		{"name missing", edit(func(f *fixture) { f.top = del(f.top, kName) }), manifest.ErrInvalid},
		{"name empty", edit(func(f *fixture) { f.top = set(f.top, kName, cText("")) }), manifest.ErrInvalid},
		{"device class present but empty", edit(func(f *fixture) { f.top = set(f.top, kDeviceClass, cText("")) }), manifest.ErrInvalid},
		{"arch present but empty", edit(func(f *fixture) { f.top = set(f.top, kArch, cText("")) }), manifest.ErrInvalid},
		{"min agent version present but empty", edit(func(f *fixture) { f.top = set(f.top, kMinAgent, cText("")) }), manifest.ErrInvalid},
		{"version missing", edit(func(f *fixture) { f.top = del(f.top, kVersion) }), manifest.ErrInvalid},
		{"sequence missing", edit(func(f *fixture) { f.top = del(f.top, kSequence) }), manifest.ErrInvalid},
		{"boards missing", edit(func(f *fixture) { f.top = del(f.top, kBoards) }), manifest.ErrInvalid},
		{"boards empty", edit(func(f *fixture) { f.top = set(f.top, kBoards, cArray()) }), manifest.ErrInvalid},
		{"board name empty", edit(func(f *fixture) { f.top = set(f.top, kBoards, cArray(cText(""))) }), manifest.ErrInvalid},
		{"board listed twice", edit(func(f *fixture) { f.top = set(f.top, kBoards, cArray(cText("rpi4"), cText("rpi4"))) }), manifest.ErrInvalid},
		{"min agent version not a version", edit(func(f *fixture) { f.top = set(f.top, kMinAgent, cText("soon")) }), manifest.ErrInvalid},
		{"min agent version devel", edit(func(f *fixture) { f.top = set(f.top, kMinAgent, cText("(devel)")) }), manifest.ErrInvalid},
		{"components missing", cMap(newFixture().top...), manifest.ErrInvalid},
		{"components empty", edit(func(f *fixture) { f.components = cArray() }), manifest.ErrInvalid},
		{"two components named alike", edit(func(f *fixture) {
			c := cMap(set(f.comp, kImage, cMap(f.img...))...)
			c2 := cMap(set(f.comp, kImage, cMap(set(f.img, kSlotGroup, cText("boot"))...))...)
			f.components = cArray(c, c2)
		}), manifest.ErrInvalid},
		{"two images for one slot group", edit(func(f *fixture) {
			c := cMap(set(f.comp, kImage, cMap(f.img...))...)
			c2 := cMap(set(set(f.comp, kCompName, cText("rootfs2")), kImage, cMap(f.img...))...)
			f.components = cArray(c, c2)
		}), manifest.ErrInvalid},

		// Components.
		{"kind missing", edit(func(f *fixture) { f.comp = del(f.comp, kKind) }), manifest.ErrInvalid},
		{"kind 0", edit(func(f *fixture) { f.comp = set(f.comp, kKind, cUint(0)) }), manifest.ErrInvalid},
		{"kind 2 with an image body", edit(func(f *fixture) { f.comp = set(f.comp, kKind, cUint(2)) }), manifest.ErrUnknownKey},
		{"kind 3 with an image body", edit(func(f *fixture) { f.comp = set(f.comp, kKind, cUint(3)) }), manifest.ErrUnknownKey},
		{"kind 4", edit(func(f *fixture) { f.comp = set(f.comp, kKind, cUint(4)) }), manifest.ErrInvalid},
		{"kind 2^32+1", edit(func(f *fixture) { f.comp = set(f.comp, kKind, cUint(1<<32+1)) }), manifest.ErrInvalid},
		{"component name missing", edit(func(f *fixture) { f.comp = del(f.comp, kCompName) }), manifest.ErrInvalid},
		{"image missing", edit(func(f *fixture) { f.components = cArray(cMap(f.comp...)) }), manifest.ErrInvalid},
		{"slot group missing", edit(func(f *fixture) { f.img = del(f.img, kSlotGroup) }), manifest.ErrInvalid},
		{"target missing", edit(func(f *fixture) { f.img = del(f.img, kTarget) }), manifest.ErrInvalid},
		{"target empty", edit(func(f *fixture) { f.img = set(f.img, kTarget, cText("")) }), manifest.ErrInvalid},
		{"size missing", edit(func(f *fixture) { f.img = del(f.img, kSize) }), manifest.ErrInvalid},
		{"size zero", edit(func(f *fixture) { f.img = set(f.img, kSize, cUint(0)) }), manifest.ErrInvalid},
		{"sha256 missing", edit(func(f *fixture) { f.img = del(f.img, kSHA256) }), manifest.ErrInvalid},
		{"sha256 31 bytes", edit(func(f *fixture) { f.img = set(f.img, kSHA256, cBytes(rootfsSum[:31])) }), manifest.ErrInvalid},
		{"sha256 33 bytes", edit(func(f *fixture) { f.img = set(f.img, kSHA256, cBytes(append(rootfsSum[:], 0))) }), manifest.ErrInvalid},
		{"sha256 empty", edit(func(f *fixture) { f.img = set(f.img, kSHA256, cBytes(nil)) }), manifest.ErrInvalid},
		{"compression missing", edit(func(f *fixture) { f.img = del(f.img, kCompression) }), manifest.ErrInvalid},
		{"compression 3", edit(func(f *fixture) { f.img = set(f.img, kCompression, cUint(3)) }), manifest.ErrInvalid},
		{"compression 2^8+2", edit(func(f *fixture) { f.img = set(f.img, kCompression, cUint(258)) }), manifest.ErrInvalid},
	}
	sentinels := []error{manifest.ErrMalformed, manifest.ErrTooLarge, manifest.ErrUnknownKey, manifest.ErrUnsupportedFormat, manifest.ErrInvalid}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := manifest.Decode(tt.in)
			t.Log(err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
			if m != nil {
				t.Errorf("Decode returned a manifest with error %v", err)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("error %v also wraps %v", err, s)
				}
			}
		})
	}
}

func TestDecodeSizeLimitIsInclusive(t *testing.T) {
	// Pad with an extension text so the manifest is exactly MaxSize bytes.
	// A text of 256..65535 bytes has a 3-byte head; the empty one has 1.
	base := len(edit(func(f *fixture) { f.top = append(f.top, kv(256, cText(""))) }))
	at := edit(func(f *fixture) { f.top = append(f.top, kv(256, cText(strings.Repeat("x", manifest.MaxSize-base-2)))) })
	if len(at) != manifest.MaxSize {
		t.Fatalf("test manifest is %d bytes, want %d", len(at), manifest.MaxSize)
	}
	if _, err := manifest.Decode(at); err != nil {
		t.Errorf("Decode of exactly MaxSize bytes: %v", err)
	}
	over := edit(func(f *fixture) { f.top = append(f.top, kv(256, cText(strings.Repeat("x", manifest.MaxSize-base-1)))) })
	if _, err := manifest.Decode(over); !errors.Is(err, manifest.ErrTooLarge) {
		t.Errorf("Decode of MaxSize+1 bytes: %v, want ErrTooLarge", err)
	}
}

func TestDecodeIgnoresExtensionKeys(t *testing.T) {
	tests := []struct {
		name string
		fn   func(f *fixture)
	}{
		{"top key 256 text", func(f *fixture) { f.top = append(f.top, kv(256, cText("note"))) }},
		{"top key 2^64-1 nested map", func(f *fixture) {
			f.top = append(f.top, kv(1<<64-1, cMap(kv(0, cArray(cUint(1), cNeg(1), cNull)), pair{cText("k"), cBytes([]byte{1})})))
		}},
		{"component key 300 float", func(f *fixture) {
			f.comp = append(f.comp, kv(300, []byte{0xfb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}))
		}},
		{"image key 65535 array", func(f *fixture) { f.img = append(f.img, kv(65535, cArray(cText("a"), cText("b")))) }},
		{"extension before core keys", func(f *fixture) { f.top = append([]pair{kv(1000, cUint(1))}, f.top...) }},
		{"extension nested to the limit", func(f *fixture) { f.top = append(f.top, kv(256, nested(7, cUint(0)))) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := manifest.Decode(edit(tt.fn))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if want := fixtureManifest(); !reflect.DeepEqual(got, want) {
				t.Errorf("Decode =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestDecodeOptionalFields(t *testing.T) {
	in := edit(func(f *fixture) { f.top = del(del(del(f.top, kDeviceClass), kArch), kMinAgent) })
	got, err := manifest.Decode(in)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := fixtureManifest()
	want.DeviceClass, want.Arch, want.MinAgentVersion = "", "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode =\n%+v\nwant\n%+v", got, want)
	}
	enc, err := want.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if !bytes.Equal(enc, in) {
		t.Errorf("Encode left optional keys in:\n got %x\nwant %x", enc, in)
	}
}
