package bootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
	"strings"
	"testing"
)

// ubootBlock builds a copy by hand (independently of EncodeUBoot) from raw
// data bytes, padding with pad.
func ubootBlock(t *testing.T, size int, redundant bool, flags byte, data string, pad byte) []byte {
	t.Helper()
	hdr := headerSize(redundant)
	if len(data) > size-hdr {
		t.Fatalf("test data of %d bytes does not fit in %d", len(data), size-hdr)
	}
	b := bytes.Repeat([]byte{pad}, size)
	copy(b[hdr:], data)
	if redundant {
		b[4] = flags
	}
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(b[hdr:]))
	return b
}

func TestDecodeUBoot(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		pad       byte
		redundant bool
		want      Env
		wantErr   error
	}{
		{name: "empty", data: "\x00", want: Env{}},
		{name: "two vars, 0xff padding", data: "a=1\x00b=x=y\x00\x00", pad: 0xff, want: Env{"a": "1", "b": "x=y"}},
		{name: "redundant", data: "BOOT_ORDER=A B\x00\x00", redundant: true, want: Env{"BOOT_ORDER": "A B"}},
		{name: "garbage after the end is ignored", data: "a=1\x00\x00b=2\x00junk", pad: 0xff, want: Env{"a": "1"}},
		{name: "entries U-Boot does not import are skipped", data: "noequals\x00=v\x00empty=\x00k=v\x00\x00", want: Env{"k": "v"}},
		{name: "last duplicate wins", data: "k=1\x00k=2\x00\x00", want: Env{"k": "2"}},
		{name: "newline and bytes kept", data: "k=a\nb\xff\x00\x00", want: Env{"k": "a\nb\xff"}},
		{name: "unterminated entry", data: "k=v", pad: 'v', wantErr: ErrMalformed},
		{name: "no final empty entry", data: strings.Repeat("k=v\x00", 15), pad: 'x', wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ubootBlock(t, 64, tt.redundant, 7, tt.data, tt.pad)
			got, flags, err := DecodeUBoot(b, tt.redundant)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("DecodeUBoot error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("DecodeUBoot = %q, want %q", got, tt.want)
			}
			if tt.redundant && flags != 7 {
				t.Errorf("flags = %d, want 7", flags)
			}
		})
	}
}

func TestDecodeUBootBadCRC(t *testing.T) {
	for _, redundant := range []bool{false, true} {
		b := ubootBlock(t, 64, redundant, 1, "a=1\x00\x00", 0)
		b[headerSize(redundant)+2] ^= 0x01
		if _, _, err := DecodeUBoot(b, redundant); !errors.Is(err, ErrBadCRC) {
			t.Errorf("redundant=%v: flipped data bit: error = %v, want ErrBadCRC", redundant, err)
		}
	}
	if _, _, err := DecodeUBoot([]byte{1, 2, 3, 4}, false); !errors.Is(err, ErrMalformed) {
		t.Errorf("4-byte block: error = %v, want ErrMalformed", err)
	}
}

func TestEncodeUBoot(t *testing.T) {
	env := Env{"b": "x=y", "a": "1", "unset": ""}
	got, err := EncodeUBoot(env, 64, true, 9)
	if err != nil {
		t.Fatal(err)
	}
	// Sorted, empty value left out, 0x00 padding, flags after the CRC.
	want := ubootBlock(t, 64, true, 9, "a=1\x00b=x=y\x00\x00", 0)
	if !bytes.Equal(got, want) {
		t.Errorf("EncodeUBoot =\n%q\nwant\n%q", got, want)
	}

	// Exactly full: 4 header + "k=" + v + NUL + final NUL = 16.
	if _, err := EncodeUBoot(Env{"k": strings.Repeat("v", 8)}, 16, false, 0); err != nil {
		t.Errorf("exactly full: %v", err)
	}
	if _, err := EncodeUBoot(Env{"k": strings.Repeat("v", 9)}, 16, false, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: error = %v, want ErrTooLarge", err)
	}
	if _, err := EncodeUBoot(Env{}, 4, false, 0); !errors.Is(err, ErrConfig) {
		t.Errorf("size without room for data: error = %v, want ErrConfig", err)
	}

	for _, bad := range []Env{{"": "v"}, {"a=b": "v"}, {"a\x00": "v"}, {"a": "v\x00"}} {
		if _, err := EncodeUBoot(bad, 64, false, 0); !errors.Is(err, ErrInvalidVar) {
			t.Errorf("EncodeUBoot(%q) error = %v, want ErrInvalidVar", bad, err)
		}
	}
}

