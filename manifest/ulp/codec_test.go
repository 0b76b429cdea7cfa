package ulp

import (
	"bytes"
	"crypto/sha256"
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
	fn := bytes.Repeat([]byte{0x90}, 48)
	b := &Bundle{
		Format: FormatVersion, Name: "sample-" + arch, Arch: arch,
		BuildID: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
		Soname:  "libsample.so.1", Code: code, Data: []byte{0, 0, 0, 0, 0, 0, 0, 0}, BSS: 64,
		Funcs: []Func{{Symbol: "sample", Target: 0x1234, Size: 48, Keep: 0,
			Check: CheckSum(fn), Guard: 16, New: 0}},
		NoEscape: true,
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

// rawEncode encodes b (with a correct checksum) without validating it,
// to feed Decode bundles Encode would refuse.
func rawEncode(t *testing.T, b *Bundle) []byte {
	t.Helper()
	out, err := b.wire().seal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// reseal gives b, whose last 32 bytes are a checksum, the right one.
func reseal(b []byte) []byte {
	out := append([]byte{}, b...)
	if n := len(out) - SumSize; n >= 0 {
		sum := sha256.Sum256(out[:n])
		copy(out[n:], sum[:])
	}
	return out
}

// TestDecodeChecksum: a bit flipped anywhere in a bundle fails Decode,
// with ErrChecksum wherever the end of the bundle is still a checksum.
func TestDecodeChecksum(t *testing.T) {
	good, err := sampleBundle(ARM64).Encode()
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		for bit := range 8 {
			bad := append([]byte{}, good...)
			bad[i] ^= 1 << bit
			b, err := Decode(bad)
			if err == nil || b != nil {
				t.Fatalf("byte %d bit %d flipped: decoded", i, bit)
			}
			if i < len(good)-SumSize-len(sumHead) || i >= len(good)-SumSize {
				if !errors.Is(err, ErrChecksum) {
					t.Fatalf("byte %d bit %d flipped: %v, want ErrChecksum", i, bit, err)
				}
			}
		}
	}
	// A format 1 bundle (no checksum) is another format, not damage.
	old := sampleBundle(AMD64).wire()
	old.Format = 1
	enc, err := encMode.Marshal(struct {
		Format uint   `cbor:"0,keyasint"`
		Name   string `cbor:"1,keyasint"`
	}{old.Format, old.Name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(enc); !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("format 1: %v, want ErrUnsupportedFormat", err)
	}
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
	if good[0]&0xe0 != 0xa0 || good[0]&0x1f >= 23 || good[1] != 0x00 || good[2] != 0x02 {
		t.Fatalf("unexpected encoding head %x", good[:3])
	}
	// withPair inserts a pair before the checksum, and reseals.
	withPair := func(pair ...byte) []byte {
		tail := len(good) - SumSize - len(sumHead)
		out := append([]byte{good[0] + 1}, good[1:tail]...)
		out = append(out, pair...)
		return reseal(append(out, good[tail:]...))
	}
	wrongFormat := append([]byte{}, good...)
	wrongFormat[2] = 0x01
	wrongFormat = reseal(wrongFormat)

	outside := sampleBundle(AMD64)
	outside.Relocs[0].Offset = 4096 + 4 // an 8-byte relocation past Data's 8 bytes
	inBSS := sampleBundle(AMD64)
	inBSS.Relocs[0].Offset = 4096 + 8
	short := sampleBundle(AMD64)
	short.Funcs[0].Size, short.Funcs[0].Guard = 8, 8 // 4 kept + 5 for jmp rel32 do not fit
	short.Funcs[0].Check = CheckSum(make([]byte, 8))
	narrowGuard := sampleBundle(AMD64)
	narrowGuard.Funcs[0].Guard = 8 // 4 kept + 5 for jmp rel32: the guard must cover them
	wideGuard := sampleBundle(AMD64)
	wideGuard.Funcs[0].Guard = 49
	huge := sampleBundle(AMD64)
	huge.Funcs[0].Size, huge.Funcs[0].Guard = MaxFuncSize+1, 16
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
		{"trailing byte", append(append([]byte{}, good...), 0x00), ErrChecksum},
		{"tag", reseal(append([]byte{0xd9, 0xd9, 0xf7}, good...)), ErrMalformed},
		{"checksum not last", reseal(append(append([]byte{}, good...), append([]byte{0x17, 0x58, 0x20}, make([]byte, SumSize)...)...)), ErrMalformed},
		{"not a map", []byte{0x80}, ErrChecksum},
		{"empty", nil, ErrChecksum},
		{"truncated", good[:len(good)-1], ErrChecksum},
		{"too large", make([]byte, MaxSize+1), ErrTooLarge},
		{"wrong format", wrongFormat, ErrUnsupportedFormat},
		{"relocation outside the image", rawEncode(t, outside), ErrInvalid},
		{"relocation in BSS", rawEncode(t, inBSS), ErrInvalid},
		{"function too short for a trampoline", rawEncode(t, short), ErrInvalid},
		{"guard narrower than the trampoline", rawEncode(t, narrowGuard), ErrInvalid},
		{"guard past the function", rawEncode(t, wideGuard), ErrInvalid},
		{"function too large to check", rawEncode(t, huge), ErrInvalid},
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
		if errors.Is(err, ErrChecksum) {
			// Most mutations only break the checksum: reseal them so the
			// fuzzer explores the decoder behind it too.
			in = reseal(in)
			b, err = Decode(in)
		}
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
