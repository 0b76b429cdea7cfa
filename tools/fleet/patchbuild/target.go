package patchbuild

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"path"

	"github.com/graft-dev/graft/manifest/ulp"
)

// tsym is one defined symbol of the target: its address (with the Thumb
// bit, as in the symbol table) and where it came from.
type tsym struct {
	value, size uint64
	typ         elf.SymType
	local       bool
	file        string // for a local from .symtab: the STT_FILE before it
	table       string // ".dynsym", ".symtab" or "debug .symtab"
	vis         elf.SymVis
}

// target is the ELF being patched.
type target struct {
	f       *elf.File
	arch    string
	buildID []byte
	soname  string
	base    uint64 // page-aligned p_vaddr of the first PT_LOAD
	// tables in lookup order: .dynsym, .symtab, the debug file's .symtab.
	tables []map[string][]tsym
	// gotSlot: for a symbol the target binds at run time (one it
	// imports, or one it exports and reaches through its GOT), the
	// address of its GOT entry (from GLOB_DAT, JUMP_SLOT and absolute
	// dynamic relocations in the GOT).
	gotSlot map[string]uint64
	// exec: the target is a program (ET_EXEC or a PIE): its own
	// definitions are never interposed. symbolic: linked -Bsymbolic.
	exec, symbolic bool
	// calls: the addresses the target's code calls or jumps to directly
	// (filled on first use).
	calls map[uint64]bool
	debug *elf.File   // the separate debug file, if any
	units []unitRange // DWARF compilation units' code ranges (filled on first use)
}

// pageSize is what load bases are aligned to: the smallest page of every
// supported arch.
const pageSize = 4096

func loadTarget(f, debug *elf.File, fileName string) (*target, error) {
	if f == nil {
		return nil, fmt.Errorf("%w: nil target", ErrInput)
	}
	if f.Type != elf.ET_DYN && f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("%w: target %s is %v, want a shared object or executable", ErrInput, fileName, f.Type)
	}
	arch, err := ulp.ArchOf(f.Machine)
	if err != nil {
		return nil, fmt.Errorf("%w: target %s: %w", ErrArch, fileName, err)
	}
	t := &target{f: f, arch: arch, gotSlot: map[string]uint64{}}
	t.buildID = buildID(f)
	if t.buildID == nil {
		return nil, fmt.Errorf("%w: %s (link with --build-id)", ErrNoBuildID, fileName)
	}
	if s, err := f.DynString(elf.DT_SONAME); err == nil && len(s) > 0 {
		t.soname = s[0]
	} else {
		t.soname = path.Base(fileName)
	}
	first := true
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && first {
			t.base = p.Vaddr &^ (pageSize - 1)
			first = false
		}
	}
	if first {
		return nil, fmt.Errorf("%w: target %s has no PT_LOAD segment", ErrInput, fileName)
	}
	t.exec = f.Type == elf.ET_EXEC
	if v, err := f.DynValue(elf.DT_FLAGS_1); err == nil && len(v) > 0 && v[0]&uint64(elf.DF_1_PIE) != 0 {
		t.exec = true
	}
	if v, err := f.DynValue(elf.DT_FLAGS); err == nil && len(v) > 0 && v[0]&uint64(elf.DF_SYMBOLIC) != 0 {
		t.symbolic = true
	}
	if v, err := f.DynValue(elf.DT_SYMBOLIC); err == nil && len(v) > 0 {
		t.symbolic = true
	}
	dyn, err := f.DynamicSymbols()
	if err == nil {
		t.tables = append(t.tables, symTable(dyn, ".dynsym", true))
		t.readGOT(dyn)
	}
	if st, err := f.Symbols(); err == nil {
		t.tables = append(t.tables, symTable(st, ".symtab", false))
	}
	if debug != nil {
		if debug.Machine != f.Machine {
			return nil, fmt.Errorf("%w: debug file is %v, the target %v", ErrArch, debug.Machine, f.Machine)
		}
		if id := buildID(debug); id != nil && !bytes.Equal(id, t.buildID) {
			return nil, fmt.Errorf("%w: debug file has build ID %x, the target %x", ErrInput, id, t.buildID)
		}
		st, err := debug.Symbols()
		if err != nil {
			return nil, fmt.Errorf("%w: debug file has no .symtab: %w", ErrInput, err)
		}
		t.tables = append(t.tables, symTable(st, "debug .symtab", false))
		t.debug = debug
	}
	return t, nil
}