func TestNewerCopy(t *testing.T) {
	tests := []struct {
		f0, f1 byte
		want   int
	}{
		{1, 2, 1},
		{2, 1, 0},
		{5, 5, 0}, // tie: copy 0, as U-Boot and libubootenv
		{255, 0, 1},
		{0, 255, 0},
		{254, 255, 1},
		{0, 1, 1},
		{0, 254, 1}, // only 255→0 wraps
	}
	for _, tt := range tests {
		if got := newerCopy(tt.f0, tt.f1); got != tt.want {
			t.Errorf("newerCopy(%d, %d) = %d, want %d", tt.f0, tt.f1, got, tt.want)
		}
	}
}

func TestSelectCopy(t *testing.T) {
	bad := ErrBadCRC
	tests := []struct {
		name    string
		c       [2]ubootCopy
		want    int
		wantErr error
	}{
		{name: "both valid, newer wins", c: [2]ubootCopy{{flags: 3}, {flags: 4}}, want: 1},
		{name: "copy 0 bad", c: [2]ubootCopy{{flags: 9, err: bad}, {flags: 4}}, want: 1},
		{name: "copy 1 bad", c: [2]ubootCopy{{flags: 3}, {flags: 9, err: bad}}, want: 0},
		{name: "both bad", c: [2]ubootCopy{{err: bad}, {err: ErrMalformed}}, wantErr: ErrNoValidCopy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := selectCopy(tt.c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("selectCopy = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseFWConfig(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []FWLocation
		wantLine int // >0: a *ConfigError at that line; -1: one for the whole file
	}{
		{
			name: "single, comments, blank lines",
			in:   "# device offset size\n\n/dev/mmcblk0 0x400000 0x4000\n",
			want: []FWLocation{{Device: "/dev/mmcblk0", Offset: 0x400000, Size: 0x4000}},
		},
		{
			name: "redundant with sector columns and trailing comment",
			in:   "/dev/mmcblk0\t0x400000 0x4000 0x20000 2 # env\n  # indented comment\n/dev/mmcblk0 0x404000 4000 0x20000 0x2 1\n",
			want: []FWLocation{
				{Device: "/dev/mmcblk0", Offset: 0x400000, Size: 0x4000, SectorSize: 0x20000, Sectors: 2},
				{Device: "/dev/mmcblk0", Offset: 0x404000, Size: 0x4000, SectorSize: 0x20000, Sectors: 2},
			},
		},
		{name: "three locations", in: "a 0 0x10\n# c\na 0x10 0x10\na 0x20 0x10\n", wantLine: 4},
		{
			name: "decimal offset, octal offset, negative offset, hex size without 0x",
			in:   "a 16384 16384\nb -0x4000 4000\r\n",
			want: []FWLocation{
				{Device: "a", Offset: 16384, Size: 0x16384},
				{Device: "b", Offset: -0x4000, Size: 0x4000},
			},
		},
		{name: "octal offset", in: "a 010 0x10\n", want: []FWLocation{{Device: "a", Offset: 8, Size: 0x10}}},
		{name: "too few fields", in: "# c\n/dev/mmcblk0 0x0\n", wantLine: 2},
		{name: "bad offset", in: "/dev/x 0x 0x4000\n", wantLine: 1},
		{name: "bad size", in: "\n\n/dev/x 0 0xzz\n", wantLine: 3},
		{name: "zero size", in: "/dev/x 0 0\n", wantLine: 1},
		{name: "negative size", in: "/dev/x 0 -4000\n", wantLine: 1},
		{name: "size over the limit", in: "/dev/x 0 0x10000000\n", wantLine: 1},
		{name: "bad disable-lock", in: "/dev/x 0 0x4000 0 0 2\n", wantLine: 1},
		{name: "too many fields", in: "/dev/x 0 0x4000 0 0 0 0\n", wantLine: 1},
		{name: "empty", in: "# nothing\n", wantLine: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFWConfig(strings.NewReader(tt.in), "cfg")
			if tt.wantLine != 0 {
				var ce *ConfigError
				if !errors.Is(err, ErrConfig) || !errors.As(err, &ce) {
					t.Fatalf("error = %v, want a *ConfigError matching ErrConfig", err)
				}
				want := max(tt.wantLine, 0)
				if ce.File != "cfg" || ce.Line != want {
					t.Errorf("error at %s:%d, want cfg:%d", ce.File, ce.Line, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d locations %+v, want %+v", len(got), got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("location %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestNewUBootRefuses(t *testing.T) {
	l := FWLocation{Device: "/tmp/env", Offset: 0, Size: 0x4000}
	tests := []struct {
		name string
		locs []FWLocation
	}{
		{name: "none"},
		{name: "three", locs: []FWLocation{l, l, l}},
		{name: "MTD", locs: []FWLocation{{Device: "/dev/mtd1", Size: 0x4000}}},
		{name: "UBI", locs: []FWLocation{{Device: "/dev/ubi0_0", Size: 0x4000}}},
		{name: "sizes differ", locs: []FWLocation{l, {Device: "/tmp/env", Offset: 0x8000, Size: 0x2000}}},
		{name: "copies overlap", locs: []FWLocation{l, {Device: "/tmp/./env", Offset: 0x3fff, Size: 0x4000}}},
		{name: "no device", locs: []FWLocation{{Size: 0x4000}}},
		{name: "too small", locs: []FWLocation{{Device: "/tmp/env", Size: 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewUBoot(tt.locs...); !errors.Is(err, ErrConfig) {
				t.Errorf("NewUBoot error = %v, want ErrConfig", err)
			}
		})
	}
}

func TestGrubCodec(t *testing.T) {
	tests := []struct {
		name string
		env  Env
		body string // what follows signature and warning
	}{
		{name: "empty", env: Env{}, body: ""},
		{
			name: "escapes",
			env:  Env{"b": "back\\slash", "a": "line1\nline2", "c": "x=y #z", "e": ""},
			body: "a=line1\\\nline2\nb=back\\\\slash\nc=x=y #z\ne=\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := EncodeGrub(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			head := grubSignature + grubMessage + tt.body
			want := head + strings.Repeat("#", GrubEnvSize-len(head))
			if string(b) != want {
				t.Errorf("EncodeGrub =\n%q\nwant\n%q", b, want)
			}
			got, err := DecodeGrub(b)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.env) {
				t.Errorf("DecodeGrub(EncodeGrub(env)) = %q, want %q", got, tt.env)
			}
		})
	}
}

func TestDecodeGrub(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Env
		wantErr error
	}{
		{name: "no message, short file", in: grubSignature + "a=1\n", want: Env{"a": "1"}},
		{name: "comment with escaped newline", in: grubSignature + "# x\\\nstill comment\na=1\n", want: Env{"a": "1"}},
		{name: "needless escape", in: grubSignature + "a=\\x\\\\\n", want: Env{"a": "x\\"}},
		{name: "duplicate: last wins", in: grubSignature + "a=1\na=2\n###", want: Env{"a": "2"}},
		{name: "no signature", in: "# GRUB Environment\n", wantErr: ErrMalformed},
		{name: "entry without =", in: grubSignature + "abc\n", wantErr: ErrMalformed},
		{name: "value without newline", in: grubSignature + "a=1", wantErr: ErrMalformed},
		{name: "backslash at end", in: grubSignature + "a=1\\", wantErr: ErrMalformed},
		{name: "empty name", in: grubSignature + "=1\n", wantErr: ErrMalformed},
		{name: "NUL in value", in: grubSignature + "a=\x00\n", wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeGrub([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !maps.Equal(got, tt.want) {
				t.Errorf("DecodeGrub = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEncodeGrubRefuses(t *testing.T) {
	for _, bad := range []Env{{"": "v"}, {"a=b": "v"}, {"a\nb": "v"}, {"a\\b": "v"}, {"#a": "v"}, {"a": "v\x00"}} {
		if _, err := EncodeGrub(bad); !errors.Is(err, ErrInvalidVar) {
			t.Errorf("EncodeGrub(%q) error = %v, want ErrInvalidVar", bad, err)
		}
	}
	// Without the warning line the block holds 1024-25 bytes: "v=" + 996 + "\n".
	if _, err := EncodeGrub(Env{"v": strings.Repeat("x", 996)}); err != nil {
		t.Errorf("exactly full: %v", err)
	}
	if _, err := EncodeGrub(Env{"v": strings.Repeat("x", 997)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: error = %v, want ErrTooLarge", err)
	}
	// Escapes count: 499 backslashes take 998 bytes.
	if _, err := EncodeGrub(Env{"v": strings.Repeat("\\", 499)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("escaped value over: error = %v, want ErrTooLarge", err)
	}
}

func TestUpdateSkipsUnchanged(t *testing.T) {
	s := &countingStore{env: Env{"a": "1"}}
	if err := Update(s, func(Env) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if s.saves != 0 {
		t.Errorf("unchanged env saved %d times", s.saves)
	}
	fnErr := errors.New("stop")
	if err := Update(s, func(e Env) error { e["a"] = "2"; return fnErr }); !errors.Is(err, fnErr) || s.saves != 0 {
		t.Errorf("failing fn: err = %v, saves = %d; want fn's error and no save", err, s.saves)
	}
	if err := Update(s, func(e Env) error { e["a"] = "2"; return nil }); err != nil || s.saves != 1 || s.env["a"] != "2" {
		t.Errorf("changed env: err = %v, saves = %d, a = %q", err, s.saves, s.env["a"])
	}
}

type countingStore struct {
	env   Env
	saves int
}

func (s *countingStore) Load() (Env, error) { return s.env.Clone(), nil }
func (s *countingStore) Save(e Env) error   { s.env = e.Clone(); s.saves++; return nil }
