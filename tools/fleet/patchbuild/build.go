package patchbuild

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/graft-dev/graft/manifest/ulp"
)

// Files is the parsed input of BuildFiles.
type Files struct {
	Name       string    // the bundle's name
	Target     *elf.File // the exact build being patched
	TargetName string    // its file name, for messages and the soname fallback
	Debug      *elf.File // optional: the target's separate debug file (.symtab)
	Orig       []Object  // the original build's objects
	Fixed      []Object  // the fixed build's objects
}

// dataAlign is where Data starts when a patch has writable data: the
// largest page size of any supported kernel, so BasePatch offsets into
// Data do not depend on the device's page size.
const dataAlign = 64 << 10

type region int

const (
	regCode region = iota
	regRodata
	regData
	regBSS
)

// piece is one section of an object copied into the patch image.
type piece struct {
	obj    *object
	sec    int
	region region
	off    uint64 // offset in the patch image, once laid out
	relocs []planned
}

// dest is what a relocation's symbol resolves to.
type dest struct {
	name     string
	base     ulp.Base
	p        *piece // BasePatch: p.off + add
	add      uint64
	sym      uint64 // BaseTarget
	imported bool   // the target imports it: slot is its GOT entry
	slot     uint64
	gotBase  bool // the GOT origin (ARM)
}

func (d dest) value() uint64 {
	if d.p != nil {
		return d.p.off + d.add
	}
	return d.sym
}

func (d dest) id() string {
	if d.p != nil {
		return fmt.Sprintf("p%p+%d", d.p, d.add)
	}
	return fmt.Sprintf("t%d", d.sym)
}

type relocKind int

const (
	kPlain   relocKind = iota
	kGOT               // GOT-relative: retarget to a slot of the patch's GOT
	kGOTBrel           // ARM GOT_BREL: the slot's offset from the GOT origin, in place
	kGOTBase           // ARM: PC-relative to the GOT origin
	kVeneer            // a call or jump to the target: retarget to a veneer of the patch
)

type planned struct {
	r       rel
	d       dest
	kind    relocKind
	newType uint32
	ven     int // kVeneer: index into builder.veneers
}

// veneer is a stub in the patch that jumps to a function of the target
// through an absolute address in a GOT slot, so that a call from the patch
// only has to reach the stub, wherever the agent maps the patch.
type veneer struct {
	// imported: slot is the target's own GOT entry of a function it
	// imports (BaseTarget); otherwise slot indexes builder.slots, a slot
	// of the patch's GOT filled with the function's address.
	imported bool
	slot     uint64
	// arm: the stub is ARM-state code, for ARM-state callers; on ARM it
	// is Thumb-2 code otherwise.
	arm bool
}

type builder struct {
	arch         string
	t            *target
	orig, fixed  *build
	replace      map[*funcUnit]bool
	pieces       map[*object]map[int]*piece
	queue        []*piece
	slots        []dest
	slotIdx      map[string]int
	veneers      []veneer
	venIdx       map[veneer]int
	usesGOTBase  bool
	rep          *Report
	gotStart     uint64
	veneerStart  uint64
	placedFuncs  map[*funcUnit]bool
	placedRodata map[string]bool
	branchAt     map[string]uint64 // replaced function → first branch target in its trampoline bytes
}

