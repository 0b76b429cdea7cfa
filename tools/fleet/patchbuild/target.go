package patchbuild

import (
	"bytes"
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
	// gotSlot: for a symbol the target imports, the address of its GOT
	// entry (from GLOB_DAT and JUMP_SLOT dynamic relocations).
	gotSlot map[string]uint64
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
	}
	return t, nil
}

// buildID returns the NT_GNU_BUILD_ID note's descriptor, or nil.
func buildID(f *elf.File) []byte {
	scan := func(b []byte) []byte {
		bo := f.ByteOrder
		for len(b) >= 12 {
			nsz, dsz, typ := bo.Uint32(b), bo.Uint32(b[4:]), bo.Uint32(b[8:])
			n := (uint64(nsz) + 3) &^ 3
			d := (uint64(dsz) + 3) &^ 3
			if 12+n+d > uint64(len(b)) {
				return nil
			}
			name := b[12 : 12+nsz]
			if typ == 3 && string(name) == "GNU\x00" {
				return append([]byte(nil), b[12+n:12+n+uint64(dsz)]...)
			}
			b = b[12+n+d:]
		}
		return nil
	}
	for _, s := range f.Sections {
		if s.Type == elf.SHT_NOTE {
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
		e := tsym{value: s.Value, size: s.Size, typ: typ, local: local, table: table}
		if local {
			e.file = file
		}
		m[s.Name] = append(m[s.Name], e)
	}
	return m
}

// lookup finds name in the target's tables in order. A local symbol of
// the object (local set) is looked up among locals, a global among
// globals; several different addresses are told apart by the source file
// name when the table records it.
func (t *target) lookup(name string, local bool, file string) (tsym, error) {
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
		if len(cands) > 1 && local {
			var same []tsym
			for _, c := range cands {
				if c.file == file {
					same = append(same, c)
				}
			}
			if len(same) > 0 {
				cands = distinct(same)
			}
		}
		if len(cands) == 1 {
			return cands[0], nil
		}
		{
			return tsym{}, fmt.Errorf("%w: %s has %d addresses in the target's %s (%#x, %#x, ...)",
				ErrAmbiguous, name, len(cands), cands[0].table, cands[0].value, cands[1].value)
		}
	}
	kind := "global"
	if local {
		kind = "static"
	}
	return tsym{}, fmt.Errorf("%w: %s %s (not in .dynsym, .symtab or the debug file; pass --debug with the target's debug symbols)",
		ErrUnresolved, kind, name)
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

// Dynamic relocation types that fill a GOT entry with a symbol's address.
var gotTypes = map[elf.Machine][2]uint32{
	elf.EM_X86_64:  {uint32(elf.R_X86_64_GLOB_DAT), uint32(elf.R_X86_64_JMP_SLOT)},
	elf.EM_AARCH64: {uint32(elf.R_AARCH64_GLOB_DAT), uint32(elf.R_AARCH64_JUMP_SLOT)},
	elf.EM_ARM:     {uint32(elf.R_ARM_GLOB_DAT), uint32(elf.R_ARM_JUMP_SLOT)},
}

// readGOT records, for each symbol the target imports, the GOT entry the
// dynamic linker fills with its address.
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
			if (r.typ != types[0] && r.typ != types[1]) || r.sym < 1 || r.sym > len(dyn) {
				continue
			}
			s := dyn[r.sym-1]
			if s.Section != elf.SHN_UNDEF {
				continue // defined here: resolved directly
			}
			if _, ok := t.gotSlot[s.Name]; !ok || r.typ == types[0] {
				t.gotSlot[s.Name] = r.off
			}
		}
	}
}
