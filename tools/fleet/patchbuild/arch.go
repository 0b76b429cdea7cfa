package patchbuild

import (
	"debug/elf"
	"fmt"

	"github.com/graft-dev/graft/manifest/ulp"
)

// skipReloc reports relocation types that carry no reference: NONE, and
// ARM's R_ARM_V4BX marker.
func skipReloc(arch string, typ uint32) bool {
	return typ == 0 || (arch == ulp.ARM && typ == uint32(elf.R_ARM_V4BX))
}

// classify says how a relocation of the fixed build becomes one the
// agent can apply: GOT-relative loads are retargeted to the patch's own
// GOT slots (keeping the instruction a load), ARM's GOT origin
// references to the patch's GOT.
func classify(arch string, typ uint32, gotBase bool) (relocKind, uint32) {
	switch arch {
	case ulp.AMD64:
		switch elf.R_X86_64(typ) {
		case elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX:
			return kGOT, uint32(elf.R_X86_64_PC32)
		}
	case ulp.ARM64:
		switch elf.R_AARCH64(typ) {
		case elf.R_AARCH64_ADR_GOT_PAGE:
			return kGOT, uint32(elf.R_AARCH64_ADR_PREL_PG_HI21)
		case elf.R_AARCH64_LD64_GOT_LO12_NC:
			return kGOT, uint32(elf.R_AARCH64_LDST64_ABS_LO12_NC)
		}
	case ulp.ARM:
		switch elf.R_ARM(typ) {
		case elf.R_ARM_GOT_PREL:
			return kGOT, uint32(elf.R_ARM_REL32)
		case elf.R_ARM_GOT32: // R_ARM_GOT_BREL
			return kGOTBrel, 0
		case elf.R_ARM_GOTPC: // R_ARM_BASE_PREL
			return kGOTBase, uint32(elf.R_ARM_REL32)
		case elf.R_ARM_REL32:
			if gotBase {
				return kGOTBase, uint32(elf.R_ARM_REL32)
			}
		}
	}
	return kPlain, typ
}

// isBranch reports whether relocation typ at off of a function's code
// is the destination of a call or jump (direct or conditional). On amd64
// a PC32 is one only on a call, jmp or jcc (rel32) instruction: elsewhere
// it is a data reference.
func isBranch(arch string, typ uint32, code []byte, off uint64) bool {
	switch arch {
	case ulp.AMD64:
		switch elf.R_X86_64(typ) {
		case elf.R_X86_64_PLT32:
			return true
		case elf.R_X86_64_PC32:
			if off < 1 || off > uint64(len(code)) {
				return false
			}
			op := code[off-1]
			return op == 0xe8 || op == 0xe9 || // call, jmp rel32
				(off >= 2 && code[off-2] == 0x0f && op&0xf0 == 0x80) // jcc rel32
		}
	case ulp.ARM64:
		return typ == uint32(elf.R_AARCH64_CALL26) || typ == uint32(elf.R_AARCH64_JUMP26)
	case ulp.ARM:
		switch elf.R_ARM(typ) {
		case elf.R_ARM_CALL, elf.R_ARM_JUMP24, elf.R_ARM_THM_PC22, elf.R_ARM_THM_JUMP24, elf.R_ARM_THM_JUMP19:
			return true
		}
	}
	return false
}

// armState reports an ARM-state branch relocation (BL, BLX, B), whose
// veneer must be ARM code: an ARM B cannot switch to Thumb state.
func armState(arch string, typ uint32) bool {
	return arch == ulp.ARM && (typ == uint32(elf.R_ARM_CALL) || typ == uint32(elf.R_ARM_JUMP24))
}

// branchExtra returns how far past the start of its destination symbol
// a branch relocation points: its addend less the bias the instruction's
// PC needs (amd64 -4; ARM, whose addend is in the instruction, -4 in
// Thumb and -8 in ARM state). It is 0 for a plain call of a function.
// On ARM anything but 0 is refused: the veneer would need the
// instruction rewritten.
func branchExtra(arch string, r rel, code []byte) (int64, error) {
	switch arch {
	case ulp.AMD64:
		return r.addend + 4, nil
	case ulp.ARM64:
		return r.addend, nil
	}
	if r.off+4 > uint64(len(code)) {
		return 0, fmt.Errorf("%w: relocation at %#x runs past the section", ErrInput, r.off)
	}
	loc := code[r.off:]
	hw1, hw2 := uint32(loc[0])|uint32(loc[1])<<8, uint32(loc[2])|uint32(loc[3])<<8
	var a, pcBias int64
	switch elf.R_ARM(r.typ) {
	case elf.R_ARM_CALL, elf.R_ARM_JUMP24:
		insn := hw1 | hw2<<16
		a = sext(uint64(insn&0xffffff)<<2, 26)
		if insn>>28 == 0xf { // BLX (immediate): H is bit 1
			a |= int64(insn>>24&1) << 1
		}
		pcBias = -8
	case elf.R_ARM_THM_JUMP19: // B<cond>.W, T3: S:J2:J1:imm6:imm11:0
		a = sext(uint64((hw1>>10&1)<<20|(hw2>>11&1)<<19|(hw2>>13&1)<<18|(hw1&0x3f)<<12|(hw2&0x7ff)<<1), 21)
		pcBias = -4
	default: // BL, BLX, B.W, T4: S:I1:I2:imm10:imm11:0, I = NOT(J XOR S)
		s := hw1 >> 10 & 1
		i1, i2 := ^(hw2>>13^s)&1, ^(hw2>>11^s)&1
		a = sext(uint64(s<<24|i1<<23|i2<<22|(hw1&0x3ff)<<12|(hw2&0x7ff)<<1), 25)
		pcBias = -4
	}
	if a != pcBias {
		return 0, fmt.Errorf("%w: %s with in-place addend %d (want %d): a branch into the middle of a function",
			ErrUnsupported, typeName(arch, r.typ), a, pcBias)
	}
	return 0, nil
}