// BuildFiles compares the original and fixed objects and builds the
// bundle that replaces the changed functions in the target.
func BuildFiles(in Files) (*ulp.Bundle, *Report, error) {
	if in.Name == "" {
		return nil, nil, fmt.Errorf("%w: the patch needs a name", ErrInput)
	}
	if len(in.Orig) == 0 || len(in.Fixed) == 0 {
		return nil, nil, fmt.Errorf("%w: want objects of both the original and the fixed build", ErrInput)
	}
	t, err := loadTarget(in.Target, in.Debug, in.TargetName)
	if err != nil {
		return nil, nil, err
	}
	load := func(objs []Object, which string, cu func(int, Object) string) (*build, error) {
		var out []*object
		for i, o := range objs {
			ob, err := loadObject(o, t.arch, cu(i, o))
			if err != nil {
				return nil, err
			}
			out = append(out, ob)
		}
		return newBuild(out, which)
	}
	orig, err := load(in.Orig, "original", func(int, Object) string { return "" })
	if err != nil {
		return nil, nil, err
	}
	// The fixed build's statics are matched by the compilation unit of
	// the original they pair with, not by their own source file's name.
	fixed, err := load(in.Fixed, "fixed", func(i int, o Object) string { return pairCU(o, i, orig.objs, len(in.Fixed)) })
	if err != nil {
		return nil, nil, err
	}
	rep := &Report{Name: in.Name, Arch: t.arch, Soname: t.soname, BuildID: hex.EncodeToString(t.buildID), Relocs: map[string]int{}}
	if err := checkData(orig, fixed, rep); err != nil {
		return nil, nil, err
	}
	if err := checkStructs(orig, fixed, rep); err != nil {
		return nil, nil, err
	}
	b := &builder{arch: t.arch, t: t, orig: orig, fixed: fixed, replace: map[*funcUnit]bool{},
		pieces: map[*object]map[int]*piece{}, slotIdx: map[string]int{}, venIdx: map[veneer]int{}, rep: rep,
		placedFuncs: map[*funcUnit]bool{}, placedRodata: map[string]bool{}, branchAt: map[string]uint64{}}
	var changed []*funcUnit
	for _, fu := range fixed.order {
		ofu, ok := orig.funcs[fu.key]
		if !ok {
			continue
		}
		fs, err := fu.signature()
		if err != nil {
			return nil, nil, err
		}
		os, err := ofu.signature()
		if err != nil {
			return nil, nil, err
		}
		if fs != os {
			changed = append(changed, fu)
			b.replace[fu] = true
		}
	}
	if len(changed) == 0 {
		return nil, nil, fmt.Errorf("%w: the %d functions of the fixed build have the same code and relocations as the original",
			ErrNoChange, len(fixed.order))
	}
	for _, fu := range changed {
		b.placeFunc(fu)
	}
	for i := 0; i < len(b.queue); i++ {
		if err := b.plan(b.queue[i]); err != nil {
			return nil, nil, err
		}
	}
	bundle := &ulp.Bundle{Format: ulp.FormatVersion, Name: in.Name, Arch: t.arch, BuildID: t.buildID, Soname: t.soname}
	b.layout(bundle)
	if err := b.emit(bundle); err != nil {
		return nil, nil, err
	}
	for _, fu := range changed {
		f, err := b.funcEntry(fu, bundle)
		if err != nil {
			return nil, nil, err
		}
		bundle.Funcs = append(bundle.Funcs, f)
		rep.Replaced = append(rep.Replaced, FuncReport{Symbol: f.Symbol, Target: f.Target, Size: f.Size, New: f.New,
			Length: len(fu.obj.data(fu.secs[0])), Keep: f.Keep, Guard: f.Guard, BranchIn: b.branchAt[fu.name], Thumb: f.Thumb})
	}
	rep.Code, rep.Data, rep.BSS = len(bundle.Code), len(bundle.Data), bundle.BSS
	rep.GOTSlots, rep.Veneers = len(b.slots), len(b.veneers)
	if err := bundle.Validate(); err != nil {
		return nil, nil, fmt.Errorf("patchbuild: the bundle built is not valid: %w", err)
	}
	return bundle, rep, nil
}

func (b *builder) place(o *object, sec int, reg region) *piece {
	m := b.pieces[o]
	if m == nil {
		m = map[int]*piece{}
		b.pieces[o] = m
	}
	if p, ok := m[sec]; ok {
		return p
	}
	p := &piece{obj: o, sec: sec, region: reg}
	m[sec] = p
	b.queue = append(b.queue, p)
	return p
}

func (b *builder) placeFunc(fu *funcUnit) {
	if b.placedFuncs[fu] {
		return
	}
	b.placedFuncs[fu] = true
	for _, s := range fu.secs {
		b.place(fu.obj, s, regCode)
	}
}

