package patchbuild

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"sort"
)

// build is the union of one build's objects.
type build struct {
	objs  []*object
	funcs map[string]*funcUnit
	data  map[string]*dataObj
	order []*funcUnit // functions in object and section order
}

func newBuild(objs []*object, which string) (*build, error) {
	b := &build{objs: objs, funcs: map[string]*funcUnit{}, data: map[string]*dataObj{}}
	for _, o := range objs {
		var fus []*funcUnit
		for _, fu := range o.funcs {
			fus = append(fus, fu)
		}
		sort.Slice(fus, func(i, j int) bool { return fus[i].secs[0] < fus[j].secs[0] })
		for _, fu := range fus {
			if other, dup := b.funcs[fu.key]; dup {
				return nil, fmt.Errorf("%w: %s build: %s is defined in %s and %s", ErrInput, which, fu.name, other.obj.name, o.name)
			}
			b.funcs[fu.key] = fu
			b.order = append(b.order, fu)
		}
		for k, d := range o.objs {
			if _, dup := b.data[k]; !dup {
				b.data[k] = d
			}
		}
	}
	return b, nil
}

// bytesOf returns a data object's initial bytes (nil for .bss).
func (d *dataObj) bytesOf() []byte {
	s := d.obj.f.Sections[d.sec]
	if s.Type == elf.SHT_NOBITS {
		return nil
	}
	b := d.obj.data(d.sec)
	if d.sym.Value+d.sym.Size > uint64(len(b)) {
		return nil
	}
	return b[d.sym.Value : d.sym.Value+d.sym.Size]
}

func (d *dataObj) kind() string {
	if d.local {
		return "static"
	}
	return "global"
}

// checkData refuses a global or static whose size changed and warns
// about changed initial values (the patch does not rewrite live data).
func checkData(orig, fixed *build, rep *Report) error {
	keys := make([]string, 0, len(fixed.data))
	for k := range fixed.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	n := 0
	for _, k := range keys {
		f := fixed.data[k]
		o, ok := orig.data[k]
		if !ok {
			continue
		}
		n++
		if o.sym.Size != f.sym.Size {
			return fmt.Errorf("%w: %s %s changed size from %d to %d bytes", ErrLayout, f.kind(), f.name, o.sym.Size, f.sym.Size)
		}
		ow := o.obj.f.Sections[o.sec].Flags&elf.SHF_WRITE != 0
		fw := f.obj.f.Sections[f.sec].Flags&elf.SHF_WRITE != 0
		if ow != fw {
			return fmt.Errorf("%w: %s %s changed between writable and read-only", ErrLayout, f.kind(), f.name)
		}
		if fw && !bytes.Equal(o.bytesOf(), f.bytesOf()) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("initial value of %s %s changed; a live patch keeps the running value", f.kind(), f.name))
		}
	}
	rep.Checks = append(rep.Checks, fmt.Sprintf("sizes of %d globals and statics present in both builds compared", n))
	return nil
}

// structLayout is one struct type's size and member offsets.
type structLayout struct {
	size    int64
	members map[string]int64
	order   []string
}

// structs collects the named struct types of a build's DWARF; ok is
// false when an object has no DWARF.
func structs(b *build) (map[string]*structLayout, bool, error) {
	out := map[string]*structLayout{}
	for _, o := range b.objs {
		if o.f.Section(".debug_info") == nil {
			return nil, false, nil
		}
		d, err := o.f.DWARF()
		if err != nil {
			return nil, false, fmt.Errorf("%w: object %s: DWARF: %w", ErrInput, o.name, err)
		}
		r := d.Reader()
		for {
			e, err := r.Next()
			if err != nil {
				return nil, false, fmt.Errorf("%w: object %s: DWARF: %w", ErrInput, o.name, err)
			}
			if e == nil {
				break
			}
			if e.Tag != dwarf.TagStructType {
				continue
			}
			name, _ := e.Val(dwarf.AttrName).(string)
			size, hasSize := e.Val(dwarf.AttrByteSize).(int64)
			if decl, _ := e.Val(dwarf.AttrDeclaration).(bool); decl || name == "" || !hasSize || !e.Children {
				if e.Children {
					r.SkipChildren()
				}
				continue
			}
			sl := &structLayout{size: size, members: map[string]int64{}}
			for {
				c, err := r.Next()
				if err != nil {
					return nil, false, fmt.Errorf("%w: object %s: DWARF: %w", ErrInput, o.name, err)
				}
				if c == nil || c.Tag == 0 {
					break
				}
				if c.Tag == dwarf.TagMember {
					mn, _ := c.Val(dwarf.AttrName).(string)
					off, _ := c.Val(dwarf.AttrDataMemberLoc).(int64)
					off *= 8
					if bo, ok := c.Val(dwarf.AttrDataBitOffset).(int64); ok {
						off = bo
					}
					sl.members[mn] = off
					sl.order = append(sl.order, mn)
				}
				if c.Children {
					r.SkipChildren()
				}
			}
			if _, seen := out[name]; !seen {
				out[name] = sl
			}
		}
	}
	return out, true, nil
}

// checkStructs compares struct layouts by name when both builds carry
// DWARF.
func checkStructs(orig, fixed *build, rep *Report) error {
	os, okO, err := structs(orig)
	if err != nil {
		return err
	}
	fs, okF, err := structs(fixed)
	if err != nil {
		return err
	}
	if !okO || !okF {
		rep.Checks = append(rep.Checks, "struct layouts not compared: build both with -g to compare them")
		return nil
	}
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	n := 0
	var errs []error
	for _, name := range names {
		f := fs[name]
		o, ok := os[name]
		if !ok {
			continue
		}
		n++
		for _, m := range o.order {
			fo, ok := f.members[m]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%w: struct %s lost member %s", ErrLayout, name, m))
			case fo != o.members[m]:
				errs = append(errs, fmt.Errorf("%w: struct %s member %s moved from byte %d to %d", ErrLayout, name, m, o.members[m]/8, fo/8))
			}
		}
		for _, m := range f.order {
			if _, ok := o.members[m]; !ok {
				errs = append(errs, fmt.Errorf("%w: struct %s gained member %s at byte %d", ErrLayout, name, m, f.members[m]/8))
			}
		}
		if f.size != o.size {
			errs = append(errs, fmt.Errorf("%w: struct %s changed size from %d to %d bytes", ErrLayout, name, o.size, f.size))
		}
		if len(errs) > 0 {
			return errs[0]
		}
	}
	rep.Checks = append(rep.Checks, fmt.Sprintf("layouts of %d structs present in both builds compared (DWARF)", n))
	return errors.Join(errs...)
}