// buildID returns the NT_GNU_BUILD_ID note's descriptor, or nil.
func buildID(f *elf.File) []byte { return gnuNote(f, 3) }

// gnuNote returns the descriptor of f's first GNU note of type typ
// (3 NT_GNU_BUILD_ID, 5 NT_GNU_PROPERTY_TYPE_0), or nil.
func gnuNote(f *elf.File, want uint32) []byte {
	// Notes align to 4 bytes, property notes to 8 on 64-bit ELF.
	pad := uint64(3)
	if want == 5 && f.Class == elf.ELFCLASS64 {
		pad = 7
	}
	scan := func(b []byte) []byte {
		bo := f.ByteOrder
		for len(b) >= 12 {
			nsz, dsz, typ := bo.Uint32(b), bo.Uint32(b[4:]), bo.Uint32(b[8:])
			n := (12+uint64(nsz)+pad)&^pad - 12
			d := (uint64(dsz) + pad) &^ pad
			if 12+n+d > uint64(len(b)) {
				return nil
			}
			name := b[12 : 12+nsz]
			if typ == want && string(name) == "GNU\x00" {
				return append([]byte(nil), b[12+n:12+n+uint64(dsz)]...)
			}
			b = b[12+n+d:]
		}
		return nil
	}
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOTE && (want != 5 || s.Name == ".note.gnu.property") {
			if b, err := s.Data(); err == nil {
				if id := scan(b); id != nil {
					return id
				}
			}
		}
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_NOTE && p.Filesz < 1<<20 {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err == nil {
				if id := scan(b); id != nil {
					return id
				}
			}
		}
	}
	return nil
}

func symTable(syms []elf.Symbol, table string, dynamic bool) map[string][]tsym {
	m := map[string][]tsym{}
	file := ""
	for _, s := range syms {
		typ := elf.ST_TYPE(s.Info)
		if typ == elf.STT_FILE {
			file = s.Name
			continue
		}
		if s.Section == elf.SHN_UNDEF || s.Name == "" || typ == elf.STT_SECTION {
			continue
		}
		// A hidden (non-default) version of a versioned symbol is an old
		// ABI kept for old binaries, not the function a rebuild calls.
		if dynamic && s.HasVersion && s.VersionIndex.IsHidden() {
			continue
		}
		local := elf.ST_BIND(s.Info) == elf.STB_LOCAL
		e := tsym{value: s.Value, size: s.Size, typ: typ, local: local, table: table, vis: elf.ST_VISIBILITY(s.Other)}
		if local {
			e.file = file
		}
		m[s.Name] = append(m[s.Name], e)
	}
	return m
}

// lookup finds name in the target's tables in order. A global of the
// object is looked up among globals. A local (static) is matched by what
// identifies it in the target: its name, the compilation unit the table
// records for it (the STT_FILE before it in .symtab, or the DWARF unit
// holding its address) against cu, and its size (when size is not 0).
// A static recorded under another unit is not a match: binding to it
// would patch or call another file's function of the same name.
func (t *target) lookup(name string, local bool, cu string, size uint64) (tsym, error) {
	for _, tab := range t.tables {
		var cands []tsym
		for _, e := range tab[name] {
			if e.local == local {
				cands = append(cands, e)
			}
		}
		if len(cands) == 0 {
			continue
		}
		cands = distinct(cands)
		if local {
			var same []tsym
			recorded := false
			for _, c := range cands {
				file := c.file
				if file == "" {
					file = t.unitOf(c.value)
				}
				recorded = recorded || file != ""
				if file != "" && sameUnit(file, cu) {
					same = append(same, c)
				}
			}
			if recorded {
				cands = same
			}
			if len(cands) > 1 && size != 0 {
				var sized []tsym
				for _, c := range cands {
					if c.size == size {
						sized = append(sized, c)
					}
				}
				cands = sized
			}
			if len(cands) == 0 {
				continue
			}
		}
		if len(cands) == 1 {
			return cands[0], nil
		}
		return tsym{}, fmt.Errorf("%w: %s has %d addresses in the target's %s (%#x, %#x, ...)",
			ErrAmbiguous, name, len(cands), cands[0].table, cands[0].value, cands[1].value)
	}
	if local {
		return tsym{}, fmt.Errorf("%w: static %s of %s (no symbol of that name from that compilation unit in .symtab or the debug file; pass --debug with the target's debug symbols)",
			ErrUnresolved, name, cu)
	}
	return tsym{}, fmt.Errorf("%w: global %s (not in .dynsym, .symtab or the debug file; pass --debug with the target's debug symbols)",
		ErrUnresolved, name)
}