func (b *builder) targetDest(name string, ts tsym, within uint64, s elf.Symbol) (dest, error) {
	if ts.typ == elf.STT_GNU_IFUNC {
		return dest{}, fmt.Errorf("%w: %s is an IFUNC in the target (its symbol is the resolver, not the function)", ErrUnsupported, name)
	}
	return dest{name: name, base: ulp.BaseTarget, sym: b.t.off(ts.value) - within + s.Value}, nil
}

// bindTarget is targetDest for a symbol the target defines, bound as
// the target's own code binds it: through the target's GOT entry when
// the process may bind it to another definition (a copy in the program,
// an interposing function or LD_PRELOAD library), so that the patch uses
// exactly what the original code used; directly when it cannot be
// interposed or the target's code uses its definition directly. A
// preemptible symbol with neither is refused.
func (b *builder) bindTarget(name string, ts tsym, within uint64, s elf.Symbol) (dest, error) {
	d, err := b.targetDest(name, ts, within, s)
	if err != nil || !b.t.preemptible(ts) {
		return d, err
	}
	if slot, ok := b.t.gotSlot[name]; ok {
		if s.Value != within {
			return dest{}, fmt.Errorf("%w: a reference to %s%+d, inside a symbol the process binds at run time",
				ErrBinding, name, int64(s.Value-within))
		}
		b.noteBinding(name + " through the target's GOT entry")
		return dest{name: name, imported: true, slot: b.t.off(slot)}, nil
	}
	if b.t.bindsLocally(name, ts) {
		b.noteBinding(name + " directly: the target's own code does")
		return d, nil
	}
	return dest{}, fmt.Errorf("%w: %s is exported with default visibility, so the process may bind it to another definition "+
		"(a copy in the program, an interposing library), but the target has no GOT entry for it and never uses its own "+
		"definition directly: the patch cannot know which one the code it replaces would use", ErrBinding, name)
}

func (b *builder) noteBinding(what string) {
	if !slices.Contains(b.rep.Bindings, what) {
		b.rep.Bindings = append(b.rep.Bindings, what)
	}
}

