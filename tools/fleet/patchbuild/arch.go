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

// isCall reports branch relocations, which reach a function the target
// imports through a veneer.
func isCall(arch string, typ uint32) bool {
	switch arch {
	case ulp.AMD64:
		return typ == uint32(elf.R_X86_64_PLT32)
	case ulp.ARM64:
		return typ == uint32(elf.R_AARCH64_CALL26) || typ == uint32(elf.R_AARCH64_JUMP26)
	case ulp.ARM:
		switch elf.R_ARM(typ) {
		case elf.R_ARM_CALL, elf.R_ARM_JUMP24, elf.R_ARM_THM_PC22, elf.R_ARM_THM_JUMP24:
			return true
		}
	}
	return false
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

// Veneers jump through the target's GOT entry of a function it imports.
var (
	// jmp *0(%rip); padding
	veneerAMD64 = []byte{0xff, 0x25, 0, 0, 0, 0, 0xcc, 0xcc}
	// adrp x16, slot; ldr x16, [x16, :lo12:slot]; br x16; udf
	veneerARM64 = []byte{0x10, 0x00, 0x00, 0x90, 0x10, 0x02, 0x40, 0xf9, 0x00, 0x02, 0x1f, 0xd6, 0, 0, 0, 0}
	// Thumb-2: ldr.w ip, [pc, #8]; add ip, pc; ldr.w pc, [ip]; nop;
	// .word slot - (here + 8), as REL32 with in-place addend 4.
	veneerARM = []byte{0xdf, 0xf8, 0x08, 0xc0, 0xfc, 0x44, 0xdc, 0xf8, 0x00, 0xf0, 0x00, 0xbf, 0x04, 0, 0, 0}
)

func veneerCode(arch string) []byte {
	switch arch {
	case ulp.AMD64:
		return veneerAMD64
	case ulp.ARM64:
		return veneerARM64
	}
	return veneerARM
}

func veneerRelocs(arch string, at, slot uint64) []ulp.Reloc {
	switch arch {
	case ulp.AMD64:
		return []ulp.Reloc{{Offset: at + 2, Type: uint32(elf.R_X86_64_PC32), Base: ulp.BaseTarget, Sym: slot, Addend: -4}}
	case ulp.ARM64:
		return []ulp.Reloc{
			{Offset: at, Type: uint32(elf.R_AARCH64_ADR_PREL_PG_HI21), Base: ulp.BaseTarget, Sym: slot},
			{Offset: at + 4, Type: uint32(elf.R_AARCH64_LDST64_ABS_LO12_NC), Base: ulp.BaseTarget, Sym: slot},
		}
	}
	return []ulp.Reloc{{Offset: at + 12, Type: uint32(elf.R_ARM_REL32), Base: ulp.BaseTarget, Sym: slot}}
}