// sext sign-extends the low n bits of v.
func sext(v uint64, n uint) int64 {
	return int64(v<<(64-n)) >> (64 - n)
}

func absType(arch string) uint32 {
	switch arch {
	case ulp.AMD64:
		return uint32(elf.R_X86_64_64)
	case ulp.ARM64:
		return uint32(elf.R_AARCH64_ABS64)
	}
	return uint32(elf.R_ARM_ABS32)
}

func typeName(arch string, t uint32) string {
	switch arch {
	case ulp.AMD64:
		return elf.R_X86_64(t).String()
	case ulp.ARM64:
		return elf.R_AARCH64(t).String()
	case ulp.ARM:
		return elf.R_ARM(t).String()
	}
	return fmt.Sprint(t)
}

// Veneers jump to a function of the target through an absolute address
// in a GOT slot: the target's own GOT entry of a function it imports, or a
// slot of the patch filled by an absolute relocation. Each is
// veneerSize(arch) bytes; the slot's address comes from a PC-relative
// relocation inside the veneer.
var (
	// jmp *slot(%rip); padding
	veneerAMD64 = []byte{0xff, 0x25, 0, 0, 0, 0, 0xcc, 0xcc}
	// adrp x16, slot; ldr x17, [x16, :lo12:slot]; add x16, x16,
	// :lo12:slot; br x17 — the PLT's own form: x16 holds the slot's
	// address, which glibc's lazy-binding resolver needs when the slot
	// is the target's GOT entry of a function not bound yet.
	veneerARM64 = []byte{0x10, 0x00, 0x00, 0x90, 0x11, 0x02, 0x40, 0xf9, 0x10, 0x02, 0x00, 0x91, 0x20, 0x02, 0x1f, 0xd6}
	// Thumb-2: ldr.w ip, [pc, #8]; add ip, pc; ldr.w pc, [ip]; nop;
	// .word slot - (here + 8), as REL32 with in-place addend 4.
	veneerThumb = []byte{0xdf, 0xf8, 0x08, 0xc0, 0xfc, 0x44, 0xdc, 0xf8, 0x00, 0xf0, 0x00, 0xbf, 0x04, 0, 0, 0}
	// ARM: ldr ip, [pc, #4]; add ip, pc, ip; ldr pc, [ip];
	// .word slot - (here + 12), as REL32 with in-place addend 0. LDR to
	// PC interworks: the slot's Thumb bit selects the state.
	veneerA32 = []byte{0x04, 0xc0, 0x9f, 0xe5, 0x0c, 0xc0, 0x8f, 0xe0, 0x00, 0xf0, 0x9c, 0xe5, 0, 0, 0, 0}
)

func veneerSize(arch string) uint64 {
	if arch == ulp.AMD64 {
		return uint64(len(veneerAMD64))
	}
	return 16
}

func veneerCode(arch string, arm bool) []byte {
	switch {
	case arch == ulp.AMD64:
		return veneerAMD64
	case arch == ulp.ARM64:
		return veneerARM64
	case arm:
		return veneerA32
	}
	return veneerThumb
}

// veneerRelocs point the veneer at the slot, which is relative to base.
func veneerRelocs(arch string, at uint64, base ulp.Base, slot uint64) []ulp.Reloc {
	switch arch {
	case ulp.AMD64:
		return []ulp.Reloc{{Offset: at + 2, Type: uint32(elf.R_X86_64_PC32), Base: base, Sym: slot, Addend: -4}}
	case ulp.ARM64:
		return []ulp.Reloc{
			{Offset: at, Type: uint32(elf.R_AARCH64_ADR_PREL_PG_HI21), Base: base, Sym: slot},
			{Offset: at + 4, Type: uint32(elf.R_AARCH64_LDST64_ABS_LO12_NC), Base: base, Sym: slot},
			{Offset: at + 8, Type: uint32(elf.R_AARCH64_ADD_ABS_LO12_NC), Base: base, Sym: slot},
		}
	}
	return []ulp.Reloc{{Offset: at + 12, Type: uint32(elf.R_ARM_REL32), Base: base, Sym: slot}}
}