// resolve decides where the symbol of relocation r of object o lives:
// in the patch (placing what it needs) or in the target.
func (b *builder) resolve(o *object, r rel) (dest, error) {
	rf, err := o.refOf(r)
	if err != nil {
		return dest{}, err
	}
	s := rf.sym
	patch := func(p *piece, name string) dest { return dest{name: name, base: ulp.BasePatch, p: p, add: s.Value} }
	switch rf.kind {
	case refGOTBase:
		b.usesGOTBase = true
		return dest{name: gotBaseName, gotBase: true}, nil
	case refFunc:
		fu := rf.fu
		_, inOrig := b.orig.funcs[fu.key]
		if !inOrig && fu.local {
			// A "new" static the target already has from this unit is
			// one the original objects lack: a copy beside it would
			// leave the target's other callers on the old code.
			if ts, err := b.t.lookup(fu.name, true, o.file, 0); err == nil {
				return dest{}, fmt.Errorf("%w: static %s of %s is in the target (%#x) but in no original object: pass the original object that defines it",
					ErrUnresolved, fu.name, o.file, ts.value)
			}
		}
		if b.replace[fu] || !inOrig {
			if !inOrig && !b.placedFuncs[fu] {
				b.rep.New = append(b.rep.New, fu.name)
			}
			b.placeFunc(fu)
			return patch(b.pieces[o][rf.sec], fu.name), nil
		}
		if rf.sec == fu.secs[0] {
			ts, err := b.t.lookup(fu.name, fu.local, o.file, fu.sym.Size)
			if err == nil {
				return b.bindTarget(fu.name, ts, fu.sym.Value, s)
			}
			if !fu.local || !errors.Is(err, ErrUnresolved) {
				return dest{}, err
			}
		}
		// An unchanged static function the target has no symbol for
		// (or a split part of one): carry a copy.
		if !b.placedFuncs[fu] {
			b.rep.Copied = append(b.rep.Copied, fu.name)
		}
		b.placeFunc(fu)
		return patch(b.pieces[o][rf.sec], fu.name), nil
	case refData:
		d := rf.d
		sec := o.f.Sections[rf.sec]
		od, inOrig := b.orig.data[d.key]
		ts, lerr := b.t.lookup(d.name, d.local, o.file, d.sym.Size)
		if sec.Flags&elf.SHF_WRITE != 0 {
			if lerr == nil {
				return b.bindTarget(d.name, ts, d.sym.Value, s)
			}
			if inOrig || !errors.Is(lerr, ErrUnresolved) {
				return dest{}, lerr
			}
			for _, other := range o.secObjs[rf.sec] {
				if _, ok := b.orig.data[other.key]; ok {
					return dest{}, fmt.Errorf("%w: %s holds the new %s and the existing %s; compile with -fdata-sections",
						ErrFlags, sec.Name, d.name, other.name)
				}
			}
			reg := regData
			if sec.Type == elf.SHT_NOBITS {
				reg = regBSS
			}
			if _, seen := b.pieces[o][rf.sec]; !seen {
				b.rep.NewData = append(b.rep.NewData, d.name)
			}
			return patch(b.place(o, rf.sec, reg), d.name), nil
		}
		if inOrig && lerr == nil {
			oc, err1 := od.obj.content(od.sec, int64(od.sym.Value), 0)
			fc, err2 := o.content(rf.sec, int64(d.sym.Value), 0)
			if err1 == nil && err2 == nil && oc == fc {
				return b.bindTarget(d.name, ts, d.sym.Value, s)
			}
		}
		return patch(b.copyRodata(o, rf.sec), d.name), nil
	case refAnon:
		sec := o.f.Sections[rf.sec]
		if sec.Flags&elf.SHF_WRITE != 0 {
			return dest{}, fmt.Errorf("%w: anonymous writable data in %s of %s", ErrUnsupported, sec.Name, o.name)
		}
		return patch(b.copyRodata(o, rf.sec), sec.Name), nil
	}
	// refExtern
	ts, err := b.t.lookup(s.Name, false, "", 0)
	if err == nil {
		return b.bindTarget(s.Name, ts, 0, s)
	}
	if slot, ok := b.t.gotSlot[s.Name]; ok && errors.Is(err, ErrUnresolved) {
		return dest{name: s.Name, imported: true, slot: b.t.off(slot)}, nil
	}
	return dest{}, err
}

func (b *builder) copyRodata(o *object, sec int) *piece {
	k := fmt.Sprintf("%s:%d", o.name, sec)
	if !b.placedRodata[k] {
		b.placedRodata[k] = true
		b.rep.Rodata = append(b.rep.Rodata, o.f.Sections[sec].Name)
	}
	return b.place(o, sec, regRodata)
}

