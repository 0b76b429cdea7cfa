package patchbuild

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/manifest/ulp"
)

// FuzzLoadObject feeds arbitrary bytes to the object parser (ELF headers,
// symbols, relocations, function sections, content keys): it must refuse
// or accept, never panic.
func FuzzLoadObject(f *testing.F) {
	f.Add([]byte("\x7fELF"))
	if _, err := exec.LookPath("gcc"); err == nil {
		dir := f.TempDir()
		o := filepath.Join(dir, "demo.o")
		if out, err := exec.Command("gcc", "-O2", "-fPIC", "-ffunction-sections", "-fdata-sections", "-g",
			"-DFIX_GREET", "-c", "-o", o, "testdata/demo.c").CombinedOutput(); err != nil {
			f.Fatalf("gcc: %v\n%s", err, out)
		}
		b, err := os.ReadFile(o)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			return
		}
		o, err := loadObject(Object{Name: "fuzz.o", File: ef}, ulp.AMD64, "")
		if err != nil {
			return
		}
		for _, fu := range o.funcs {
			_, _ = fu.signature()
		}
		_, _, _ = structs(&build{objs: []*object{o}})
	})
}
