package ulp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// objdumps disassembles raw bytes for each arch (and Thumb).
var objdumps = map[string][]string{
	AMD64:         {"objdump", "-m", "i386:x86-64"},
	ARM64:         {"aarch64-linux-gnu-objdump", "-m", "aarch64"},
	ARM:           {"arm-linux-gnueabihf-objdump", "-m", "arm"},
	ARM + "thumb": {"arm-linux-gnueabihf-objdump", "-m", "arm", "-M", "force-thumb"},
}

type insn struct {
	mnemonic, operands string
	size               uint64
}

// objdump line: "    1000:\te9 fb ff ff 7f       \tjmp    0x80001000"
var insnLine = regexp.MustCompile(`^\s*([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(\S+)\s*(.*)$`)

// disassemble runs the real objdump on code placed at address at and
// returns its instructions by address.
func disassemble(t *testing.T, arch string, thumb bool, at uint64, code []byte) map[uint64]insn {
	t.Helper()
	key := arch
	if thumb {
		key += "thumb"
	}
	cmd := objdumps[key]
	needTools(t, cmd[0])
	file := filepath.Join(t.TempDir(), "tramp.bin")
	if err := os.WriteFile(file, code, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, cmd[1:]...), "-D", "-b", "binary", fmt.Sprintf("--adjust-vma=%#x", at), file)
	out, err := exec.Command(cmd[0], args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd[0], err, out)
	}
	insns := map[uint64]insn{}
	for _, line := range strings.Split(string(out), "\n") {
		m := insnLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		addr, err := strconv.ParseUint(m[1], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		// Bytes are listed per byte on x86, per word or halfword on ARM.
		size := uint64(len(strings.ReplaceAll(m[2], " ", "")) / 2)
		insns[addr] = insn{mnemonic: m[3], operands: m[4], size: size}
	}
	if len(insns) == 0 {
		t.Fatalf("%s printed no instructions:\n%s", cmd[0], out)
	}
	return insns
}

var hexAddr = regexp.MustCompile(`0x([0-9a-f]+)`)

// addrIn returns the first hex address in s after prefix marker (or the
// first at all when marker is empty).
func addrIn(t *testing.T, s, marker string) uint64 {
	t.Helper()
	if marker != "" {
		i := strings.Index(s, marker)
		if i < 0 {
			t.Fatalf("no %q in %q", marker, s)
		}
		s = s[i:]
	}
	m := hexAddr.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no address in %q", s)
	}
	v, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// literal reads the width-byte literal at address addr from the trampoline
// written at at; it must lie inside the trampoline.
func literal(t *testing.T, code []byte, at, addr uint64, width int) uint64 {
	t.Helper()
	if addr < at || addr-at+uint64(width) > uint64(len(code)) {
		t.Fatalf("literal at %#x is outside the %d-byte trampoline at %#x", addr, len(code), at)
	}
	b := code[addr-at:]
	if width == 8 {
		return binary.LittleEndian.Uint64(b)
	}
	return uint64(binary.LittleEndian.Uint32(b))
}

// decodedTarget asks objdump where the trampoline at at goes, and whether
// it took the near form.
func decodedTarget(t *testing.T, arch string, thumb bool, at uint64, code []byte) (uint64, bool) {
	t.Helper()
	insns := disassemble(t, arch, thumb, at, code)
	first, ok := insns[at]
	if !ok {
		t.Fatalf("objdump shows no instruction at %#x: %v", at, insns)
	}
	ops := first.operands
	switch {
	case arch == AMD64 && first.mnemonic == "jmp" && strings.HasPrefix(ops, "*0x0(%rip)"):
		return literal(t, code, at, addrIn(t, ops, "#"), 8), false
	case arch == AMD64 && first.mnemonic == "jmp":
		return addrIn(t, ops, ""), true
	case arch == ARM64 && first.mnemonic == "ldr" && strings.HasPrefix(ops, "x16, "):
		if next := insns[at+4]; next.mnemonic != "br" || next.operands != "x16" {
			t.Fatalf("ldr x16 is followed by %s %s, want br x16", next.mnemonic, next.operands)
		}
		return literal(t, code, at, addrIn(t, ops, ""), 8), false
	case arch == ARM64 && first.mnemonic == "b":
		return addrIn(t, ops, ""), true
	case arch == ARM && !thumb && first.mnemonic == "ldr" && strings.HasPrefix(ops, "pc, [pc"):
		return literal(t, code, at, addrIn(t, ops, "@"), 4), false
	case arch == ARM && first.mnemonic == "b" || arch == ARM && thumb && first.mnemonic == "b.w":
		return addrIn(t, ops, ""), true
	case arch == ARM && thumb && first.mnemonic == "ldr.w" && strings.HasPrefix(ops, "pc, [pc"):
		addr := addrIn(t, ops, "@")
		if addr%4 != 0 {
			t.Fatalf("Thumb literal at %#x is not word-aligned", addr)
		}
		lit := literal(t, code, at, addr, 4)
		if lit&1 == 0 {
			t.Fatalf("Thumb literal %#x has no Thumb bit", lit)
		}
		return lit &^ 1, false
	}
	t.Fatalf("unexpected first instruction %s %s", first.mnemonic, ops)
	return 0, false
}