// plan resolves every relocation of a piece and notes the GOT slots and
// veneers they need.
func (b *builder) plan(p *piece) error {
	o := p.obj
	for _, r := range o.relocs[p.sec] {
		if skipReloc(b.arch, r.typ) {
			continue
		}
		d, err := b.resolve(o, r)
		if err != nil {
			return fmt.Errorf("%s: %w", o.f.Sections[p.sec].Name, err)
		}
		kind, nt := classify(b.arch, r.typ, d.gotBase)
		pl := planned{r: r, d: d, kind: kind, newType: nt}
		switch {
		case d.gotBase && kind != kGOTBase:
			return fmt.Errorf("%w: %s: relocation %s against %s", ErrUnsupported, o.f.Sections[p.sec].Name, typeName(b.arch, r.typ), gotBaseName)
		case kind == kGOT || kind == kGOTBrel:
			if !d.imported {
				b.slot(d)
			}
			if kind == kGOTBrel {
				b.usesGOTBase = true
			}
		case kind == kPlain && (d.imported || d.base == ulp.BaseTarget) && p.region == regCode &&
			isBranch(b.arch, r.typ, o.data(p.sec), r.off):
			// A call or jump to the target reaches it through a veneer:
			// a direct branch would have to be within its short range.
			extra, err := branchExtra(b.arch, r, o.data(p.sec))
			if err != nil {
				return fmt.Errorf("%s: branch to %s: %w", o.f.Sections[p.sec].Name, d.name, err)
			}
			if !d.imported && extra == 0 && !b.t.landingPad(d.sym) {
				// The veneer's BR would fault on the target's
				// BTI-guarded page: branch to a copy in the patch.
				if d, err = b.copyForBranch(o, r); err != nil {
					return fmt.Errorf("%s: %w", o.f.Sections[p.sec].Name, err)
				}
				pl.d = d
				break
			}
			v := veneer{imported: d.imported, slot: d.slot, arm: armState(b.arch, r.typ)}
			if !d.imported {
				// The slot holds where the branch went: the function
				// plus any offset the addend carried past the bias.
				fd := d
				fd.sym += uint64(extra)
				v.slot = uint64(b.slot(fd))
			} else if extra != 0 {
				return fmt.Errorf("%w: %s: branch to %s%+d, an offset into a function the target imports",
					ErrUnsupported, o.f.Sections[p.sec].Name, d.name, extra)
			}
			i, ok := b.venIdx[v]
			if !ok {
				i = len(b.veneers)
				b.venIdx[v] = i
				b.veneers = append(b.veneers, v)
			}
			pl.kind, pl.ven = kVeneer, i
			pl.r.addend -= extra // RELA: only the bias remains (ARM's extra is always 0)
		case d.imported:
			return fmt.Errorf("%w: %s: %s refers to %s, which the target imports, directly (not through the GOT)",
				ErrUnsupported, o.f.Sections[p.sec].Name, typeName(b.arch, r.typ), d.name)
		}
		p.relocs = append(p.relocs, pl)
	}
	return nil
}

// copyForBranch resolves the destination of branch r to a copy of the
// (unchanged) function in the patch, for a target function the veneer
// cannot reach: a static of an arm64 BTI target without a landing pad.
func (b *builder) copyForBranch(o *object, r rel) (dest, error) {
	rf, err := o.refOf(r)
	if err != nil {
		return dest{}, err
	}
	if rf.kind != refFunc {
		return dest{}, fmt.Errorf("%w: a branch to %s, which starts without a BTI landing pad on a BTI-guarded target and is in no object to copy",
			ErrUnsupported, rf.sym.Name)
	}
	if !b.placedFuncs[rf.fu] {
		b.rep.Copied = append(b.rep.Copied, rf.fu.name)
	}
	b.placeFunc(rf.fu)
	return dest{name: rf.fu.name, base: ulp.BasePatch, p: b.pieces[o][rf.sec], add: rf.sym.Value}, nil
}

func (b *builder) slot(d dest) int {
	if i, ok := b.slotIdx[d.id()]; ok {
		return i
	}
	b.slotIdx[d.id()] = len(b.slots)
	b.slots = append(b.slots, d)
	return len(b.slots) - 1
}

func align(n, a uint64) uint64 {
	if a <= 1 {
		return n
	}
	return (n + a - 1) / a * a
}

func (b *builder) ptrSize() uint64 {
	if b.arch == ulp.ARM {
		return 4
	}
	return 8
}

// layout assigns every piece its offset and fills Code, Data and BSS.
func (b *builder) layout(bundle *ulp.Bundle) {
	var code []byte
	fill := byte(0)
	if b.arch == ulp.AMD64 {
		fill = 0xcc // int3
	}
	put := func(p *piece) {
		s := p.obj.f.Sections[p.sec]
		a := max(s.Addralign, 4)
		for uint64(len(code)) < align(uint64(len(code)), a) {
			code = append(code, fill)
		}
		p.off = uint64(len(code))
		code = append(code, p.obj.data(p.sec)...)
	}
	for _, reg := range []region{regCode, regRodata} {
		for _, p := range b.queue {
			if p.region == reg {
				put(p)
			}
		}
	}
	code = append(code, make([]byte, align(uint64(len(code)), 16)-uint64(len(code)))...)
	b.veneerStart = uint64(len(code))
	for _, v := range b.veneers {
		code = append(code, veneerCode(b.arch, v.arm)...)
	}
	code = append(code, make([]byte, align(uint64(len(code)), b.ptrSize())-uint64(len(code)))...)
	b.gotStart = uint64(len(code))
	code = append(code, make([]byte, uint64(len(b.slots))*b.ptrSize())...)

	var data []byte
	var bss uint64
	hasData := false
	for _, p := range b.queue {
		if p.region == regData || p.region == regBSS {
			hasData = true
		}
	}
	if hasData {
		code = append(code, make([]byte, align(uint64(len(code)), dataAlign)-uint64(len(code)))...)
	}
	base := uint64(len(code))
	for _, p := range b.queue {
		if p.region == regData {
			s := p.obj.f.Sections[p.sec]
			data = append(data, make([]byte, align(uint64(len(data)), s.Addralign)-uint64(len(data)))...)
			p.off = base + uint64(len(data))
			data = append(data, p.obj.data(p.sec)...)
		}
	}
	end := uint64(len(data))
	for _, p := range b.queue {
		if p.region == regBSS {
			s := p.obj.f.Sections[p.sec]
			end = align(end, s.Addralign)
			p.off = base + end
			end += s.Size
		}
	}
	bss = end - uint64(len(data))
	bundle.Code, bundle.Data, bundle.BSS = code, data, bss
}

