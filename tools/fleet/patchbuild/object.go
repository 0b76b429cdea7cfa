package patchbuild

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/graft-dev/graft/manifest/ulp"
)

// Object is one relocatable object (.o) of the original or the fixed
// build. Name is used in messages only.
type Object struct {
	Name string
	File *elf.File
}

// rel is one relocation of a section of an object, RELA or REL.
type rel struct {
	off    uint64
	typ    uint32
	sym    int // index into object.syms, -1 for none
	addend int64
}

// funcUnit is one function of an object: its main section and the
// sections of its split cold parts (gcc's <name>.cold in
// .text.unlikely.<name>), which travel with it.
type funcUnit struct {
	key   string // symbol name; file:name for a local function
	name  string
	local bool
	sym   elf.Symbol
	secs  []int // main section first
	obj   *object
}

// dataObj is a named data object (STT_OBJECT) of an object.
type dataObj struct {
	key   string
	name  string
	local bool
	sym   elf.Symbol
	sec   int
	obj   *object
}

type object struct {
	name    string
	f       *elf.File
	arch    string
	file    string // the compilation unit: the STT_FILE symbol (the source file name), or the original's it pairs with
	syms    []elf.Symbol
	relocs  map[int][]rel
	funcs   map[string]*funcUnit
	secFunc map[int]*funcUnit
	objs    map[string]*dataObj
	secObjs map[int][]*dataObj
	bytes   map[int][]byte
}

// loadObject checks that o is a relocatable object of arch built with
// function sections and indexes its functions, data objects and
// relocations. cu, when set, is the compilation unit the object is
// another build of (its statics are those of cu in the target and in the
// original build), whatever name its own source file had.
func loadObject(o Object, arch, cu string) (*object, error) {
	f := o.File
	if f == nil {
		return nil, fmt.Errorf("%w: object %s: nil", ErrInput, o.Name)
	}
	if f.Type != elf.ET_REL {
		return nil, fmt.Errorf("%w: object %s is %v, want a relocatable object (ET_REL, from gcc -c)", ErrInput, o.Name, f.Type)
	}
	a, err := ulp.ArchOf(f.Machine)
	if err != nil {
		return nil, fmt.Errorf("%w: object %s: %w", ErrArch, o.Name, err)
	}
	if a != arch {
		return nil, fmt.Errorf("%w: object %s is %s, the target is %s", ErrArch, o.Name, a, arch)
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("%w: object %s: symbols: %w", ErrInput, o.Name, err)
	}
	ob := &object{name: o.Name, f: f, arch: arch, syms: syms, relocs: map[int][]rel{},
		funcs: map[string]*funcUnit{}, secFunc: map[int]*funcUnit{},
		objs: map[string]*dataObj{}, secObjs: map[int][]*dataObj{}, bytes: map[int][]byte{}}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FILE && ob.file == "" {
			ob.file = s.Name
		}
	}
	if ob.file == "" {
		ob.file = o.Name
	}
	if cu != "" {
		ob.file = cu
	}
	if err := ob.readRelocs(); err != nil {
		return nil, err
	}
	if err := ob.indexFuncs(); err != nil {
		return nil, err
	}
	ob.indexObjects()
	return ob, nil
}

func (o *object) readRelocs() error {
	f := o.f
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA && s.Type != elf.SHT_REL {
			continue
		}
		target := int(s.Info)
		if target <= 0 || target >= len(f.Sections) {
			continue
		}
		b, err := s.Data()
		if err != nil {
			return fmt.Errorf("%w: object %s: %s: %w", ErrInput, o.name, s.Name, err)
		}
		rs, err := parseRelocs(f.Class, f.ByteOrder, s.Type == elf.SHT_RELA, b)
		if err != nil {
			return fmt.Errorf("%w: object %s: %s: %w", ErrInput, o.name, s.Name, err)
		}
		for i := range rs {
			if rs[i].sym > len(o.syms) {
				return fmt.Errorf("%w: object %s: %s: symbol index %d out of range", ErrInput, o.name, s.Name, rs[i].sym)
			}
			rs[i].sym-- // Go's Symbols() drops the null symbol
		}
		o.relocs[target] = append(o.relocs[target], rs...)
	}
	for k := range o.relocs {
		rs := o.relocs[k]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].off < rs[j].off })
	}
	return nil
}

