package ulp

import "debug/elf"

// applyX86 computes x86-64 psABI relocations (RELA: the addend is st.a).
// PLT32 is L + A - P with L = S: a bundle has no PLT, the patch calls its
// target directly.
func applyX86(t uint32, st site) (int64, error) {
	sa := st.s + uint64(st.a)
	switch elf.R_X86_64(t) {
	case elf.R_X86_64_64:
		put64(st.loc, sa)
		return int64(sa), nil
	case elf.R_X86_64_PC64:
		v := sa - st.p
		put64(st.loc, v)
		return int64(v), nil
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32:
		v := int64(sa - st.p)
		if !fitsSigned(v, 32) {
			return v, errRange("S+A-P does not fit a signed 32-bit field")
		}
		put32(st.loc, uint32(v))
		return v, nil
	case elf.R_X86_64_32:
		if sa>>32 != 0 {
			return int64(sa), errRange("S+A does not zero-extend from 32 bits")
		}
		put32(st.loc, uint32(sa))
		return int64(sa), nil
	case elf.R_X86_64_32S:
		v := int64(sa)
		if !fitsSigned(v, 32) {
			return v, errRange("S+A does not sign-extend from 32 bits")
		}
		put32(st.loc, uint32(v))
		return v, nil
	}
	return 0, ErrUnsupportedReloc
}