func TestTrampolineDisassembles(t *testing.T) {
	type tcase struct {
		name  string
		arch  string
		thumb bool
		at    uint64
		to    uint64
		near  bool
	}
	var cases []tcase
	add := func(arch string, thumb bool, at, pc uint64, lo, hi, step int64) {
		name := arch
		if thumb {
			name = fmt.Sprintf("thumb@%d", at%4)
		}
		for _, c := range []struct {
			label string
			d     int64
			near  bool
		}{
			{"short forward", 0x40, true},
			{"short backward", -0x40, true},
			{"forward limit", hi, true},
			{"forward out", hi + step, false},
			{"backward limit", lo, true},
			{"backward out", lo - step, false},
		} {
			cases = append(cases, tcase{fmt.Sprintf("%s/%s", name, c.label), arch, thumb, at, pc + uint64(c.d), c.near})
		}
	}
	const at64 = 0x7f3a_1234_5000
	add(AMD64, false, at64, at64+5, -1<<31, 1<<31-1, 1)
	add(ARM64, false, at64, at64, -1<<27, 1<<27-4, 4)
	add(ARM, false, 0x8000_0000, 0x8000_0008, -1<<25, 1<<25-4, 4)
	add(ARM, true, 0x8000_0000, 0x8000_0004, -1<<24, 1<<24-2, 2)
	add(ARM, true, 0x8000_0002, 0x8000_0006, -1<<24, 1<<24-2, 2)
	cases = append(cases,
		tcase{"amd64/far away", AMD64, false, 0x5555_0000_1000, at64, false},
		tcase{"arm64/far away", ARM64, false, 0xffff_8000_0000, 0x4000_0000, false},
		tcase{"thumb@2/far, target with Thumb bit", ARM, true, 0x1002, 0xb6f0_1235, false},
		tcase{"thumb@0/near, target with Thumb bit", ARM, true, 0x1000, 0x2001, true},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, err := Trampoline(tc.arch, tc.thumb, tc.at, tc.to)
			if err != nil {
				t.Fatalf("Trampoline(%s, %v, %#x, %#x): %v", tc.arch, tc.thumb, tc.at, tc.to, err)
			}
			if n := len(code); n < NearSize(tc.arch, tc.thumb) || n > FarSize(tc.arch, tc.thumb, tc.at) {
				t.Fatalf("%d bytes, want %d..%d", n, NearSize(tc.arch, tc.thumb), FarSize(tc.arch, tc.thumb, tc.at))
			}
			if want := NearSize(tc.arch, tc.thumb); tc.near && len(code) != want {
				t.Fatalf("%d bytes, want the %d-byte near form", len(code), want)
			}
			if want := FarSize(tc.arch, tc.thumb, tc.at); !tc.near && len(code) != want {
				t.Fatalf("%d bytes, want the %d-byte far form", len(code), want)
			}
			got, near := decodedTarget(t, tc.arch, tc.thumb, tc.at, code)
			want := tc.to
			if tc.thumb {
				want &^= 1
			}
			if got != want || near != tc.near {
				t.Fatalf("objdump decodes a jump to %#x (near %v), want %#x (near %v)", got, near, want, tc.near)
			}
		})
	}
}

func TestTrampolineRefuses(t *testing.T) {
	tests := []struct {
		name    string
		arch    string
		thumb   bool
		at, to  uint64
		wantErr error
	}{
		{"unknown arch", "riscv64", false, 0, 0, ErrUnsupportedArch},
		{"thumb on amd64", AMD64, true, 0, 0, ErrInvalid},
		{"arm64 unaligned entry", ARM64, false, 0x1002, 0x2000, ErrInvalid},
		{"arm64 unaligned target", ARM64, false, 0x1000, 0x2002, ErrInvalid},
		{"arm unaligned", ARM, false, 0x1002, 0x2000, ErrInvalid},
		{"arm beyond 32 bits", ARM, false, 0x1000, 1 << 32, ErrInvalid},
		{"thumb odd entry", ARM, true, 0x1001, 0x2000, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Trampoline(tc.arch, tc.thumb, tc.at, tc.to); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Trampoline: %v, want %v", err, tc.wantErr)
			}
		})
	}
}
