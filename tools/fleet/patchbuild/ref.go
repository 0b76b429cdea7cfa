package patchbuild

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"strings"

	"github.com/graft-dev/graft/manifest/ulp"
)

// refKind says what a relocation refers to.
type refKind int

const (
	refFunc    refKind = iota // code of a function of the object
	refData                   // a named data object of the object
	refAnon                   // anonymous data (string literals, constants, jump tables)
	refExtern                 // a symbol the object does not define
	refGOTBase                // _GLOBAL_OFFSET_TABLE_
)

// ref is what one relocation refers to.
type ref struct {
	kind refKind
	sym  elf.Symbol // the relocation's symbol
	sec  int        // the section sym is defined in (not refExtern, refGOTBase)
	fu   *funcUnit  // refFunc
	d    *dataObj   // refData
	loc  int64      // refAnon: the referenced byte's offset in sec
}

// gotBaseName is the symbol ARM code uses for the GOT origin.
const gotBaseName = "_GLOBAL_OFFSET_TABLE_"

// bias is how far past the relocated field's value the referenced byte
// is for PC-relative x86 fields (the displacement ends the instruction:
// "lea .LC0-4(%rip)" refers to .LC0).
func bias(arch string, typ uint32) int64 {
	if arch != ulp.AMD64 {
		return 0
	}
	switch elf.R_X86_64(typ) {
	case elf.R_X86_64_PC32, elf.R_X86_64_PLT32, elf.R_X86_64_GOTPCREL,
		elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX:
		return 4
	}
	return 0
}

// refOf classifies the target of relocation r.
func (o *object) refOf(r rel) (ref, error) {
	if r.sym < 0 {
		return ref{}, fmt.Errorf("%w: object %s: relocation type %d at %#x has no symbol", ErrUnsupported, o.name, r.typ, r.off)
	}
	s := o.syms[r.sym]
	if s.Section == elf.SHN_UNDEF {
		if s.Name == gotBaseName {
			return ref{kind: refGOTBase, sym: s}, nil
		}
		return ref{kind: refExtern, sym: s}, nil
	}
	sec, ok := o.section(s.Section)
	if !ok {
		return ref{}, fmt.Errorf("%w: object %s: relocation against %s in special section %v", ErrUnsupported, o.name, s.Name, s.Section)
	}
	idx := int(s.Section)
	if sec.Flags&elf.SHF_TLS != 0 {
		return ref{}, fmt.Errorf("%w: object %s: thread-local %s (%s)", ErrUnsupported, o.name, symName(s, sec), sec.Name)
	}
	if fu := o.secFunc[idx]; fu != nil {
		return ref{kind: refFunc, sym: s, sec: idx, fu: fu}, nil
	}
	t := elf.ST_TYPE(s.Info)
	if t == elf.STT_OBJECT {
		for _, d := range o.secObjs[idx] {
			if d.sym.Value == s.Value && d.name == s.Name {
				return ref{kind: refData, sym: s, sec: idx, d: d}, nil
			}
		}
	}
	loc := int64(s.Value) + r.addend + bias(o.arch, r.typ)
	if sec.Flags&elf.SHF_MERGE == 0 {
		objs := o.secObjs[idx]
		for _, d := range objs {
			if loc >= int64(d.sym.Value) && loc < int64(d.sym.Value+d.sym.Size) {
				return ref{kind: refData, sym: s, sec: idx, d: d}, nil
			}
		}
		if len(objs) == 1 {
			return ref{kind: refData, sym: s, sec: idx, d: objs[0]}, nil
		}
	}
	return ref{kind: refAnon, sym: s, sec: idx, loc: loc}, nil
}

func symName(s elf.Symbol, sec *elf.Section) string {
	if s.Name != "" {
		return s.Name
	}
	return sec.Name
}

// key is a layout-independent description of what r refers to: equal
// keys in the original and the fixed build mean the same thing. Named
// things compare by name; anonymous data by its content.
func (o *object) key(r rel, depth int) (string, error) {
	rf, err := o.refOf(r)
	if err != nil {
		return "", err
	}
	pos := int64(rf.sym.Value) + r.addend
	switch rf.kind {
	case refFunc:
		part := 0
		for i, s := range rf.fu.secs {
			if s == rf.sec {
				part = i
			}
		}
		return fmt.Sprintf("f:%s/%d%+d", rf.fu.key, part, pos), nil
	case refData:
		return fmt.Sprintf("d:%s%+d", rf.d.key, pos-int64(rf.d.sym.Value)), nil
	case refExtern:
		return fmt.Sprintf("x:%s%+d", rf.sym.Name, r.addend), nil
	case refGOTBase:
		return fmt.Sprintf("g%+d", r.addend), nil
	}
	c, err := o.content(rf.sec, rf.loc, depth)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("a:%s%+d", c, pos-rf.loc), nil
}

// content describes anonymous data at loc of section sec by value.
func (o *object) content(sec int, loc int64, depth int) (string, error) {
	s := o.f.Sections[sec]
	b := o.data(sec)
	kind := strings.TrimPrefix(s.Name, ".")
	if i := strings.IndexAny(kind, "."); i >= 0 {
		kind = kind[:i] // "rodata", "data", ...
	}
	if s.Flags&elf.SHF_MERGE != 0 && loc >= 0 && loc < int64(len(b)) {
		if s.Flags&elf.SHF_STRINGS != 0 {
			str := b[loc:]
			if i := bytes.IndexByte(str, 0); i >= 0 {
				str = str[:i]
			}
			return fmt.Sprintf("%s:str%q", kind, str), nil
		}
		if n := int64(s.Entsize); n > 0 {
			start := loc / n * n
			end := min(start+n, int64(len(b)))
			return fmt.Sprintf("%s:const%x%+d", kind, b[start:end], loc-start), nil
		}
	}
	h := sha256.New()
	h.Write(b)
	if depth < 1 {
		for _, r := range o.relocs[sec] {
			k, err := o.key(r, depth+1)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "|%d:%d:%s", r.off, r.typ, k)
		}
	}
	return fmt.Sprintf("%s:%x@%d", kind, h.Sum(nil)[:12], loc), nil
}

// signature is the function's code and relocations in comparable form.
func (fu *funcUnit) signature() (string, error) {
	var sb strings.Builder
	o := fu.obj
	for _, sec := range fu.secs {
		b := o.data(sec)
		fmt.Fprintf(&sb, "[%d:%x]", len(b), sha256.Sum256(b))
		for _, r := range o.relocs[sec] {
			k, err := o.key(r, 0)
			if err != nil {
				return "", fmt.Errorf("%s: %w", fu.name, err)
			}
			fmt.Fprintf(&sb, "(%d,%d,%s)", r.off, r.typ, k)
		}
	}
	return sb.String(), nil
}
