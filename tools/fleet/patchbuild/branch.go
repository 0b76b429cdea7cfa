package patchbuild

import (
	"debug/elf"
	"encoding/binary"

	"golang.org/x/arch/arm/armasm"
	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"

	"github.com/graft-dev/graft/manifest/ulp"
)

// flow is what a function's own code says about jumps into its first
// bytes.
type flow struct {
	// targets are the offsets from the entry that its direct branches
	// (and the jump tables found for it) go to.
	targets []uint64
	// opaque: the code could not be decoded, or it has an indirect jump
	// (a jump table) whose targets are not known: any offset may be one.
	opaque string
}

// codeFlow decodes code, a function's bytes as linked at addr (without
// the Thumb bit), and collects the targets of its direct branches.
// Branches that leave the function are kept too: the caller filters.
func codeFlow(arch string, thumb bool, code []byte) flow {
	var fl flow
	add := func(pc uint64, rel int64) {
		if t := int64(pc) + rel; t >= 0 {
			fl.targets = append(fl.targets, uint64(t))
		}
	}
	switch {
	case arch == ulp.AMD64:
		for pc := 0; pc < len(code); {
			in, err := x86asm.Decode(code[pc:], 64)
			if err != nil {
				// Padding after the last instruction is not code.
				fl.opaque = "undecodable x86 code"
				return fl
			}
			for _, a := range in.Args {
				if r, ok := a.(x86asm.Rel); ok {
					add(uint64(pc+in.Len), int64(r))
				}
			}
			if in.Op == x86asm.JMP && !isRel(in.Args[0]) {
				fl.opaque = "an indirect jump (a jump table or a computed goto)"
			}
			pc += in.Len
		}
	case arch == ulp.ARM64:
		for pc := 0; pc+4 <= len(code); pc += 4 {
			in, err := arm64asm.Decode(code[pc : pc+4])
			if err != nil {
				// BRAA, BRAAZ, BRAB, BRABZ, which the decoder lacks; else
				// a literal pool word.
				if binary.LittleEndian.Uint32(code[pc:])&0xfe9ff800 == 0xd61f0800 {
					fl.opaque = "an indirect branch (a jump table or a computed goto)"
				}
				continue
			}
			if in.Op == arm64asm.BR {
				fl.opaque = "an indirect branch (a jump table or a computed goto)"
			}
			for _, a := range in.Args {
				if r, ok := a.(arm64asm.PCRel); ok && in.Op != arm64asm.ADRP {
					add(uint64(pc), int64(r))
				}
			}
		}
	case arch == ulp.ARM && thumb:
		thumbFlow(code, &fl, add)
	case arch == ulp.ARM:
		for pc := 0; pc+4 <= len(code); pc += 4 {
			in, err := armasm.Decode(code[pc:pc+4], armasm.ModeARM)
			if err != nil {
				continue // a literal pool word
			}
			for _, a := range in.Args {
				if r, ok := a.(armasm.PCRel); ok {
					add(uint64(pc+8), int64(r))
				}
			}
			if armWritesPC(in) {
				fl.opaque = "an indirect jump (a jump table or a computed goto)"
			}
		}
	}
	return fl
}

func isRel(a x86asm.Arg) bool {
	_, ok := a.(x86asm.Rel)
	return ok
}

// armWritesPC reports an ARM-state instruction that jumps somewhere
// computed: a BX to another register than LR, or a MOV, ADD or LDR into
// PC (a POP or LDM into PC is a return).
func armWritesPC(in armasm.Inst) bool {
	switch in.Op &^ 15 { // the condition is in the low bits
	case armasm.BX_EQ &^ 15:
		r, ok := in.Args[0].(armasm.Reg)
		return ok && r != armasm.LR
	case armasm.MOV_EQ &^ 15, armasm.ADD_EQ &^ 15, armasm.LDR_EQ &^ 15:
		r, ok := in.Args[0].(armasm.Reg)
		return ok && r == armasm.PC
	}
	return false
}

