package bootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"strings"
	"testing"
)

// Seeds live in testdata/fuzz/<Target>/ (real mkenvimage, fw_setenv and
// grub-editenv output among them) and run in plain `go test`.

func FuzzDecodeUBoot(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00"), false)
	f.Fuzz(func(t *testing.T, b []byte, redundant bool) {
		checkUBootRoundTrip(t, b, redundant)
		// Mutated blocks almost never have a valid CRC; fix it so the
		// variable parser is reached too.
		if hdr := headerSize(redundant); len(b) > hdr {
			c := bytes.Clone(b)
			binary.LittleEndian.PutUint32(c, crc32.ChecksumIEEE(c[hdr:]))
			checkUBootRoundTrip(t, c, redundant)
		}
	})
}

func checkUBootRoundTrip(t *testing.T, b []byte, redundant bool) {
	env, flags, err := DecodeUBoot(b, redundant)
	if err != nil {
		if !errors.Is(err, ErrBadCRC) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeUBoot: error %v is neither ErrBadCRC nor ErrMalformed", err)
		}
		return
	}
	if len(b) > MaxUBootSize {
		return
	}
	enc, err := EncodeUBoot(env, len(b), redundant, flags)
	if err != nil {
		t.Fatalf("EncodeUBoot of a decoded %d-byte env %q: %v", len(b), env, err)
	}
	env2, flags2, err := DecodeUBoot(enc, redundant)
	if err != nil {
		t.Fatalf("DecodeUBoot(EncodeUBoot(...)): %v", err)
	}
	if !maps.Equal(env, env2) || flags != flags2 {
		t.Fatalf("round trip changed the env: %q/%d → %q/%d", env, flags, env2, flags2)
	}
}

func FuzzDecodeGrub(f *testing.F) {
	f.Add([]byte(grubSignature + "a=1\n###"))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeGrub(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeGrub: error %v is not ErrMalformed", err)
			}
			return
		}
		enc, err := EncodeGrub(env)
		if err != nil {
			// Decoding never grows the variables, so whatever came from a
			// block of at most 1024 bytes fits again.
			if errors.Is(err, ErrTooLarge) && len(b) > GrubEnvSize {
				return
			}
			t.Fatalf("EncodeGrub of an env decoded from %d bytes: %v", len(b), err)
		}
		if len(enc) != GrubEnvSize {
			t.Fatalf("EncodeGrub returned %d bytes", len(enc))
		}
		env2, err := DecodeGrub(enc)
		if err != nil {
			t.Fatalf("DecodeGrub(EncodeGrub(...)): %v", err)
		}
		if !maps.Equal(env, env2) {
			t.Fatalf("round trip changed the env: %q → %q", env, env2)
		}
	})
}

func FuzzParseFWConfig(f *testing.F) {
	f.Add("/dev/mmcblk0 0x400000 0x4000\n")
	f.Fuzz(func(t *testing.T, s string) {
		locs, err := ParseFWConfig(strings.NewReader(s), "fuzz")
		if err != nil {
			var ce *ConfigError
			if !errors.Is(err, ErrConfig) || !errors.As(err, &ce) {
				t.Fatalf("ParseFWConfig: error %v is not a *ConfigError", err)
			}
			return
		}
		if len(locs) < 1 || len(locs) > 2 {
			t.Fatalf("%d locations", len(locs))
		}
		var b strings.Builder
		for _, l := range locs {
			if l.Size <= 0 || l.Size > MaxUBootSize || l.SectorSize < 0 || l.Sectors < 0 || l.Device == "" {
				t.Fatalf("location out of range: %+v", l)
			}
			fmt.Fprintf(&b, "%s %d %#x %#x %#x\n", l.Device, l.Offset, l.Size, l.SectorSize, l.Sectors)
		}
		again, err := ParseFWConfig(strings.NewReader(b.String()), "again")
		if err != nil {
			t.Fatalf("reparsing %q: %v", b.String(), err)
		}
		if len(again) != len(locs) {
			t.Fatalf("reparse: %d locations, want %d", len(again), len(locs))
		}
		for i := range locs {
			if again[i] != locs[i] {
				t.Fatalf("reparse: %+v, want %+v", again[i], locs[i])
			}
		}
	})
}
