package ulp

import (
	"debug/elf"
	"fmt"
)

// applyA32 computes ARM ELF ABI (aaelf32) relocations for ARM and Thumb-2
// code. ARM relocations are REL: the addend is decoded from the bytes at
// the place, per type. T is bit 0 of the symbol's value (a Thumb
// function), S the symbol's address without it.
//
// Calls interwork: R_ARM_CALL to Thumb code becomes BLX, R_ARM_THM_CALL to
// ARM code becomes BLX with the target offset computed from the place
// aligned down to 4. Branches that cannot change state (B, conditional BL,
// Thumb B.W and B<cond>.W) to code of the other state fail with
// ErrInterwork.
func applyA32(t uint32, st site) (int64, error) {
	if st.a != 0 {
		return st.a, fmt.Errorf("ARM relocations carry their addend in place: %w", ErrInvalid)
	}
	if st.s>>32 != 0 || st.p>>32 != 0 {
		return int64(max(st.s, st.p)), errRange("address beyond 32 bits")
	}
	tb := uint32(st.s) & 1
	s := uint32(st.s) &^ 1
	p := uint32(st.p)
	loc := st.loc
	insn := le32(loc)
	hw1, hw2 := le16(loc), le16(loc[2:])
	switch elf.R_ARM(t) {
	case elf.R_ARM_ABS32:
		v := (s + insn) | tb
		put32(loc, v)
		return int64(int32(v)), nil
	case elf.R_ARM_REL32:
		v := ((s + insn) | tb) - p
		put32(loc, v)
		return int64(int32(v)), nil
	case elf.R_ARM_CALL, elf.R_ARM_JUMP24:
		return a32Branch(elf.R_ARM(t), loc, s, tb, p)
	case elf.R_ARM_THM_PC22: // R_ARM_THM_CALL
		a := uint32(thumbBLImm(hw1, hw2))
		var x int64
		if tb == 1 {
			x = int64(int32(s + a - p))
			hw2 |= 0x1000 // BL
		} else {
			// BLX: the target is Align(PC, 4) + imm; imm's bit 1 (H) must be 0.
			x = int64(int32(s + a - p&^3))
			if x&3 != 0 {
				return x, errAlign(4)
			}
			hw2 &^= 0x1000
		}
		if !fitsSigned(x, 25) {
			return x, errRange("((S+A)|T)-P does not fit Thumb BL's signed 25 bits")
		}
		hw1, hw2 = thumbBLSet(hw1, hw2, x)
		put16(loc, hw1)
		put16(loc[2:], hw2)
		return x, nil
	case elf.R_ARM_THM_JUMP24:
		x := int64(int32(s + uint32(thumbBLImm(hw1, hw2)) - p))
		if tb == 0 {
			return x, fmt.Errorf("Thumb B.W to ARM code: %w", ErrInterwork)
		}
		if !fitsSigned(x, 25) {
			return x, errRange("((S+A)|T)-P does not fit Thumb B.W's signed 25 bits")
		}
		hw1, hw2 = thumbBLSet(hw1, hw2, x)
		put16(loc, hw1)
		put16(loc[2:], hw2)
		return x, nil
	case elf.R_ARM_THM_JUMP19:
		x := int64(int32(s + uint32(thumbBcondImm(hw1, hw2)) - p))
		if tb == 0 {
			return x, fmt.Errorf("Thumb B<cond>.W to ARM code: %w", ErrInterwork)
		}
		if !fitsSigned(x, 21) {
			return x, errRange("((S+A)|T)-P does not fit Thumb B<cond>.W's signed 21 bits")
		}
		u := uint32(x)
		hw1 = hw1&0xfbc0 | (u>>20&1)<<10 | u>>12&0x3f
		hw2 = hw2&0xd000 | (u>>18&1)<<13 | (u>>19&1)<<11 | u>>1&0x7ff
		put16(loc, hw1)
		put16(loc[2:], hw2)
		return x, nil
	case elf.R_ARM_MOVW_ABS_NC, elf.R_ARM_MOVT_ABS, elf.R_ARM_MOVW_PREL_NC, elf.R_ARM_MOVT_PREL:
		a := uint32(sext(uint64(insn>>16&0xf<<12|insn&0xfff), 16))
		v := movValue(elf.R_ARM(t), s, a, tb, p)
		put32(loc, insn&^0x000f0fff|(v>>12&0xf)<<16|v&0xfff)
		return int64(int32(v)), nil
	case elf.R_ARM_THM_MOVW_ABS_NC, elf.R_ARM_THM_MOVT_ABS, elf.R_ARM_THM_MOVW_PREL_NC, elf.R_ARM_THM_MOVT_PREL:
		imm := (hw1&0xf)<<12 | (hw1>>10&1)<<11 | (hw2>>12&7)<<8 | hw2&0xff
		a := uint32(sext(uint64(imm), 16))
		v := movValue(elf.R_ARM(t), s, a, tb, p)
		hw1 = hw1&0xfbf0 | v>>12&0xf | (v>>11&1)<<10
		hw2 = hw2&0x8f00 | (v>>8&7)<<12 | v&0xff
		put16(loc, hw1)
		put16(loc[2:], hw2)
		return int64(int32(v)), nil
	}
	return 0, ErrUnsupportedReloc
}

