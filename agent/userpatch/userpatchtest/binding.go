package userpatchtest

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/graft-dev/graft/tools/fleet/patchbuild"
)

// BindingDir holds libbind-<random>.so, libpre.so (an LD_PRELOAD
// library), the program bindprog, and bundles whose code must use the
// same storage and functions as the code they replace
// (testdata/binding): bind.ulp (libbind's bd_tick, which reaches a
// variable copied into the program, a function the program interposes
// and one LD_PRELOAD interposes) and putchar.ulp (glibc's putchar
// writing to stdout, which the program replaced).
const BindingDir = "binding"

// Files and outputs of BindingDir.
const (
	BindProg      = "bindprog"    // bindprog [stdout]
	BindPreload   = "libpre.so"   // LD_PRELOAD it: bd_pre returns 9
	BindBundle    = "bind.ulp"    // bd_tick: +10000, counts by 2
	PutcharBundle = "putchar.ulp" // putchar: 'a' → 'b'
	BindBefore    = "tick=709 "   // bd_name 7 (the program's), bd_pre 9 (preloaded)
	BindAfter     = "tick=10714 " // and bd_late 5, bound lazily on its first call
)

// buildBinding builds BindingDir under dir for goarch, with putchar.ulp
// against libc.
func buildBinding(ctx context.Context, goarch, dir, libc string) error {
	c, err := newCompiler(ctx, goarch, filepath.Join(dir, BindingDir))
	if err != nil {
		return err
	}
	src := filepath.Join(SourceDir(), BindingDir)
	id := make([]byte, 20)
	crand.Read(id)
	lib := "libbind-" + hex.EncodeToString(id[:4]) + ".so"
	libPath := filepath.Join(c.dir, lib)
	flags := []string{"-O2", "-fPIC", "-ffunction-sections", "-fdata-sections", "-fno-builtin"}
	for _, s := range [][]string{
		append(flags, "-shared", "-Wl,-z,lazy", "-Wl,--build-id=0x"+hex.EncodeToString(id), "-Wl,-soname,"+lib, "-o", libPath, filepath.Join(src, "libbind.c")),
		{"-O2", "-fPIC", "-shared", "-o", filepath.Join(c.dir, BindPreload), filepath.Join(src, "libpre.c")},
		{"-O2", "-fno-builtin", "-o", filepath.Join(c.dir, BindProg), filepath.Join(src, "bindprog.c"), "-L" + c.dir, "-l:" + lib, "-Wl,-rpath,$ORIGIN"},
	} {
		if err := c.run(s...); err != nil {
			return err
		}
	}
	for _, b := range []struct{ out, target, src, fix string }{
		{BindBundle, libPath, "libbind.c", "FIX_BIND"},
		{PutcharBundle, libc, "putchar.c", "FIX_PUTCHAR"},
	} {
		orig, fixed := filepath.Join(c.dir, "obj", b.fix+"-orig.o"), filepath.Join(c.dir, "obj", b.fix+".o")
		if err := c.run(append(flags, "-c", "-o", orig, filepath.Join(src, b.src))...); err != nil {
			return err
		}
		if err := c.run(append(flags, "-D"+b.fix, "-c", "-o", fixed, filepath.Join(src, b.src))...); err != nil {
			return err
		}
		bu, _, err := patchbuild.Build(patchbuild.Input{Target: b.target, Orig: []string{orig}, Fixed: []string{fixed}, Name: "binding-" + b.fix})
		if err != nil {
			return fmt.Errorf("userpatchtest: build %s: %w", b.out, err)
		}
		if err := write(filepath.Join(c.dir, b.out), bu); err != nil {
			return err
		}
	}
	return os.RemoveAll(filepath.Join(c.dir, "obj"))
}
