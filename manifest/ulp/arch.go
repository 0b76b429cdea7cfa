package ulp

import (
	"debug/elf"
	"fmt"
)

// archInfo is what this package knows about one architecture.
type archInfo struct {
	machine elf.Machine
	// near is the size of the short trampoline (a PC-relative branch),
	// nearRange how far it reaches either way.
	near      int
	nearRange int64
	// far is the size of the absolute trampoline (worst case).
	far    int
	relocs map[uint32]int // supported relocation types → bytes they patch
}

var arches = map[string]*archInfo{
	AMD64: {machine: elf.EM_X86_64, near: 5, nearRange: 1 << 31, far: 14, relocs: map[uint32]int{
		uint32(elf.R_X86_64_64):    8,
		uint32(elf.R_X86_64_PC64):  8,
		uint32(elf.R_X86_64_PC32):  4,
		uint32(elf.R_X86_64_PLT32): 4,
		uint32(elf.R_X86_64_32):    4,
		uint32(elf.R_X86_64_32S):   4,
	}},
	ARM64: {machine: elf.EM_AARCH64, near: 4, nearRange: 1 << 27, far: 16, relocs: map[uint32]int{
		uint32(elf.R_AARCH64_ABS64):               8,
		uint32(elf.R_AARCH64_ABS32):               4,
		uint32(elf.R_AARCH64_PREL64):              8,
		uint32(elf.R_AARCH64_PREL32):              4,
		uint32(elf.R_AARCH64_CALL26):              4,
		uint32(elf.R_AARCH64_JUMP26):              4,
		uint32(elf.R_AARCH64_CONDBR19):            4,
		uint32(elf.R_AARCH64_TSTBR14):             4,
		uint32(elf.R_AARCH64_LD_PREL_LO19):        4,
		uint32(elf.R_AARCH64_ADR_PREL_LO21):       4,
		uint32(elf.R_AARCH64_ADR_PREL_PG_HI21):    4,
		uint32(elf.R_AARCH64_ADR_PREL_PG_HI21_NC): 4,
		uint32(elf.R_AARCH64_ADD_ABS_LO12_NC):     4,
		uint32(elf.R_AARCH64_LDST8_ABS_LO12_NC):   4,
		uint32(elf.R_AARCH64_LDST16_ABS_LO12_NC):  4,
		uint32(elf.R_AARCH64_LDST32_ABS_LO12_NC):  4,
		uint32(elf.R_AARCH64_LDST64_ABS_LO12_NC):  4,
		uint32(elf.R_AARCH64_LDST128_ABS_LO12_NC): 4,
	}},
	// ARM: ARM-state B reaches ±32 MiB; Thumb-2 B.W ±16 MiB (nearRange
	// is the smaller). The far Thumb trampoline needs 2 bytes of padding
	// when the entry is not word-aligned.
	ARM: {machine: elf.EM_ARM, near: 4, nearRange: 1 << 24, far: 10, relocs: map[uint32]int{
		uint32(elf.R_ARM_ABS32):            4,
		uint32(elf.R_ARM_REL32):            4,
		uint32(elf.R_ARM_CALL):             4,
		uint32(elf.R_ARM_JUMP24):           4,
		uint32(elf.R_ARM_THM_PC22):         4, // R_ARM_THM_CALL
		uint32(elf.R_ARM_THM_JUMP24):       4,
		uint32(elf.R_ARM_THM_JUMP19):       4,
		uint32(elf.R_ARM_MOVW_ABS_NC):      4,
		uint32(elf.R_ARM_MOVT_ABS):         4,
		uint32(elf.R_ARM_MOVW_PREL_NC):     4,
		uint32(elf.R_ARM_MOVT_PREL):        4,
		uint32(elf.R_ARM_THM_MOVW_ABS_NC):  4,
		uint32(elf.R_ARM_THM_MOVT_ABS):     4,
		uint32(elf.R_ARM_THM_MOVW_PREL_NC): 4,
		uint32(elf.R_ARM_THM_MOVT_PREL):    4,
	}},
}

func archOf(arch string) (*archInfo, error) {
	a, ok := arches[arch]
	if !ok {
		return nil, fmt.Errorf("%w: %q (want %s, %s or %s)", ErrUnsupportedArch, arch, AMD64, ARM64, ARM)
	}
	return a, nil
}

// ArchOf returns the bundle arch name for an ELF machine.
func ArchOf(m elf.Machine) (string, error) {
	for name, a := range arches {
		if a.machine == m {
			return name, nil
		}
	}
	return "", fmt.Errorf("%w: ELF machine %v", ErrUnsupportedArch, m)
}

// Machine returns the ELF machine of a bundle arch.
func Machine(arch string) (elf.Machine, error) {
	a, err := archOf(arch)
	if err != nil {
		return 0, err
	}
	return a.machine, nil
}

// NearSize is the size in bytes of the short (PC-relative branch)
// trampoline on arch; 0 for an unknown arch. A replaced function must have
// at least Keep+NearSize bytes.
func NearSize(arch string, thumb bool) int {
	if a, ok := arches[arch]; ok {
		return a.near
	}
	return 0
}

// FarSize is the size in bytes of the absolute trampoline written at
// address at (Thumb needs padding at a halfword-aligned entry); 0 for an
// unknown arch.
func FarSize(arch string, thumb bool, at uint64) int {
	switch {
	case arch == ARM && thumb && at%4 != 0:
		return 10
	case arch == ARM:
		return 8
	}
	if a, ok := arches[arch]; ok {
		return a.far
	}
	return 0
}

// NearRange is how far, either way, a short trampoline on arch reaches
// from its own address; the agent maps a patch within it when it can.
func NearRange(arch string) int64 {
	if a, ok := arches[arch]; ok {
		return a.nearRange
	}
	return 0
}

// RelocWidth returns how many bytes a relocation of type t patches, or
// ErrUnsupportedReloc (ErrUnsupportedArch for an unknown arch).
func RelocWidth(arch string, t uint32) (int, error) {
	a, err := archOf(arch)
	if err != nil {
		return 0, err
	}
	w, ok := a.relocs[t]
	if !ok {
		return 0, fmt.Errorf("%w: type %s on %s", ErrUnsupportedReloc, relocName(a.machine, t), arch)
	}
	return w, nil
}

// RelocName names relocation type t of a bundle arch ("R_ARM_CALL"), or
// gives the number for an unknown arch.
func RelocName(arch string, t uint32) string {
	if a, ok := arches[arch]; ok {
		return relocName(a.machine, t)
	}
	return fmt.Sprint(t)
}

func relocName(m elf.Machine, t uint32) string {
	switch m {
	case elf.EM_X86_64:
		return elf.R_X86_64(t).String()
	case elf.EM_AARCH64:
		return elf.R_AARCH64(t).String()
	case elf.EM_ARM:
		return elf.R_ARM(t).String()
	}
	return fmt.Sprint(t)
}
