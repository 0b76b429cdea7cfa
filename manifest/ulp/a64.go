package ulp

import "debug/elf"

// applyA64 computes AArch64 ELF ABI (aaelf64) relocations (RELA: the
// addend is st.a) with the overflow and alignment checks the ABI and
// common linkers apply. A branch out of range is an error: a bundle has
// no linker to insert a veneer for it.
func applyA64(t uint32, st site) (int64, error) {
	sa := st.s + uint64(st.a)
	prel := int64(sa - st.p)
	insn := le32(st.loc)
	switch elf.R_AARCH64(t) {
	case elf.R_AARCH64_ABS64:
		put64(st.loc, sa)
		return int64(sa), nil
	case elf.R_AARCH64_PREL64:
		put64(st.loc, uint64(prel))
		return prel, nil
	case elf.R_AARCH64_ABS32:
		// The ABI allows a 32-bit field to hold either a signed or an
		// unsigned value: -2^31 <= X < 2^32.
		v := int64(sa)
		if v < -(1<<31) || v >= 1<<32 {
			return v, errRange("S+A is outside [-2^31, 2^32)")
		}
		put32(st.loc, uint32(v))
		return v, nil
	case elf.R_AARCH64_PREL32:
		if prel < -(1<<31) || prel >= 1<<32 {
			return prel, errRange("S+A-P is outside [-2^31, 2^32)")
		}
		put32(st.loc, uint32(prel))
		return prel, nil
	case elf.R_AARCH64_CALL26, elf.R_AARCH64_JUMP26:
		if err := a64Branch(prel, 28); err != nil {
			return prel, err
		}
		put32(st.loc, insn&^0x03ffffff|uint32(prel>>2)&0x03ffffff)
		return prel, nil
	case elf.R_AARCH64_CONDBR19, elf.R_AARCH64_LD_PREL_LO19:
		if err := a64Branch(prel, 21); err != nil {
			return prel, err
		}
		put32(st.loc, insn&^(0x7ffff<<5)|(uint32(prel>>2)&0x7ffff)<<5)
		return prel, nil
	case elf.R_AARCH64_TSTBR14:
		if err := a64Branch(prel, 16); err != nil {
			return prel, err
		}
		put32(st.loc, insn&^(0x3fff<<5)|(uint32(prel>>2)&0x3fff)<<5)
		return prel, nil
	case elf.R_AARCH64_ADR_PREL_LO21:
		if !fitsSigned(prel, 21) {
			return prel, errRange("S+A-P does not fit ADR's signed 21 bits")
		}
		put32(st.loc, a64ADR(insn, prel))
		return prel, nil
	case elf.R_AARCH64_ADR_PREL_PG_HI21, elf.R_AARCH64_ADR_PREL_PG_HI21_NC:
		v := int64(sa&^0xfff - st.p&^0xfff)
		if elf.R_AARCH64(t) == elf.R_AARCH64_ADR_PREL_PG_HI21 && !fitsSigned(v, 33) {
			return v, errRange("Page(S+A)-Page(P) is outside ±4 GiB")
		}
		put32(st.loc, a64ADR(insn, v>>12))
		return v, nil
	case elf.R_AARCH64_ADD_ABS_LO12_NC:
		put32(st.loc, a64Imm12(insn, uint32(sa)&0xfff))
		return int64(sa), nil
	case elf.R_AARCH64_LDST8_ABS_LO12_NC:
		return a64LdSt(st, insn, sa, 0)
	case elf.R_AARCH64_LDST16_ABS_LO12_NC:
		return a64LdSt(st, insn, sa, 1)
	case elf.R_AARCH64_LDST32_ABS_LO12_NC:
		return a64LdSt(st, insn, sa, 2)
	case elf.R_AARCH64_LDST64_ABS_LO12_NC:
		return a64LdSt(st, insn, sa, 3)
	case elf.R_AARCH64_LDST128_ABS_LO12_NC:
		return a64LdSt(st, insn, sa, 4)
	}
	return 0, ErrUnsupportedReloc
}

// a64Branch checks a PC-relative instruction offset: a multiple of 4
// that fits a signed field of bits bits (before the shift by 2).
func a64Branch(v int64, bits uint) error {
	if v&3 != 0 {
		return errAlign(4)
	}
	if !fitsSigned(v, bits) {
		return errRange("S+A-P does not fit a signed %d-bit branch offset", bits)
	}
	return nil
}

// a64ADR sets the 21-bit immediate of ADR/ADRP (immlo in bits 30:29,
// immhi in bits 23:5).
func a64ADR(insn uint32, imm int64) uint32 {
	u := uint32(imm)
	return insn&^(3<<29|0x7ffff<<5) | (u&3)<<29 | (u>>2&0x7ffff)<<5
}

// a64Imm12 sets the 12-bit immediate in bits 21:10.
func a64Imm12(insn, imm uint32) uint32 {
	return insn&^(0xfff<<10) | (imm&0xfff)<<10
}

// a64LdSt applies LDSTn_ABS_LO12_NC: the low 12 bits of S+A, scaled by the
// access size 1<<shift, which they must be a multiple of.
func a64LdSt(st site, insn uint32, sa uint64, shift uint) (int64, error) {
	lo := uint32(sa) & 0xfff
	if lo&(1<<shift-1) != 0 {
		return int64(sa), errAlign(1 << shift)
	}
	put32(st.loc, a64Imm12(insn, lo>>shift))
	return int64(sa), nil
}