// movValue is the 16-bit immediate of a MOVW/MOVT relocation. The addend
// of both is the instruction's immediate read as a signed 16-bit value
// (aaelf32 §5.6.1.1). MOVT has no overflow check on a 32-bit target.
func movValue(t elf.R_ARM, s, a, tb, p uint32) uint32 {
	switch t {
	case elf.R_ARM_MOVW_ABS_NC, elf.R_ARM_THM_MOVW_ABS_NC:
		return ((s + a) | tb) & 0xffff
	case elf.R_ARM_MOVT_ABS, elf.R_ARM_THM_MOVT_ABS:
		return (s + a) >> 16
	case elf.R_ARM_MOVW_PREL_NC, elf.R_ARM_THM_MOVW_PREL_NC:
		return (((s + a) | tb) - p) & 0xffff
	default: // MOVT_PREL
		return (s + a - p) >> 16
	}
}

// a32Branch applies R_ARM_CALL and R_ARM_JUMP24 to an ARM B, BL or BLX.
func a32Branch(t elf.R_ARM, loc []byte, s, tb, p uint32) (int64, error) {
	insn := le32(loc)
	cond := insn >> 28
	imm := sext(uint64(insn&0xffffff)<<2, 26)
	if cond == 0xf { // BLX (immediate): H is bit 1 of the offset
		imm |= int64(insn>>24&1) << 1
	}
	x := int64(int32(s + uint32(imm) - p))
	if tb == 1 {
		if t == elf.R_ARM_JUMP24 || (cond != 0xe && cond != 0xf) {
			return x | 1, fmt.Errorf("ARM branch (cond %#x) to Thumb code: %w", cond, ErrInterwork)
		}
		if !fitsSigned(x, 26) {
			return x, errRange("((S+A)|T)-P does not fit BLX's signed 26 bits")
		}
		put32(loc, 0xfa000000|uint32(x>>1&1)<<24|uint32(x>>2)&0xffffff)
		return x, nil
	}
	if x&3 != 0 {
		return x, errAlign(4)
	}
	if !fitsSigned(x, 26) {
		return x, errRange("(S+A)-P does not fit B/BL's signed 26 bits")
	}
	if cond == 0xf { // BLX to ARM code: an unconditional BL
		insn = 0xeb000000
	}
	put32(loc, insn&0xff000000|uint32(x>>2)&0xffffff)
	return x, nil
}

// thumbBLImm decodes the offset of a Thumb-2 BL, BLX or B.W (encoding T4):
// S:I1:I2:imm10:imm11:0 with I1 = NOT(J1 XOR S), I2 = NOT(J2 XOR S).
func thumbBLImm(hw1, hw2 uint32) int64 {
	sb := hw1 >> 10 & 1
	i1 := ^(hw2>>13 ^ sb) & 1
	i2 := ^(hw2>>11 ^ sb) & 1
	v := sb<<24 | i1<<23 | i2<<22 | (hw1&0x3ff)<<12 | (hw2&0x7ff)<<1
	return sext(uint64(v), 25)
}

// thumbBLSet encodes offset x into a BL, BLX or B.W, keeping the opcode
// bits (15, 14, 12 of the second halfword).
func thumbBLSet(hw1, hw2 uint32, x int64) (uint32, uint32) {
	u := uint32(x)
	sb := u >> 24 & 1
	j1 := (^(u >> 23) ^ sb) & 1
	j2 := (^(u >> 22) ^ sb) & 1
	hw1 = hw1&0xf800 | sb<<10 | u>>12&0x3ff
	hw2 = hw2&0xd000 | j1<<13 | j2<<11 | u>>1&0x7ff
	return hw1, hw2
}

// thumbBcondImm decodes the offset of a Thumb-2 B<cond>.W (encoding T3):
// S:J2:J1:imm6:imm11:0.
func thumbBcondImm(hw1, hw2 uint32) int64 {
	v := (hw1>>10&1)<<20 | (hw2>>11&1)<<19 | (hw2>>13&1)<<18 | (hw1&0x3f)<<12 | (hw2&0x7ff)<<1
	return sext(uint64(v), 21)
}