// sameUnit compares compilation unit names as a symbol table and DWARF
// record them (a path as the compiler was given it) by their base names
// when the paths differ.
func sameUnit(a, b string) bool {
	return a == b || path.Base(a) == path.Base(b)
}

// unitOf returns the name of the DWARF compilation unit whose code holds
// addr, from the target or its debug file, or "".
func (t *target) unitOf(addr uint64) string {
	if t.units == nil {
		t.units = []unitRange{}
		for _, f := range []*elf.File{t.f, t.debug} {
			if f == nil {
				continue
			}
			d, err := f.DWARF()
			if err != nil {
				continue
			}
			r := d.Reader()
			for {
				e, err := r.Next()
				if err != nil || e == nil {
					break
				}
				if e.Tag != dwarf.TagCompileUnit {
					r.SkipChildren()
					continue
				}
				name, _ := e.Val(dwarf.AttrName).(string)
				if rs, err := d.Ranges(e); err == nil {
					for _, rg := range rs {
						t.units = append(t.units, unitRange{rg[0], rg[1], name})
					}
				}
				r.SkipChildren()
			}
		}
	}
	for _, u := range t.units {
		if addr >= u.lo && addr < u.hi {
			return u.name
		}
	}
	return ""
}

type unitRange struct {
	lo, hi uint64
	name   string
}

func distinct(in []tsym) []tsym {
	var out []tsym
	seen := map[uint64]bool{}
	for _, e := range in {
		if !seen[e.value] {
			seen[e.value] = true
			out = append(out, e)
		}
	}
	return out
}

// off converts a target address to an offset from the load base.
func (t *target) off(vaddr uint64) uint64 { return vaddr - t.base }