// contained reports whether relocation r of piece p, which refers to the
// patch itself, cannot hand a pointer into the patch to the process: a
// direct call or branch, or a PC-relative entry of a read-only jump table
// (an offset the code adds to the table's own address before jumping).
// Everything else (a lea of a string literal, the address of a patch
// function or variable) may be stored by the process and outlive a
// revert.
func (b *builder) contained(p *piece, r rel) bool {
	if p.region == regCode {
		return isBranch(b.arch, r.typ, p.obj.data(p.sec), r.off)
	}
	if p.region != regRodata {
		return false
	}
	switch b.arch {
	case ulp.AMD64:
		return r.typ == uint32(elf.R_X86_64_PC32)
	case ulp.ARM64:
		return r.typ == uint32(elf.R_AARCH64_PREL32)
	case ulp.ARM:
		return r.typ == uint32(elf.R_ARM_REL32)
	}
	return false
}

// jumpTable reports whether p is read-only data holding only a jump
// table (PC-relative entries into code): code takes its address only to
// index it and jump, never to store it.
func (b *builder) jumpTable(p *piece) bool {
	if p == nil || p.region != regRodata {
		return false
	}
	rs := p.obj.relocs[p.sec]
	if len(rs) == 0 {
		return false
	}
	for _, r := range rs {
		if !isPCRel32(b.arch, r.typ) || r.sym < 0 || r.sym >= len(p.obj.syms) {
			return false
		}
		sec, ok := p.obj.section(p.obj.syms[r.sym].Section)
		if !ok || sec.Flags&elf.SHF_EXECINSTR == 0 {
			return false
		}
	}
	return true
}

