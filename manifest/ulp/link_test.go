package ulp

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// These tests compile testdata sources with the real cross compilers,
// turn each object into a Bundle with a small test-only converter, and
// compare Link's image byte for byte with what the real GNU linker makes
// of the same object at the same addresses.

const linkPage = 4096

// toolchain names the programs for one arch.
type toolchain struct{ cc, ld string }

var toolchains = map[string]toolchain{
	AMD64: {"gcc", "ld"},
	ARM64: {"aarch64-linux-gnu-gcc", "aarch64-linux-gnu-ld"},
	ARM:   {"arm-linux-gnueabihf-gcc", "arm-linux-gnueabihf-ld"},
}

// needTools skips the test when a program of arch's toolchain is missing.
func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed: %v", n, err)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// placed is one input section of the object in the patch image.
type placed struct {
	name   string
	off    uint64 // offset in the patch image
	size   uint64
	nobits bool
}

// converted is an object turned into a bundle the way a bundle builder
// would: sections laid out consecutively, undefined symbols resolved to
// made-up offsets in the target.
type converted struct {
	b       *Bundle
	secs    []placed
	externs map[string]uint64 // name → offset from the target base, Thumb bit set for t_*
	types   map[uint32]int    // relocation type → count
}

func skipSection(name string) bool {
	for _, p := range []string{".eh_frame", ".note", ".ARM.exidx", ".ARM.extab", ".comment"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func alignUp(v, a uint64) uint64 {
	if a <= 1 {
		return v
	}
	return (v + a - 1) / a * a
}

// externOffset gives every undefined symbol its own 256-byte slot in the
// target. On ARM, t_* names are Thumb functions.
func (c *converted) externOffset(arch, name string) uint64 {
	if off, ok := c.externs[name]; ok {
		return off
	}
	off := 0x1000 + 0x100*uint64(len(c.externs))
	if arch == ARM && strings.HasPrefix(name, "t_") {
		off |= 1
	}
	c.externs[name] = off
	return off
}

func convert(t *testing.T, arch, obj string) *converted {
	t.Helper()
	f, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &converted{b: &Bundle{Format: FormatVersion, Name: "link-test", Arch: arch},
		externs: map[string]uint64{}, types: map[uint32]int{}}
	secOff := map[int]uint64{}
	var code, data, bss []int
	for i, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 || skipSection(s.Name) {
			continue
		}
		switch {
		case s.Type == elf.SHT_NOBITS:
			bss = append(bss, i)
		case s.Flags&elf.SHF_WRITE != 0:
			data = append(data, i)
		default:
			code = append(code, i)
		}
	}
	var codeBuf, dataBuf bytes.Buffer
	for _, i := range code {
		s := f.Sections[i]
		off := alignUp(uint64(codeBuf.Len()), s.Addralign)
		codeBuf.Write(make([]byte, off-uint64(codeBuf.Len())))
		b, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		codeBuf.Write(b)
		secOff[i] = off
		c.secs = append(c.secs, placed{name: s.Name, off: off, size: s.Size})
	}
	c.b.Code = codeBuf.Bytes()
	dataStart := c.b.DataOffset(linkPage)
	for _, i := range data {
		s := f.Sections[i]
		off := alignUp(uint64(dataBuf.Len()), s.Addralign)
		dataBuf.Write(make([]byte, off-uint64(dataBuf.Len())))
		b, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		dataBuf.Write(b)
		secOff[i] = dataStart + off
		c.secs = append(c.secs, placed{name: s.Name, off: dataStart + off, size: s.Size})
	}
	end := uint64(dataBuf.Len())
	for _, i := range bss {
		s := f.Sections[i]
		if len(bss) > 0 && end == uint64(dataBuf.Len()) {
			// BSS starts right after Data: pad Data to its alignment.
			end = alignUp(end, s.Addralign)
			dataBuf.Write(make([]byte, end-uint64(dataBuf.Len())))
		}
		off := alignUp(end, s.Addralign)
		secOff[i] = dataStart + off
		c.secs = append(c.secs, placed{name: s.Name, off: dataStart + off, size: s.Size, nobits: true})
		end = off + s.Size
	}
	c.b.Data = dataBuf.Bytes()
	c.b.BSS = end - uint64(dataBuf.Len())

	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range f.Sections {
		if rs.Type != elf.SHT_RELA && rs.Type != elf.SHT_REL {
			continue
		}
		base, ok := secOff[int(rs.Info)]
		if !ok {
			continue // relocations of a section the bundle leaves out
		}
		raw, err := rs.Data()
		if err != nil {
			t.Fatal(err)
		}
		for len(raw) > 0 {
			var off, info uint64
			var addend int64
			var symIdx uint64
			var typ uint32
			if f.Class == elf.ELFCLASS64 {
				off, info = binary.LittleEndian.Uint64(raw), binary.LittleEndian.Uint64(raw[8:])
				symIdx, typ = info>>32, uint32(info)
				addend = int64(binary.LittleEndian.Uint64(raw[16:]))
				raw = raw[24:]
			} else {
				off, info = uint64(binary.LittleEndian.Uint32(raw)), uint64(binary.LittleEndian.Uint32(raw[4:]))
				symIdx, typ = info>>8, uint32(info&0xff)
				if rs.Type == elf.SHT_RELA {
					t.Fatalf("%s: RELA on a 32-bit object", rs.Name)
				}
				raw = raw[8:]
			}
			if symIdx == 0 || int(symIdx) > len(syms) {
				t.Fatalf("%s: relocation at %#x has symbol index %d", rs.Name, off, symIdx)
			}
			sym := syms[symIdx-1]
			r := Reloc{Offset: base + off, Type: typ, Addend: addend}
			switch sym.Section {
			case elf.SHN_UNDEF:
				r.Base, r.Sym = BaseTarget, c.externOffset(arch, sym.Name)
			case elf.SHN_ABS, elf.SHN_COMMON:
				t.Fatalf("%s: symbol %q in section %v", rs.Name, sym.Name, sym.Section)
			default:
				so, ok := secOff[int(sym.Section)]
				if !ok {
					t.Fatalf("%s: symbol %q in a section left out (%d)", rs.Name, sym.Name, sym.Section)
				}
				r.Base, r.Sym = BasePatch, so+sym.Value
			}
			if _, err := RelocWidth(arch, typ); err != nil {
				t.Fatalf("%s: %v", rs.Name, err)
			}
			c.types[typ]++
			c.b.Relocs = append(c.b.Relocs, r)
		}
	}
	return c
}

// armStubs writes an assembly file defining every extern at its own
// section, so that the linker knows which are Thumb functions.
func armStubs(externs map[string]uint64) string {
	var sb strings.Builder
	sb.WriteString("\t.syntax unified\n\t.arch armv7-a\n")
	for _, name := range sortedNames(externs) {
		fmt.Fprintf(&sb, "\t.section .tgt.%s,\"ax\",%%progbits\n\t.globl %s\n", name, name)
		switch {
		case strings.HasPrefix(name, "t_"):
			fmt.Fprintf(&sb, "\t.thumb\n\t.type %s,%%function\n\t.thumb_func\n%s:\tbx lr\n", name, name)
		case strings.HasPrefix(name, "a_"):
			fmt.Fprintf(&sb, "\t.arm\n\t.type %s,%%function\n%s:\tbx lr\n", name, name)
		default:
			fmt.Fprintf(&sb, "\t.balign 4\n%s:\t.word 0\n", name)
		}
	}
	return sb.String()
}

func sortedNames(m map[string]uint64) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// realLink links obj with the real linker, each section at the address
// the converter gave it, and returns the linked ELF file.
func realLink(t *testing.T, arch, dir, obj string, c *converted, patchBase, targetBase uint64) *elf.File {
	t.Helper()
	tc := toolchains[arch]
	var script strings.Builder
	script.WriteString("SECTIONS {\n")
	for i, s := range c.secs {
		fmt.Fprintf(&script, "  .ulp%d %#x : { *(%s) }\n", i, patchBase+s.off, s.name)
	}
	args := []string{"-o", filepath.Join(dir, "linked"), "-T", filepath.Join(dir, "link.ld"),
		"--no-relax", "-nostdlib", "-static", "--build-id=none", "-z", "noexecstack", "-z", "norelro",
		"--no-warn-rwx-segments", "-e", "0", obj}
	switch arch {
	case ARM:
		stub := filepath.Join(dir, "target.s")
		if err := os.WriteFile(stub, []byte(armStubs(c.externs)), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, tc.cc, "-c", "-o", filepath.Join(dir, "target.o"), stub)
		args = append(args, filepath.Join(dir, "target.o"), "--no-fix-cortex-a8", "--no-fix-arm1176")
		for i, name := range sortedNames(c.externs) {
			fmt.Fprintf(&script, "  .tgt%d %#x : { *(.tgt.%s) }\n", i, targetBase+c.externs[name]&^1, name)
		}
	default:
		for name, off := range c.externs {
			args = append(args, fmt.Sprintf("--defsym=%s=%#x", name, targetBase+off))
		}
	}
	script.WriteString("  /DISCARD/ : { *(.eh_frame) *(.note.*) *(.ARM.exidx*) *(.ARM.extab*) *(.comment) }\n}\n")
	if err := os.WriteFile(filepath.Join(dir, "link.ld"), []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, tc.ld, args...)
	f, err := elf.Open(filepath.Join(dir, "linked"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type linkCase struct {
	name                  string
	arch                  string
	src                   string
	flags                 []string
	patchBase, targetBase uint64
}

var linkCases = []linkCase{
	{"amd64/pic", AMD64, "link.c", []string{"-fPIC"}, 0x7f5a12340000, 0x7f5a00000000},
	{"amd64/pic-below", AMD64, "link.c", []string{"-fPIC"}, 0x555500000000, 0x555560000000},
	{"amd64/nopic", AMD64, "link.c", []string{"-fno-pic", "-mcmodel=small"}, 0x40000000, 0x400000},
	{"amd64/asm", AMD64, "x86.s", nil, 0x40000000, 0x400000},
	{"arm64/pic", ARM64, "link.c", []string{"-fPIC"}, 0xffff9ab00000, 0xffff94000000},
	{"arm64/nopic", ARM64, "link.c", []string{"-fno-pic"}, 0x400000, 0x4000000},
	{"arm64/asm", ARM64, "a64.s", nil, 0x40000000, 0x40080000},
	{"arm64/asm-below", ARM64, "a64.s", nil, 0x40100000, 0x40080000},
	{"arm/thumb-pic", ARM, "link.c", []string{"-mthumb", "-fPIC"}, 0xb6e00000, 0xb6000000},
	{"arm/thumb-nopic", ARM, "link.c", []string{"-mthumb", "-fno-pic"}, 0x10000, 0xf00000},
	{"arm/arm-pic", ARM, "link.c", []string{"-marm", "-fPIC"}, 0xb6e00000, 0xb6000000},
	{"arm/arm-nopic", ARM, "link.c", []string{"-marm", "-fno-pic"}, 0x01000000, 0x00010000},
	{"arm/asm", ARM, "a32.s", nil, 0x20000000, 0x20040000},
	{"arm/asm-below", ARM, "a32.s", nil, 0x20080000, 0x20000000},
}

// TestLinkMatchesRealLinker is the proof that Link computes what the
// psABIs say: the same object, linked by Link and by GNU ld at the same
// addresses, gives the same bytes in every section.
func TestLinkMatchesRealLinker(t *testing.T) {
	proven := map[string]map[uint32]int{}
	for _, tc := range linkCases {
		t.Run(tc.name, func(t *testing.T) {
			tools := toolchains[tc.arch]
			needTools(t, tools.cc, tools.ld)
			dir := t.TempDir()
			obj := filepath.Join(dir, "patch.o")
			args := append([]string{"-c", "-O2", "-ffunction-sections", "-fdata-sections", "-fvisibility=hidden",
				"-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fno-stack-protector"}, tc.flags...)
			run(t, tools.cc, append(args, "-o", obj, filepath.Join("testdata", tc.src))...)

			c := convert(t, tc.arch, obj)
			if len(c.b.Relocs) == 0 {
				t.Fatal("the object has no relocations")
			}
			img, err := Link(c.b, tc.patchBase, tc.targetBase, linkPage)
			if err != nil {
				t.Fatalf("Link: %v", err)
			}
			if want := c.b.DataOffset(linkPage) + uint64(len(c.b.Data)); uint64(len(img)) != want {
				t.Fatalf("image is %d bytes, want %d", len(img), want)
			}
			linked := realLink(t, tc.arch, dir, obj, c, tc.patchBase, tc.targetBase)
			for i, s := range c.secs {
				out := linked.Section(fmt.Sprintf(".ulp%d", i))
				if out == nil {
					t.Fatalf("linked output has no section for %s", s.name)
				}
				if out.Addr != tc.patchBase+s.off || out.Size != s.size {
					t.Fatalf("%s linked at %#x size %d, want %#x size %d", s.name, out.Addr, out.Size, tc.patchBase+s.off, s.size)
				}
				if s.nobits {
					continue
				}
				want, err := out.Data()
				if err != nil {
					t.Fatal(err)
				}
				got := img[s.off : s.off+s.size]
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the linker's output:\n%s", s.name, describeDiff(c, s, got, want))
				}
			}
			if !t.Failed() {
				if proven[tc.arch] == nil {
					proven[tc.arch] = map[uint32]int{}
				}
				for typ, n := range c.types {
					proven[tc.arch][typ] += n
				}
			}
		})
	}
	// Every supported relocation type must have been exercised.
	for arch, a := range arches {
		if proven[arch] == nil {
			continue // skipped or failed
		}
		var names []string
		for typ := range a.relocs {
			if proven[arch][typ] == 0 {
				t.Errorf("%s: %s is supported but no test object exercised it", arch, relocName(a.machine, typ))
			}
			names = append(names, fmt.Sprintf("%s×%d", relocName(a.machine, typ), proven[arch][typ]))
		}
		sort.Strings(names)
		t.Logf("%s: byte-identical with the real linker: %s", arch, strings.Join(names, " "))
	}
}

// describeDiff names the relocations that cover the first differing bytes.
func describeDiff(c *converted, s placed, got, want []byte) string {
	var sb strings.Builder
	n := 0
	for i := range got {
		if got[i] == want[i] {
			continue
		}
		pos := s.off + uint64(i)
		var covering []string
		for j, r := range c.b.Relocs {
			w, _ := RelocWidth(c.b.Arch, r.Type)
			if pos >= r.Offset && pos < r.Offset+uint64(w) {
				covering = append(covering, fmt.Sprintf("relocs[%d] %s base %d sym %#x addend %d at %#x",
					j, relocName(arches[c.b.Arch].machine, r.Type), r.Base, r.Sym, r.Addend, r.Offset))
			}
		}
		fmt.Fprintf(&sb, "  +%#x: got %#02x want %#02x %v\n", i, got[i], want[i], covering)
		if n++; n == 16 {
			break
		}
	}
	return sb.String()
}

func TestLinkOverflow(t *testing.T) {
	le := binary.LittleEndian
	code := func(words ...uint32) []byte {
		var b []byte
		for _, w := range words {
			b = le.AppendUint32(b, w)
		}
		return b
	}
	tests := []struct {
		name      string
		arch      string
		code      []byte
		reloc     Reloc
		patchBase uint64
		target    uint64
		want      error
		value     int64
	}{
		{"amd64 PC32 just in", AMD64, make([]byte, 8), Reloc{Offset: 4, Type: uint32(elf.R_X86_64_PC32), Base: BaseTarget, Sym: 0x7fffffff + 4}, 0, 0, nil, 0},
		{"amd64 PC32 out", AMD64, make([]byte, 8), Reloc{Offset: 4, Type: uint32(elf.R_X86_64_PC32), Base: BaseTarget, Sym: 0x80000000 + 4}, 0, 0, ErrRelocOverflow, 0x80000000},
		{"amd64 PLT32 back out", AMD64, make([]byte, 8), Reloc{Offset: 0, Type: uint32(elf.R_X86_64_PLT32), Base: BaseTarget, Sym: 0, Addend: -4}, 0x80000000, 0, ErrRelocOverflow, -0x80000004},
		{"amd64 32 negative", AMD64, make([]byte, 8), Reloc{Offset: 0, Type: uint32(elf.R_X86_64_32), Base: BaseTarget, Addend: -1}, 0, 0, ErrRelocOverflow, -1},
		{"amd64 32S too big", AMD64, make([]byte, 8), Reloc{Offset: 0, Type: uint32(elf.R_X86_64_32S), Base: BaseTarget, Sym: 0x80000000}, 0, 0, ErrRelocOverflow, 0x80000000},
		{"arm64 CALL26 just in", ARM64, code(0x94000000), Reloc{Type: uint32(elf.R_AARCH64_CALL26), Base: BaseTarget, Sym: 1<<27 - 4}, 0, 0, nil, 0},
		{"arm64 CALL26 out", ARM64, code(0x94000000), Reloc{Type: uint32(elf.R_AARCH64_CALL26), Base: BaseTarget, Sym: 1 << 27}, 0, 0, ErrRelocOverflow, 1 << 27},
		{"arm64 CALL26 back out", ARM64, code(0x94000000), Reloc{Type: uint32(elf.R_AARCH64_CALL26), Base: BaseTarget, Addend: -4}, 1 << 27, 0, ErrRelocOverflow, -(1 << 27) - 4},
		{"arm64 CALL26 misaligned", ARM64, code(0x94000000), Reloc{Type: uint32(elf.R_AARCH64_CALL26), Base: BaseTarget, Sym: 2}, 0, 0, ErrRelocOverflow, 2},
		{"arm64 ADRP out", ARM64, code(0x90000000), Reloc{Type: uint32(elf.R_AARCH64_ADR_PREL_PG_HI21), Base: BaseTarget, Sym: 1 << 32}, 0, 0, ErrRelocOverflow, 1 << 32},
		{"arm64 LDST64 misaligned", ARM64, code(0xf9400000), Reloc{Type: uint32(elf.R_AARCH64_LDST64_ABS_LO12_NC), Base: BaseTarget, Sym: 4}, 0, 0, ErrRelocOverflow, 4},
		// Thumb BL with the usual in-place addend -4 (f7ff fffe).
		{"thumb CALL just in", ARM, code(0xfffef7ff), Reloc{Type: uint32(elf.R_ARM_THM_PC22), Base: BaseTarget, Sym: 1<<24 + 4 - 2 | 1}, 0, 0, nil, 0},
		{"thumb CALL out", ARM, code(0xfffef7ff), Reloc{Type: uint32(elf.R_ARM_THM_PC22), Base: BaseTarget, Sym: 1<<24 + 4 | 1}, 0, 0, ErrRelocOverflow, 1 << 24},
		{"thumb CALL back out", ARM, code(0xfffef7ff), Reloc{Type: uint32(elf.R_ARM_THM_PC22), Base: BaseTarget, Sym: 2 | 1}, 1 << 24, 0, ErrRelocOverflow, -(1 << 24) - 2},
		{"thumb JUMP24 to ARM", ARM, code(0xbffef7ff), Reloc{Type: uint32(elf.R_ARM_THM_JUMP24), Base: BaseTarget, Sym: 0x100}, 0, 0, ErrInterwork, 0xfc},
		{"thumb JUMP19 to ARM", ARM, code(0xaffef43f), Reloc{Type: uint32(elf.R_ARM_THM_JUMP19), Base: BaseTarget, Sym: 0x100}, 0, 0, ErrInterwork, 0xfc},
		// ARM BL with the usual in-place addend -8 (ebfffffe).
		{"arm CALL out", ARM, code(0xebfffffe), Reloc{Type: uint32(elf.R_ARM_CALL), Base: BaseTarget, Sym: 1<<25 + 8}, 0, 0, ErrRelocOverflow, 1 << 25},
		{"arm JUMP24 to Thumb", ARM, code(0xeafffffe), Reloc{Type: uint32(elf.R_ARM_JUMP24), Base: BaseTarget, Sym: 0x101}, 0, 0, ErrInterwork, 0xf9},
		{"arm conditional BL to Thumb", ARM, code(0x0bfffffe), Reloc{Type: uint32(elf.R_ARM_CALL), Base: BaseTarget, Sym: 0x101}, 0, 0, ErrInterwork, 0xf9},
		{"arm beyond 32 bits", ARM, code(0), Reloc{Type: uint32(elf.R_ARM_ABS32), Base: BaseTarget}, 0, 1 << 32, ErrRelocOverflow, 1 << 32},
		{"amd64 unknown type", AMD64, make([]byte, 8), Reloc{Type: uint32(elf.R_X86_64_GOTPCRELX)}, 0, 0, ErrUnsupportedReloc, 0},
		{"amd64 outside the image", AMD64, make([]byte, 8), Reloc{Offset: 5, Type: uint32(elf.R_X86_64_PC32)}, 0, 0, ErrInvalid, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &Bundle{Format: FormatVersion, Arch: tc.arch, Code: tc.code, Relocs: []Reloc{tc.reloc}}
			_, err := Link(b, tc.patchBase, tc.target, linkPage)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Link: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Link: %v, want %v", err, tc.want)
			}
			var re *RelocError
			if errors.As(err, &re) {
				if re.Index != 0 || re.Type != tc.reloc.Type || re.Value != tc.value {
					t.Fatalf("RelocError index %d type %d value %#x, want 0, %d, %#x", re.Index, re.Type, re.Value, tc.reloc.Type, tc.value)
				}
			} else if tc.want != ErrInvalid {
				t.Fatalf("Link error %v is not a *RelocError", err)
			}
		})
	}
}

func TestLinkRefuses(t *testing.T) {
	ok := &Bundle{Format: FormatVersion, Arch: AMD64, Code: []byte{0xc3}}
	if _, err := Link(&Bundle{Arch: "mips", Code: []byte{0}}, 0, 0, linkPage); !errors.Is(err, ErrUnsupportedArch) {
		t.Errorf("unknown arch: %v", err)
	}
	if _, err := Link(ok, 0, 0, 3000); !errors.Is(err, ErrInvalid) {
		t.Errorf("page size 3000: %v", err)
	}
	if _, err := Link(ok, 0x1800, 0, linkPage); !errors.Is(err, ErrInvalid) {
		t.Errorf("unaligned patch base: %v", err)
	}
	if _, err := Link(nil, 0, 0, linkPage); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil bundle: %v", err)
	}
	arm := &Bundle{Arch: ARM, Code: make([]byte, 4), Relocs: []Reloc{{Type: uint32(elf.R_ARM_ABS32), Addend: 4}}}
	if _, err := Link(arm, 0, 0, linkPage); !errors.Is(err, ErrInvalid) {
		t.Errorf("ARM with a RELA addend: %v", err)
	}
	// A relocation in Data lands at the page-aligned data offset.
	d := &Bundle{Arch: AMD64, Code: []byte{0xc3}, Data: make([]byte, 8),
		Relocs: []Reloc{{Offset: 0x4000, Type: uint32(elf.R_X86_64_64), Base: BaseTarget, Sym: 0x10, Addend: 2}}}
	img, err := Link(d, 0x10000, 0x5000, 0x4000)
	if err != nil {
		t.Fatal(err)
	}
	if len(img) != 0x4008 || binary.LittleEndian.Uint64(img[0x4000:]) != 0x5012 || img[0] != 0xc3 {
		t.Errorf("image %d bytes, data word %#x", len(img), binary.LittleEndian.Uint64(img[0x4000:]))
	}
}

