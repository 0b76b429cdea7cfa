package patchbuild

import (
	"debug/elf"
	"fmt"

	"github.com/graft-dev/graft/manifest/ulp"
)

// Input names the files of a patch build by path.
type Input struct {
	Name   string   // the bundle's name, e.g. "glibc-atoi-base0"
	Target string   // the exact ELF build being patched
	Debug  string   // optional: its separate debug file (Debian -dbgsym, .debug)
	Orig   []string // relocatable objects of the original build
	Fixed  []string // relocatable objects of the fixed build
}

// Build opens the files Input names and calls BuildFiles.
func Build(in Input) (*ulp.Bundle, *Report, error) {
	var closers []*elf.File
	defer func() {
		for _, f := range closers {
			f.Close()
		}
	}()
	open := func(p, what string) (*elf.File, error) {
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrInput, what, p, err)
		}
		closers = append(closers, f)
		return f, nil
	}
	files := Files{Name: in.Name, TargetName: in.Target}
	var err error
	if files.Target, err = open(in.Target, "target"); err != nil {
		return nil, nil, err
	}
	if in.Debug != "" {
		if files.Debug, err = open(in.Debug, "debug file"); err != nil {
			return nil, nil, err
		}
	}
	objs := func(paths []string, what string) ([]Object, error) {
		var out []Object
		for _, p := range paths {
			f, err := open(p, what)
			if err != nil {
				return nil, err
			}
			out = append(out, Object{Name: p, File: f})
		}
		return out, nil
	}
	if files.Orig, err = objs(in.Orig, "original object"); err != nil {
		return nil, nil, err
	}
	if files.Fixed, err = objs(in.Fixed, "fixed object"); err != nil {
		return nil, nil, err
	}
	if len(files.Orig) == 0 || len(files.Fixed) == 0 {
		return nil, nil, fmt.Errorf("%w: want objects of both the original and the fixed build", ErrInput)
	}
	return BuildFiles(files)
}