// thumbFlow decodes the branches of Thumb-2 code (x/arch has no Thumb
// decoder): B (T1..T4), CBZ/CBNZ, BL, and as opaque TBB/TBH, a BX or MOV
// to PC from another register than LR, and loads into PC other than POP.
func thumbFlow(code []byte, fl *flow, add func(pc uint64, rel int64)) {
	sext := func(v uint32, bits uint) int64 { return int64(int32(v<<(32-bits)) >> (32 - bits)) }
	for pc := 0; pc+2 <= len(code); {
		hw := uint32(binary.LittleEndian.Uint16(code[pc:]))
		if hw>>11 < 0x1d { // 16-bit
			switch {
			case hw&0xf000 == 0xd000 && (hw>>8)&0xf < 0xe: // B<c> T1
				add(uint64(pc+4), sext(hw&0xff, 8)<<1)
			case hw&0xf800 == 0xe000: // B T2
				add(uint64(pc+4), sext(hw&0x7ff, 11)<<1)
			case hw&0xf500 == 0xb100: // CBZ, CBNZ
				add(uint64(pc+4), int64((hw>>9&1)<<6|(hw>>3&0x1f)<<1))
			case hw&0xff80 == 0x4700 && (hw>>3)&0xf != 14: // BX Rm, not LR
				fl.opaque = "an indirect jump (BX)"
			case hw&0xff87 == 0x4687: // MOV PC, Rm
				fl.opaque = "an indirect jump (MOV PC)"
			}
			pc += 2
			continue
		}
		if pc+4 > len(code) {
			return
		}
		hw2 := uint32(binary.LittleEndian.Uint16(code[pc+2:]))
		s, j1, j2 := hw>>10&1, hw2>>13&1, hw2>>11&1
		switch {
		case hw&0xf800 == 0xf000 && hw2&0xd000 == 0x8000 && (hw>>6)&0xf < 0xe: // B<c>.W T3
			add(uint64(pc+4), sext(s<<20|j2<<19|j1<<18|(hw&0x3f)<<12|(hw2&0x7ff)<<1, 21))
		case hw&0xf800 == 0xf000 && (hw2&0xd000 == 0x9000 || hw2&0xd000 == 0xd000): // B.W T4, BL
			i1, i2 := ^(j1^s)&1, ^(j2^s)&1
			add(uint64(pc+4), sext(s<<24|i1<<23|i2<<22|(hw&0x3ff)<<12|(hw2&0x7ff)<<1, 25))
		case hw&0xfff0 == 0xe8d0 && hw2&0xffe0 == 0xf000: // TBB, TBH
			fl.opaque = "a jump table (TBB/TBH)"
		case hw&0xff70 == 0xf850 && hw2>>12 == 15 && !(hw&0xf == 13 && hw2&0x0fff == 0x0b04): // LDR PC, not POP {pc}
			fl.opaque = "an indirect jump (LDR PC)"
		}
		pc += 4
	}
}

// tableTargets finds the jump tables of the original build's function
// fu: relocations from read-only data sections of its object into the
// function's own section. An absolute entry is the target itself; a run
// of PC-relative entries (amd64's ".long .L3-.L4") is relative to the
// run's first entry, the table's start. ok is false when an entry's
// target cannot be known (then any offset may be one).
func tableTargets(fu *funcUnit) (targets []uint64, ok bool) {
	o := fu.obj
	own := elf.SectionIndex(fu.secs[0])
	for sec, rs := range o.relocs {
		s := o.f.Sections[sec]
		if s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 || s.Flags&elf.SHF_WRITE != 0 {
			continue
		}
		start, prev := uint64(0), ^uint64(0)
		for _, r := range rs {
			if r.sym < 0 || r.sym >= len(o.syms) || o.syms[r.sym].Section != own {
				prev = ^uint64(0)
				continue
			}
			at := int64(o.syms[r.sym].Value&^1) + r.addend
			switch {
			case isAbs(o.arch, r.typ):
			case isPCRel32(o.arch, r.typ):
				if prev == ^uint64(0) || r.off != prev+4 {
					start = r.off
				}
				at -= int64(r.off - start)
				prev = r.off
			default:
				return nil, false
			}
			if o.arch == ulp.ARM { // REL: the addend is in the table
				return nil, false
			}
			if at >= 0 {
				targets = append(targets, uint64(at))
			}
		}
	}
	return targets, true
}