// FuzzLink: Link never panics on any relocation of any supported type,
// and its errors wrap the documented sentinels.
func FuzzLink(f *testing.F) {
	f.Add(uint8(0), uint32(elf.R_X86_64_PC32), uint64(0), uint64(0x7fffffff), int64(-4), true, []byte{0xe8, 0, 0, 0, 0})
	f.Add(uint8(1), uint32(elf.R_AARCH64_ADR_PREL_PG_HI21), uint64(4), uint64(1<<33), int64(0), false, make([]byte, 8))
	f.Add(uint8(2), uint32(elf.R_ARM_THM_PC22), uint64(2), uint64(0x1001), int64(0), true, []byte{0, 0, 0xff, 0xf7, 0xfe, 0xff})
	f.Add(uint8(2), uint32(elf.R_ARM_CALL), uint64(0), uint64(0x2001), int64(0), true, []byte{0xfe, 0xff, 0xff, 0xeb})
	f.Fuzz(func(t *testing.T, archIdx uint8, typ uint32, off, sym uint64, addend int64, target bool, code []byte) {
		arch := []string{AMD64, ARM64, ARM}[int(archIdx)%3]
		if arch == ARM {
			addend = 0
		}
		base := BasePatch
		if target {
			base = BaseTarget
		}
		b := &Bundle{Arch: arch, Code: code, Relocs: []Reloc{{Offset: off, Type: typ, Base: base, Sym: sym, Addend: addend}}}
		patchBase, targetBase := uint64(0x7f0000000000), uint64(0x7f0010000000)
		if arch == ARM {
			patchBase, targetBase = 0xb6000000, 0xb5000000
		}
		img, err := Link(b, patchBase, targetBase, linkPage)
		switch {
		case err == nil:
			if len(img) < len(code) {
				t.Fatalf("image of %d bytes for %d bytes of code", len(img), len(code))
			}
		case errors.Is(err, ErrRelocOverflow), errors.Is(err, ErrInterwork), errors.Is(err, ErrUnsupportedReloc), errors.Is(err, ErrInvalid):
		default:
			t.Fatalf("Link: unexpected error %v", err)
		}
	})
}
