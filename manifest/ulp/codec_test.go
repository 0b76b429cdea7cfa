package ulp

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// sampleBundle is a small valid bundle per arch.
func sampleBundle(arch string) *Bundle {
	code := []byte{0xf3, 0x0f, 0x1e, 0xfa, 0x31, 0xc0, 0xc3, 0x90}
	lead := bytes.Repeat([]byte{0x90}, 16)
	b := &Bundle{
		Format: FormatVersion, Name: "sample-" + arch, Arch: arch,
		BuildID: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
		Soname:  "libsample.so.1", Code: code, Data: []byte{0, 0, 0, 0, 0, 0, 0, 0}, BSS: 64,
		Funcs: []Func{{Symbol: "sample", Target: 0x1234, Size: 48, Keep: 0, CheckLen: 16,
			Check: CheckSum(lead), New: 0}},
	}
	switch arch {
	case AMD64:
		b.Funcs[0].Keep, b.Funcs[0].New = 4, 4
		b.Relocs = []Reloc{
			{Offset: 4096, Type: uint32(elf.R_X86_64_64), Base: BaseTarget, Sym: 0x2000, Addend: 8},
			{Offset: 2, Type: uint32(elf.R_X86_64_PC32), Base: BasePatch, Sym: 4096, Addend: -4},
		}
	case ARM64:
		b.Relocs = []Reloc{{Offset: 4, Type: uint32(elf.R_AARCH64_CALL26), Base: BaseTarget, Sym: 0x5000}}
	case ARM:
		b.Funcs[0].Thumb = true
		b.Relocs = []Reloc{{Offset: 4, Type: uint32(elf.R_ARM_THM_PC22), Base: BaseTarget, Sym: 0x5001}}
	}
	return b
}

// rawEncode encodes b without validating it, to feed Decode bundles
// Encode would refuse.
func rawEncode(t *testing.T, b *Bundle) []byte {
	t.Helper()
	w := wireBundle{Format: b.Format, Name: b.Name, Arch: b.Arch, BuildID: b.BuildID, Soname: b.Soname,
		Code: b.Code, Data: b.Data, BSS: b.BSS}
	for _, f := range b.Funcs {
		w.Funcs = append(w.Funcs, wireFunc(f))
	}
	for _, r := range b.Relocs {
		w.Relocs = append(w.Relocs, wireReloc{Offset: r.Offset, Type: r.Type, Base: r.Base, Sym: r.Sym, Addend: r.Addend})
	}
	out, err := encMode.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCodecRoundTrip(t *testing.T) {
	for _, arch := range []string{AMD64, ARM64, ARM} {
		t.Run(arch, func(t *testing.T) {
			b := sampleBundle(arch)
			enc, err := b.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, b) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
			}
			again, err := got.Encode()
			if err != nil || !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs (%v)", err)
			}
		})
	}
}

// TestCodecGolden pins the wire encoding: testdata/amd64.ulp is the
// sample amd64 bundle as this format version writes it.
func TestCodecGolden(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "amd64.ulp"))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := sampleBundle(AMD64).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, golden) {
		t.Fatalf("encoding changed:\n got %x\nwant %x", enc, golden)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := sampleBundle(AMD64).Encode()
	if err != nil {
		t.Fatal(err)
	}
	// The top level is a map of fewer than 24 pairs: a one-byte header.
	if good[0]&0xe0 != 0xa0 || good[0]&0x1f >= 23 || good[1] != 0x00 || good[2] != 0x01 {
		t.Fatalf("unexpected encoding head %x", good[:3])
	}
	withPair := func(pair ...byte) []byte {
		out := append([]byte{good[0] + 1}, good[1:]...)
		return append(out, pair...)
	}
	wrongFormat := append([]byte{}, good...)
	wrongFormat[2] = 0x02

	outside := sampleBundle(AMD64)
	outside.Relocs[0].Offset = 4096 + 4 // an 8-byte relocation past Data's 8 bytes
	inBSS := sampleBundle(AMD64)
	inBSS.Relocs[0].Offset = 4096 + 8
	short := sampleBundle(AMD64)
	short.Funcs[0].Size, short.Funcs[0].CheckLen = 8, 8 // 4 kept + 5 for jmp rel32 do not fit
	short.Funcs[0].Check = CheckSum(make([]byte, 8))
	unknownType := sampleBundle(ARM64)
	unknownType.Relocs[0].Type = uint32(elf.R_AARCH64_ADR_GOT_PAGE)
	armAddend := sampleBundle(ARM)
	armAddend.Relocs[0].Addend = 4
	badArch := sampleBundle(AMD64)
	badArch.Arch = "mips"

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown key", withPair(0x18, 0x63, 0x00), ErrMalformed},
		{"duplicate key", withPair(0x01, 0x61, 'x'), ErrMalformed},
		{"trailing byte", append(append([]byte{}, good...), 0x00), ErrMalformed},
		{"tag", append([]byte{0xd9, 0xd9, 0xf7}, good...), ErrMalformed},
		{"not a map", []byte{0x80}, ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"too large", make([]byte, MaxSize+1), ErrTooLarge},
		{"wrong format", wrongFormat, ErrUnsupportedFormat},
		{"relocation outside the image", rawEncode(t, outside), ErrInvalid},
		{"relocation in BSS", rawEncode(t, inBSS), ErrInvalid},
		{"function too short for a trampoline", rawEncode(t, short), ErrInvalid},
		{"unsupported relocation", rawEncode(t, unknownType), ErrUnsupportedReloc},
		{"ARM relocation with an addend", rawEncode(t, armAddend), ErrInvalid},
		{"unknown arch", rawEncode(t, badArch), ErrUnsupportedArch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Decode(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode: %v (bundle %v), want %v", err, b != nil, tc.want)
			}
			if b != nil {
				t.Fatal("Decode returned a bundle with an error")
			}
		})
	}
}

// FuzzDecode: Decode never panics; what it accepts re-encodes to a
// fixed point, and Link and Trampoline handle it without panicking.
func FuzzDecode(f *testing.F) {
	for _, arch := range []string{AMD64, ARM64, ARM} {
		enc, err := sampleBundle(arch).Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.ulp"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := Decode(in)
		if err != nil {
			if b != nil {
				t.Fatal("bundle with an error")
			}
			return
		}
		enc, err := b.Encode()
		if err != nil {
			t.Fatalf("a decoded bundle does not encode: %v", err)
		}
		b2, err := Decode(enc)
		if err != nil {
			t.Fatalf("a re-encoded bundle does not decode: %v", err)
		}
		if enc2, err := b2.Encode(); err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point (%v)", err)
		}
		if _, err := Link(b, 0x7f0000000000, 0x7f0010000000, 4096); err != nil &&
			!errors.Is(err, ErrRelocOverflow) && !errors.Is(err, ErrInterwork) {
			t.Fatalf("Link of a valid bundle: %v", err)
		}
		for _, fn := range b.Funcs {
			at, to := 0x10000+fn.Target+fn.Keep, 0x20000+fn.New
			if tr, err := Trampoline(b.Arch, fn.Thumb, at, to); err == nil && len(tr) > FarSize(b.Arch, fn.Thumb, at) {
				t.Fatalf("trampoline of %d bytes", len(tr))
			}
		}
	})
}