// emit writes the relocations of every piece, the veneers and the GOT,
// and decides the bundle's NoEscape.
func (b *builder) emit(bundle *ulp.Bundle) error {
	var escapes []string
	img := func(off uint64) []byte {
		if off < uint64(len(bundle.Code)) {
			return bundle.Code[off:]
		}
		return bundle.Data[off-uint64(len(bundle.Code)):]
	}
	add := func(r ulp.Reloc) error {
		w, err := ulp.RelocWidth(b.arch, r.Type)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		_ = w
		bundle.Relocs = append(bundle.Relocs, r)
		b.rep.Relocs[typeName(b.arch, r.Type)]++
		if r.Base == ulp.BaseTarget {
			b.rep.ToTarget++
		} else {
			b.rep.ToPatch++
		}
		return nil
	}
	for _, p := range b.queue {
		secName := p.obj.f.Sections[p.sec].Name
		for _, pl := range p.relocs {
			r := ulp.Reloc{Offset: p.off + pl.r.off, Type: pl.r.typ, Addend: pl.r.addend}
			if w, err := ulp.RelocWidth(b.arch, pl.newType); err == nil && pl.r.off+uint64(w) > p.obj.f.Sections[p.sec].Size {
				return fmt.Errorf("%w: %s: relocation at %#x runs past the section", ErrInput, secName, pl.r.off)
			}
			switch pl.kind {
			case kGOTBase:
				r.Type, r.Base, r.Sym = pl.newType, ulp.BasePatch, b.gotStart
			case kGOTBrel:
				if pl.r.off+4 > p.obj.f.Sections[p.sec].Size {
					return fmt.Errorf("%w: %s: relocation at %#x runs past the section", ErrInput, secName, pl.r.off)
				}
				field := img(r.Offset)[:4]
				if pl.d.imported {
					// The target's GOT entry, from the patch's GOT origin:
					// REL32 gives entry - here; here - origin is known now.
					v := binary.LittleEndian.Uint32(field) + uint32(r.Offset-b.gotStart)
					binary.LittleEndian.PutUint32(field, v)
					r.Type, r.Base, r.Sym = uint32(elf.R_ARM_REL32), ulp.BaseTarget, pl.d.slot
					break
				}
				slot := b.gotStart + uint64(b.slotIdx[pl.d.id()])*b.ptrSize()
				v := binary.LittleEndian.Uint32(field) + uint32(slot-b.gotStart)
				binary.LittleEndian.PutUint32(field, v)
				continue
			case kGOT:
				r.Type = pl.newType
				if pl.d.imported {
					r.Base, r.Sym = ulp.BaseTarget, pl.d.slot
				} else {
					r.Base, r.Sym = ulp.BasePatch, b.gotStart+uint64(b.slotIdx[pl.d.id()])*b.ptrSize()
				}
			case kVeneer:
				r.Base, r.Sym = ulp.BasePatch, b.veneerStart+uint64(pl.ven)*veneerSize(b.arch)
				if b.arch == ulp.ARM && !b.veneers[pl.ven].arm {
					r.Sym |= 1 // a Thumb veneer
				}
			default:
				r.Base, r.Sym = pl.d.base, pl.d.value()
				if r.Base == ulp.BasePatch && !b.contained(p, pl.r) && !b.jumpTable(pl.d.p) {
					escapes = append(escapes, fmt.Sprintf("%s+%#x takes the address of %s", secName, pl.r.off, pl.d.name))
				}
			}
			if err := add(r); err != nil {
				return fmt.Errorf("%s (relocation against %s): %w", secName, pl.d.name, err)
			}
		}
	}
	for i, v := range b.veneers {
		base, slot := ulp.BaseTarget, v.slot
		if !v.imported {
			base, slot = ulp.BasePatch, b.gotStart+v.slot*b.ptrSize()
		}
		for _, r := range veneerRelocs(b.arch, b.veneerStart+uint64(i)*veneerSize(b.arch), base, slot) {
			if err := add(r); err != nil {
				return err
			}
		}
	}
	for i, d := range b.slots {
		r := ulp.Reloc{Offset: b.gotStart + uint64(i)*b.ptrSize(), Type: absType(b.arch), Base: d.base, Sym: d.value()}
		if err := add(r); err != nil {
			return err
		}
		if d.base == ulp.BasePatch {
			escapes = append(escapes, fmt.Sprintf("a GOT slot holds the address of %s", d.name))
		}
	}
	bundle.NoEscape, b.rep.NoEscape = len(escapes) == 0, len(escapes) == 0
	b.rep.Escapes = escapes
	return nil
}

