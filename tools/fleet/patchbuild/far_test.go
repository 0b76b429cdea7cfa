package patchbuild_test

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"

	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/tools/fleet/patchbuild"
)

// TestFarCalls builds a fix that calls and tail-calls a static function
// of the target (testdata/far.c), links it with the patch mapped beyond
// every direct branch's reach from the target, and follows the linked
// code: each branch to the target lands on the one veneer, the veneer
// loads its patch GOT slot, and the slot holds the function's address.
func TestFarCalls(t *testing.T) {
	const gib, mib = uint64(1) << 30, uint64(1) << 20
	tests := []struct {
		name                  string
		tc                    toolchain
		flags                 []string
		targetBase, patchBase uint64
	}{
		// amd64 rel32 reaches ±2 GiB, arm64 B/BL ±128 MiB, Thumb BL
		// ±16 MiB, ARM BL ±32 MiB.
		{"amd64", toolchains[0], nil, 0x7f0000000000, 0x7f0000000000 - 16*gib},
		{"arm64", toolchains[1], nil, 0x7f00000000, 0x7f00000000 + gib},
		{"arm thumb", toolchains[2], []string{"-mthumb"}, 0x76000000, 0x76000000 - 200*mib},
		{"arm arm-state", toolchains[2], []string{"-marm"}, 0x76000000, 0x76000000 - 200*mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := tt.tc
			tc.need(t)
			dir := t.TempDir()
			lib := tc.compile(t, dir, "far.c", "libfar.so", tt.flags...)
			orig := tc.compile(t, dir, "far.c", "orig.o", tt.flags...)
			fixed := tc.compile(t, dir, "far.c", "fixed.o", append([]string{"-DFIX"}, tt.flags...)...)
			b, rep, err := patchbuild.Build(patchbuild.Input{Name: "far", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			checkRoundTrip(t, b)
			bump, ok := tc.nm(t, lib, false)["far_bump"]
			if !ok {
				t.Fatalf("nm: no far_bump in %s", lib)
			}
			if len(b.Funcs) == 1 && b.Funcs[0].Thumb {
				bump |= 1 // a Thumb function's address
			}
			if rep.Veneers != 1 || rep.GOTSlots != 1 || !reflect.DeepEqual(rep.New, []string{"far_twice"}) {
				t.Errorf("veneers %d GOT slots %d new %v, want one veneer and one slot for far_bump, far_twice new",
					rep.Veneers, rep.GOTSlots, rep.New)
			}
			// The only reference to the target is the slot's absolute
			// address of far_bump.
			var slot *ulp.Reloc
			for i, r := range b.Relocs {
				if r.Base != ulp.BaseTarget {
					continue
				}
				if slot != nil || r.Sym != bump || !isAbs(b.Arch, r.Type) {
					t.Fatalf("relocation %+v to the target, want only one absolute relocation of far_bump (%#x)", r, bump)
				}
				slot = &b.Relocs[i]
			}
			if slot == nil {
				t.Fatalf("no relocation fills a slot with far_bump: %+v", b.Relocs)
			}

			img, err := ulp.Link(b, tt.patchBase, tt.targetBase, 4096)
			if err != nil {
				t.Fatalf("Link with the patch %+d MiB from the target: %v", int64(tt.patchBase-tt.targetBase)/int64(mib), err)
			}
			lk := linked{arch: b.Arch, img: img, base: tt.patchBase}
			if got, want := lk.word(tt.patchBase+slot.Offset), tt.targetBase+bump; got != want {
				t.Fatalf("slot at +%#x holds %#x, want far_bump at %#x", slot.Offset, got, want)
			}

			// Follow every branch of the patch.
			var toVeneer, inside int
			for _, r := range b.Relocs {
				if r.Base != ulp.BasePatch || !lk.isBranch(r) {
					continue
				}
				dest, err := lk.branch(r.Offset, r.Type)
				if err != nil {
					t.Fatalf("branch at +%#x: %v", r.Offset, err)
				}
				if dest != tt.patchBase+r.Sym { // on ARM bit 0 on both: Thumb code
					t.Fatalf("branch at +%#x lands on %#x, its relocation says patch+%#x", r.Offset, dest, r.Sym)
				}
				via, err := lk.veneer(dest) // on ARM bit 0 says Thumb
				if err != nil {
					inside++ // far_value's call of far_twice: direct
					t.Logf("direct branch at +%#x to +%#x (%v)", r.Offset, dest-tt.patchBase, err)
					continue
				}
				toVeneer++
				if via != tt.patchBase+slot.Offset {
					t.Fatalf("veneer at +%#x loads %#x, want the slot at +%#x", dest-tt.patchBase, via, slot.Offset)
				}
				t.Logf("branch at +%#x -> veneer +%#x -> slot +%#x -> %#x", r.Offset, dest-tt.patchBase, slot.Offset, lk.word(via))
			}
			if toVeneer != 2 || inside != 1 {
				t.Errorf("%d branches through the veneer, %d inside the patch; want 2 (far_value's call and far_twice's jump) and 1",
					toVeneer, inside)
			}
		})
	}
}

func isAbs(arch string, typ uint32) bool {
	switch arch {
	case ulp.AMD64:
		return typ == uint32(elf.R_X86_64_64)
	case ulp.ARM64:
		return typ == uint32(elf.R_AARCH64_ABS64)
	}
	return typ == uint32(elf.R_ARM_ABS32)
}

// linked is a linked patch image mapped at base; the decoders below read
// it as the CPU would.
type linked struct {
	arch string
	img  []byte
	base uint64
}

func (l linked) u32(addr uint64) uint32 {
	off := addr - l.base
	if off+4 > uint64(len(l.img)) || off+4 < off {
		panic(fmt.Sprintf("address %#x outside the image", addr))
	}
	return binary.LittleEndian.Uint32(l.img[off:])
}

func (l linked) u16(addr uint64) uint32 { return l.u32(addr) & 0xffff }

// word reads a pointer.
func (l linked) word(addr uint64) uint64 {
	if l.arch == ulp.ARM {
		return uint64(l.u32(addr))
	}
	return uint64(l.u32(addr)) | uint64(l.u32(addr+4))<<32
}

func sx(v uint64, n uint) uint64 { return uint64(int64(v<<(64-n)) >> (64 - n)) }

func (l linked) isBranch(r ulp.Reloc) bool {
	switch l.arch {
	case ulp.AMD64:
		op := l.img[r.Offset-1]
		return (r.Type == uint32(elf.R_X86_64_PC32) || r.Type == uint32(elf.R_X86_64_PLT32)) && (op == 0xe8 || op == 0xe9)
	case ulp.ARM64:
		return r.Type == uint32(elf.R_AARCH64_CALL26) || r.Type == uint32(elf.R_AARCH64_JUMP26)
	}
	switch elf.R_ARM(r.Type) {
	case elf.R_ARM_CALL, elf.R_ARM_JUMP24, elf.R_ARM_THM_PC22, elf.R_ARM_THM_JUMP24:
		return true
	}
	return false
}

// branch decodes the call or jump at off and returns where it goes (on
// ARM with bit 0 set when it goes to Thumb code).
func (l linked) branch(off uint64, typ uint32) (uint64, error) {
	p := l.base + off
	switch l.arch {
	case ulp.AMD64:
		return p + 4 + sx(uint64(l.u32(p)), 32), nil
	case ulp.ARM64:
		insn := l.u32(p)
		if insn&0x7c000000 != 0x14000000 {
			return 0, fmt.Errorf("%#08x is not B or BL", insn)
		}
		return p + sx(uint64(insn&0x3ffffff)<<2, 28), nil
	}
	switch elf.R_ARM(typ) {
	case elf.R_ARM_CALL, elf.R_ARM_JUMP24:
		insn := l.u32(p)
		imm := sx(uint64(insn&0xffffff)<<2, 26)
		switch {
		case insn>>28 == 0xf: // BLX: to Thumb
			return (p + 8 + imm | uint64(insn>>24&1)<<1) | 1, nil
		case insn&0x0e000000 == 0x0a000000:
			return p + 8 + imm, nil
		}
		return 0, fmt.Errorf("%#08x is not B, BL or BLX", insn)
	}
	hw1, hw2 := l.u16(p), l.u16(p+2)
	if hw1&0xf800 != 0xf000 || hw2&0x9000 != 0x9000 && hw2&0xd000 != 0xc000 {
		return 0, fmt.Errorf("%04x %04x is not BL, BLX or B.W", hw1, hw2)
	}
	s := uint64(hw1 >> 10 & 1)
	i1, i2 := ^(uint64(hw2>>13)^s)&1, ^(uint64(hw2>>11)^s)&1
	imm := sx(s<<24|i1<<23|i2<<22|uint64(hw1&0x3ff)<<12|uint64(hw2&0x7ff)<<1, 25)
	if hw2&0x1000 == 0 { // BLX: to ARM code, from the word-aligned PC
		return (p+4)&^3 + imm, nil
	}
	return p + 4 + imm | 1, nil
}

// veneer decodes the veneer at addr and returns the address of the slot
// it jumps through, or an error when addr does not hold one.
func (l linked) veneer(addr uint64) (uint64, error) {
	switch l.arch {
	case ulp.AMD64: // jmp *disp32(%rip)
		if addr+6 > l.base+uint64(len(l.img)) || l.img[addr-l.base] != 0xff || l.img[addr-l.base+1] != 0x25 {
			return 0, fmt.Errorf("not jmp *disp(%%rip)")
		}
		return addr + 6 + sx(uint64(l.u32(addr+2)), 32), nil
	case ulp.ARM64: // adrp x16, page; ldr x17, [x16, #lo]; add x16, x16, #lo; br x17
		adrp, ldr, add, br := l.u32(addr), l.u32(addr+4), l.u32(addr+8), l.u32(addr+12)
		if adrp&0x9f00001f != 0x90000010 || ldr&0xffc003ff != 0xf9400211 || add&0xffc003ff != 0x91000210 || br != 0xd61f0220 {
			return 0, fmt.Errorf("%08x %08x %08x %08x is not adrp x16; ldr x17, [x16]; add x16, x16; br x17", adrp, ldr, add, br)
		}
		// x16 must end up holding the slot's address (lazy binding).
		if lo := uint64(add >> 10 & 0xfff); lo != uint64(ldr>>10&0xfff)*8 {
			return 0, fmt.Errorf("add x16 adds %#x, the load reads at %#x", lo, uint64(ldr>>10&0xfff)*8)
		}
		page := addr&^0xfff + sx(uint64(adrp>>5&0x7ffff<<2|adrp>>29&3), 21)<<12
		return page + uint64(ldr>>10&0xfff)*8, nil
	}
	if addr&1 == 0 { // ARM: ldr ip, [pc, #imm]; add ip, pc, ip; ldr pc, [ip]
		ld, add, jmp := l.u32(addr), l.u32(addr+4), l.u32(addr+8)
		if ld&0xfffff000 != 0xe59fc000 || add != 0xe08fc00c || jmp != 0xe59cf000 {
			return 0, fmt.Errorf("%08x %08x %08x is not ldr ip, [pc]; add ip, pc, ip; ldr pc, [ip]", ld, add, jmp)
		}
		return uint64(l.u32(addr+8+uint64(ld&0xfff))) + addr + 4 + 8, nil
	}
	// Thumb: ldr.w ip, [pc, #imm]; add ip, pc; ldr.w pc, [ip]
	addr &^= 1
	h := []uint32{l.u16(addr), l.u16(addr + 2), l.u16(addr + 4), l.u16(addr + 6), l.u16(addr + 8)}
	if h[0] != 0xf8df || h[1]&0xf000 != 0xc000 || h[2] != 0x44fc || h[3] != 0xf8dc || h[4] != 0xf000 {
		return 0, fmt.Errorf("%04x is not ldr.w ip, [pc]; add ip, pc; ldr.w pc, [ip]", h)
	}
	lit := (addr+4)&^3 + uint64(h[1]&0xfff)
	return uint64(l.u32(lit)) + addr + 4 + 4, nil
}