func isAbs(arch string, typ uint32) bool {
	switch arch {
	case ulp.AMD64:
		return typ == uint32(elf.R_X86_64_64) || typ == uint32(elf.R_X86_64_32) || typ == uint32(elf.R_X86_64_32S)
	case ulp.ARM64:
		return typ == uint32(elf.R_AARCH64_ABS64) || typ == uint32(elf.R_AARCH64_ABS32)
	case ulp.ARM:
		return typ == uint32(elf.R_ARM_ABS32)
	}
	return false
}

func isPCRel32(arch string, typ uint32) bool {
	switch arch {
	case ulp.AMD64:
		return typ == uint32(elf.R_X86_64_PC32)
	case ulp.ARM64:
		return typ == uint32(elf.R_AARCH64_PREL32)
	case ulp.ARM:
		return typ == uint32(elf.R_ARM_REL32)
	}
	return false
}

// intoOwnEntry looks for references from fu's other sections (its cold
// part) into the first end bytes of its main section: a thread in the
// cold part could come back into the trampoline's bytes. It returns the
// first such offset, or ok=false when one cannot be computed.
func intoOwnEntry(fu *funcUnit, end uint64) (off uint64, found, ok bool) {
	o := fu.obj
	own := elf.SectionIndex(fu.secs[0])
	for _, sec := range fu.secs[1:] {
		for _, r := range o.relocs[sec] {
			if r.sym < 0 || r.sym >= len(o.syms) || o.syms[r.sym].Section != own {
				continue
			}
			if o.arch == ulp.ARM {
				return 0, false, false // REL: the addend is in the instruction
			}
			at := int64(o.syms[r.sym].Value) + r.addend
			if o.arch == ulp.AMD64 && isPCRel32(o.arch, r.typ) || r.typ == uint32(elf.R_X86_64_PLT32) && o.arch == ulp.AMD64 {
				at += 4 // rel32 is relative to the end of the field
			}
			if at > 0 && uint64(at) < end {
				return uint64(at), true, true
			}
		}
	}
	return 0, false, true
}

// callTargets returns the offsets (from the start of code) that the
// direct calls and unconditional jumps in code go to: amd64 call/jmp
// rel32 found by a linear sweep, arm64 BL/B, ARM BL/B and Thumb-2 BL/B.W
// at every aligned position.
func callTargets(arch string, code []byte) []uint64 {
	var out []uint64
	add := func(pc uint64, rel int64) {
		if t := int64(pc) + rel; t >= 0 {
			out = append(out, uint64(t))
		}
	}
	switch arch {
	case ulp.AMD64:
		for pc := 0; pc < len(code); {
			op := code[pc]
			if (op == 0xe8 || op == 0xe9) && pc+5 <= len(code) {
				add(uint64(pc+5), int64(int32(binary.LittleEndian.Uint32(code[pc+1:]))))
				pc += 5
				continue
			}
			in, err := x86asm.Decode(code[pc:], 64)
			if err != nil || in.Len == 0 {
				pc++
				continue
			}
			pc += in.Len
		}
	case ulp.ARM64:
		for pc := 0; pc+4 <= len(code); pc += 4 {
			w := binary.LittleEndian.Uint32(code[pc:])
			if w&0x7c000000 == 0x14000000 { // B, BL
				add(uint64(pc), int64(int32(w<<6)>>6)<<2)
			}
		}
	case ulp.ARM:
		for pc := 0; pc+4 <= len(code); pc += 2 {
			hw, hw2 := uint32(binary.LittleEndian.Uint16(code[pc:])), uint32(binary.LittleEndian.Uint16(code[pc+2:]))
			if hw&0xf800 == 0xf000 && (hw2&0xd000 == 0x9000 || hw2&0xd000 == 0xd000) { // Thumb B.W, BL
				s, j1, j2 := hw>>10&1, hw2>>13&1, hw2>>11&1
				i1, i2 := ^(j1^s)&1, ^(j2^s)&1
				v := s<<24 | i1<<23 | i2<<22 | (hw&0x3ff)<<12 | (hw2&0x7ff)<<1
				add(uint64(pc+4), int64(int32(v<<7)>>7))
			}
			if pc%4 == 0 {
				if w := binary.LittleEndian.Uint32(code[pc:]); w&0x0e000000 == 0x0a000000 && w>>28 == 0xe { // ARM B, BL
					add(uint64(pc+8), int64(int32(w<<8)>>6))
				}
			}
		}
	}
	return out
}