// read returns n bytes of the target's file image at vaddr, through its
// PT_LOAD segments.
func (t *target) read(vaddr, n uint64) ([]byte, error) {
	for _, p := range t.f.Progs {
		if p.Type != elf.PT_LOAD || vaddr < p.Vaddr || vaddr+n > p.Vaddr+p.Filesz {
			continue
		}
		b := make([]byte, n)
		if _, err := p.ReadAt(b, int64(vaddr-p.Vaddr)); err != nil {
			return nil, fmt.Errorf("%w: target bytes at %#x: %w", ErrInput, vaddr, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: target address %#x+%d is in no loaded segment", ErrInput, vaddr, n)
}

// bti reports an arm64 target marked for BTI (GNU_PROPERTY_AARCH64_
// FEATURE_1_AND with the BTI bit): the loader maps its code guarded, and
// an indirect branch must land on a BTI or PACIxSP instruction.
func (t *target) bti() bool {
	if t.arch != ulp.ARM64 {
		return false
	}
	d := gnuNote(t.f, 5)
	for len(d) >= 8 {
		typ, n := t.f.ByteOrder.Uint32(d), uint64(t.f.ByteOrder.Uint32(d[4:]))
		if 8+n > uint64(len(d)) {
			return false
		}
		if typ == 0xc0000000 && n >= 4 && t.f.ByteOrder.Uint32(d[8:])&1 != 0 {
			return true
		}
		d = d[8+(n+7)&^7:]
	}
	return false
}

// landingPad reports whether a branch through a register (the veneer's
// BR x17) may land at off in the target: always, unless the target is
// BTI-guarded and the instruction there is none of BTI c, BTI jc,
// PACIASP, PACIBSP.
func (t *target) landingPad(off uint64) bool {
	if !t.bti() {
		return true
	}
	b, err := t.read(t.base+off, 4)
	if err != nil {
		return false
	}
	switch t.f.ByteOrder.Uint32(b) {
	case 0xd503245f, 0xd50324df, 0xd503233f, 0xd503237f:
		return true
	}
	return false
}

// Dynamic relocation types that fill a GOT entry with a symbol's
// address: GLOB_DAT, JUMP_SLOT, and the absolute type (which counts only
// inside a GOT section).
var gotTypes = map[elf.Machine][3]uint32{
	elf.EM_X86_64:  {uint32(elf.R_X86_64_GLOB_DAT), uint32(elf.R_X86_64_JMP_SLOT), uint32(elf.R_X86_64_64)},
	elf.EM_AARCH64: {uint32(elf.R_AARCH64_GLOB_DAT), uint32(elf.R_AARCH64_JUMP_SLOT), uint32(elf.R_AARCH64_ABS64)},
	elf.EM_ARM:     {uint32(elf.R_ARM_GLOB_DAT), uint32(elf.R_ARM_JUMP_SLOT), uint32(elf.R_ARM_ABS32)},
}

// inGOT reports whether vaddr lies in the target's .got or .got.plt.
func (t *target) inGOT(vaddr uint64) bool {
	for _, s := range t.f.Sections {
		if (s.Name == ".got" || s.Name == ".got.plt") && vaddr >= s.Addr && vaddr < s.Addr+s.Size {
			return true
		}
	}
	return false
}

// preemptible reports whether the process may bind name, which ts
// defines in the target, to another definition: an exported (.dynsym)
// global of default visibility in a shared library not linked
// -Bsymbolic. The program's own definitions, locals, hidden and
// protected symbols are bound where they are.
func (t *target) preemptible(ts tsym) bool {
	return !t.exec && !t.symbolic && !ts.local && ts.table == ".dynsym" && ts.vis == elf.STV_DEFAULT
}

// bindsLocally reports whether the target's own code uses ts's definition
// directly although it is exported: a local or hidden alias at the same
// address (glibc's __GI_ names), or a direct call or jump to it anywhere
// in its code.
func (t *target) bindsLocally(name string, ts tsym) bool {
	for _, tab := range t.tables {
		for alias, es := range tab {
			for _, e := range es {
				// Of the same type: ARM mapping symbols ($x, $t, $d) are
				// local NOTYPE symbols at code addresses, not aliases.
				if alias != name && e.value == ts.value && e.typ == ts.typ && (e.local || e.vis == elf.STV_HIDDEN || e.vis == elf.STV_INTERNAL) {
					return true
				}
			}
		}
	}
	if ts.typ != elf.STT_FUNC {
		return false
	}
	if t.calls == nil {
		t.calls = directCalls(t.f, t.arch)
	}
	return t.calls[ts.value&^1]
}

// directCalls collects the destinations of the direct calls and jumps in
// f's executable segments (a linear sweep; on amd64 an undecodable byte
// is skipped).
func directCalls(f *elf.File, arch string) map[uint64]bool {
	out := map[uint64]bool{}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		code := make([]byte, p.Filesz)
		if _, err := p.ReadAt(code, 0); err != nil {
			continue
		}
		for _, d := range callTargets(arch, code) {
			out[p.Vaddr+d] = true
		}
	}
	return out
}

// readGOT records, for each symbol the target binds at run time, the GOT
// entry the dynamic linker fills with its address.
func (t *target) readGOT(dyn []elf.Symbol) {
	types := gotTypes[t.f.Machine]
	for _, s := range t.f.Sections {
		if (s.Type != elf.SHT_RELA && s.Type != elf.SHT_REL) || s.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		b, err := s.Data()
		if err != nil {
			continue
		}
		rs, err := parseRelocs(t.f.Class, t.f.ByteOrder, s.Type == elf.SHT_RELA, b)
		if err != nil {
			continue
		}
		for _, r := range rs {
			if (r.typ != types[0] && r.typ != types[1] && r.typ != types[2]) || r.sym < 1 || r.sym > len(dyn) {
				continue
			}
			if r.typ == types[2] && (r.addend != 0 || !t.inGOT(r.off)) {
				continue // an absolute pointer in data, not a GOT entry
			}
			s := dyn[r.sym-1]
			if _, ok := t.gotSlot[s.Name]; !ok || r.typ == types[0] {
				t.gotSlot[s.Name] = r.off
			}
		}
	}
}