// parseRelocs decodes an SHT_RELA or SHT_REL section; sym is the raw
// symbol index.
func parseRelocs(class elf.Class, bo binary.ByteOrder, rela bool, b []byte) ([]rel, error) {
	var size int
	switch {
	case class == elf.ELFCLASS64 && rela:
		size = 24
	case class == elf.ELFCLASS64:
		size = 16
	case rela:
		size = 12
	default:
		size = 8
	}
	if len(b)%size != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %d-byte entries", len(b), size)
	}
	out := make([]rel, 0, len(b)/size)
	for p := 0; p < len(b); p += size {
		e := b[p : p+size]
		var r rel
		if class == elf.ELFCLASS64 {
			info := bo.Uint64(e[8:])
			r = rel{off: bo.Uint64(e), typ: uint32(info), sym: int(info >> 32)}
			if rela {
				r.addend = int64(bo.Uint64(e[16:]))
			}
		} else {
			info := bo.Uint32(e[4:])
			r = rel{off: uint64(bo.Uint32(e)), typ: info & 0xff, sym: int(info >> 8)}
			if rela {
				r.addend = int64(int32(bo.Uint32(e[8:])))
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// coldOf returns the function a split part belongs to ("f.cold",
// "f.cold.3" → "f").
func coldOf(name string) (string, bool) {
	i := strings.Index(name, ".cold")
	if i <= 0 {
		return "", false
	}
	rest := name[i+len(".cold"):]
	if rest != "" && (rest[0] != '.' || strings.Trim(rest[1:], "0123456789") != "") {
		return "", false
	}
	return name[:i], true
}

func (o *object) symKey(s elf.Symbol) string {
	if elf.ST_BIND(s.Info) == elf.STB_LOCAL {
		return o.file + ":" + s.Name
	}
	return s.Name
}

func (o *object) section(i elf.SectionIndex) (*elf.Section, bool) {
	if i == elf.SHN_UNDEF || i >= elf.SHN_LORESERVE || int(i) >= len(o.f.Sections) {
		return nil, false
	}
	return o.f.Sections[i], true
}

func isText(s *elf.Section) bool {
	return s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_ALLOC != 0 && s.Flags&elf.SHF_EXECINSTR != 0
}

func (o *object) indexFuncs() error {
	var cold []elf.Symbol
	for _, s := range o.syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC {
			continue
		}
		sec, ok := o.section(s.Section)
		if !ok || !isText(sec) {
			continue
		}
		if _, ok := coldOf(s.Name); ok {
			cold = append(cold, s)
			continue
		}
		idx := int(s.Section)
		if other, ok := o.secFunc[idx]; ok {
			if other.sym.Value == s.Value {
				continue // an alias of the same code
			}
			return fmt.Errorf("%w: object %s: %s holds both %s and %s; compile with -ffunction-sections",
				ErrFlags, o.name, sec.Name, other.name, s.Name)
		}
		if s.Value&^1 != 0 {
			return fmt.Errorf("%w: object %s: %s starts at %#x of %s, not at its start; compile with -ffunction-sections",
				ErrFlags, o.name, s.Name, s.Value, sec.Name)
		}
		fu := &funcUnit{key: o.symKey(s), name: s.Name, local: elf.ST_BIND(s.Info) == elf.STB_LOCAL,
			sym: s, secs: []int{idx}, obj: o}
		o.funcs[fu.key] = fu
		o.secFunc[idx] = fu
	}
	for _, s := range cold {
		parent, _ := coldOf(s.Name)
		var fu *funcUnit
		for _, k := range []string{o.file + ":" + parent, parent} {
			if f, ok := o.funcs[k]; ok {
				fu = f
				break
			}
		}
		if fu == nil {
			return fmt.Errorf("%w: object %s: split part %s has no function %s", ErrInput, o.name, s.Name, parent)
		}
		idx := int(s.Section)
		if owner, ok := o.secFunc[idx]; ok {
			if owner != fu {
				return fmt.Errorf("%w: object %s: %s holds parts of %s and %s; compile with -ffunction-sections",
					ErrFlags, o.name, o.f.Sections[idx].Name, owner.name, fu.name)
			}
			continue
		}
		fu.secs = append(fu.secs, idx)
		o.secFunc[idx] = fu
	}
	// Code in a text section no function owns (hand-written assembly,
	// or a build without function sections) cannot be compared.
	for i, s := range o.f.Sections {
		if isText(s) && s.Size > 0 && o.secFunc[i] == nil {
			return fmt.Errorf("%w: object %s: %s (%d bytes) holds code of no single function; compile with -ffunction-sections",
				ErrFlags, o.name, s.Name, s.Size)
		}
	}
	return nil
}

func (o *object) indexObjects() {
	for _, s := range o.syms {
		t := elf.ST_TYPE(s.Info)
		if t != elf.STT_OBJECT && t != elf.STT_TLS {
			continue
		}
		if _, ok := o.section(s.Section); !ok {
			continue
		}
		d := &dataObj{key: o.symKey(s), name: s.Name, local: elf.ST_BIND(s.Info) == elf.STB_LOCAL,
			sym: s, sec: int(s.Section), obj: o}
		if _, dup := o.objs[d.key]; !dup {
			o.objs[d.key] = d
		}
		o.secObjs[d.sec] = append(o.secObjs[d.sec], d)
	}
}

// data returns the contents of section i (zeros for NOBITS).
func (o *object) data(i int) []byte {
	if b, ok := o.bytes[i]; ok {
		return b
	}
	s := o.f.Sections[i]
	var b []byte
	if s.Type == elf.SHT_NOBITS {
		b = make([]byte, s.Size)
	} else {
		var err error
		b, err = s.Data()
		if err != nil {
			b = nil
		}
	}
	o.bytes[i] = b
	return b
}

// sourceFile returns the name f's first STT_FILE symbol records, or "".
func sourceFile(f *elf.File) string {
	syms, err := f.Symbols()
	if err != nil {
		return ""
	}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FILE {
			return s.Name
		}
	}
	return ""
}

// pairCU returns the compilation unit fixed object i of n is another
// build of: the original object with the same source file name, else
// the original at the same position when both builds have as many
// objects (the fixed source was compiled under another name), else its
// own name (a new compilation unit).
func pairCU(fixed Object, i int, orig []*object, n int) string {
	own := sourceFile(fixed.File)
	for _, o := range orig {
		if o.file == own {
			return own
		}
	}
	if len(orig) == n {
		return orig[i].file
	}
	return own
}