// funcEntry builds the Func that redirects fu's original in the target.
func (b *builder) funcEntry(fu *funcUnit, bundle *ulp.Bundle) (ulp.Func, error) {
	size := fu.sym.Size // the original's: the fix may have changed it
	if ofu := b.orig.funcs[fu.key]; ofu != nil {
		size = ofu.sym.Size
	}
	ts, err := b.t.lookup(fu.name, fu.local, fu.obj.file, size)
	if err != nil {
		return ulp.Func{}, fmt.Errorf("replaced function: %w", err)
	}
	if ts.typ != elf.STT_FUNC || ts.size == 0 {
		return ulp.Func{}, fmt.Errorf("%w: %s is not a function with a size in the target's %s (type %v, size %d)",
			ErrUnresolved, fu.name, ts.table, ts.typ, ts.size)
	}
	thumb := b.arch == ulp.ARM && ts.value&1 == 1
	if b.arch == ulp.ARM && thumb != (fu.sym.Value&1 == 1) {
		return ulp.Func{}, fmt.Errorf("%w: %s: the target and the fix differ in ARM/Thumb state; build with the target's -marm/-mthumb",
			ErrUnsupported, fu.name)
	}
	addr := ts.value
	if thumb {
		addr &^= 1 // only a Thumb symbol's bit 0 is not part of the address
	}
	f := ulp.Func{Symbol: fu.name, Target: b.t.off(addr), Size: ts.size, Thumb: thumb}
	if ts.size > ulp.MaxFuncSize {
		return ulp.Func{}, fmt.Errorf("%w: %s is %d bytes in the target, the agent checks at most %d",
			ErrUnsupported, fu.name, ts.size, ulp.MaxFuncSize)
	}
	tb, err := b.t.read(addr, ts.size)
	if err != nil {
		return ulp.Func{}, fmt.Errorf("%s: %w", fu.name, err)
	}
	p := b.pieces[fu.obj][fu.secs[0]]
	keep, skip, err := ulp.EntryPlan(b.arch, tb, bundle.Code[p.off:])
	if err != nil {
		return ulp.Func{}, fmt.Errorf("%s: %w", fu.name, err)
	}
	f.Keep, f.New = uint64(keep), p.off+uint64(skip)
	near := f.Keep + uint64(ulp.NearSize(b.arch, thumb))
	if f.Size < near {
		return ulp.Func{}, fmt.Errorf("%w: %s is %d bytes in the target, a trampoline needs %d (%d kept + %d)",
			ErrTooShort, fu.name, f.Size, near, f.Keep, near-f.Keep)
	}
	f.Check = ulp.CheckSum(tb)
	// The agent guards max(Guard, what it overwrites): the short form
	// unless a branch of the function lands in the bytes.
	f.Guard = near
	in, why, err := b.branchIn(fu, tb, f, thumb)
	if err != nil {
		return ulp.Func{}, err
	}
	if why != "" {
		f.Guard = f.Size
		b.rep.Guarded = append(b.rep.Guarded, fmt.Sprintf("%s: %s: no thread may be anywhere in it while the trampoline is written", fu.name, why))
	}
	b.branchAt[fu.name] = in
	return f, nil
}

// branchIn decides whether fu's original, tb as linked in the target,
// may jump into the bytes a trampoline overwrites (after f.Keep, up to
// the far form): then it says why (and returns the first such offset,
// 0 when unknown). A jump back from the function's cold part into those
// bytes is refused: the guard cannot cover a thread there.
func (b *builder) branchIn(fu *funcUnit, tb []byte, f ulp.Func, thumb bool) (uint64, string, error) {
	lo, hi := f.Keep, min(f.Size, f.Keep+uint64(ulp.FarSize(b.arch, thumb, f.Target+f.Keep)))
	inside := func(ts []uint64) (uint64, bool) {
		for _, t := range ts {
			if t > lo && t < hi {
				return t, true
			}
		}
		return 0, false
	}
	fl := codeFlow(b.arch, thumb, tb)
	if ofu := b.orig.funcs[fu.key]; ofu != nil {
		if off, found, ok := intoOwnEntry(ofu, hi); ok && found {
			return 0, "", fmt.Errorf("%w: %s: its cold part jumps back to entry+%d, into the bytes a trampoline overwrites",
				ErrUnsupported, fu.name, off)
		}
		tables, ok := tableTargets(ofu)
		if !ok {
			return 0, "a jump table whose targets are not known", nil
		}
		if t, found := inside(tables); found {
			return t, fmt.Sprintf("a jump table entry lands at entry+%d", t), nil
		}
		if len(tables) > 0 {
			fl.opaque = ""
		}
	}
	if t, found := inside(fl.targets); found {
		return t, fmt.Sprintf("a branch of its own lands at entry+%d, inside the %d bytes a trampoline may overwrite", t, hi), nil
	}
	if fl.opaque != "" {
		return 0, fl.opaque, nil
	}
	return 0, "", nil
}
