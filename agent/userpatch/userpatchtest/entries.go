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

// EntriesDir holds the -Os test library libent-<random>.so, the program
// entprog using it, and one bundle per hard entry (testdata/entries):
// an odd address, a loop head inside the trampoline bytes, a change past
// byte 32, and (amd64) a syscall ending where the trampoline ends.
const EntriesDir = "entries"

// Files and outputs of EntriesDir.
const (
	EntProg    = "entprog"      // entprog [wait]
	EntOdd     = "ent-odd.ulp"  // ent_odd(3): 16 → 17
	EntLoop    = "ent-loop.ulp" // ent_loop(3): 0 → 42
	EntLong    = "ent-long.ulp" // ent_long, never called: its last bytes are checked
	EntWait    = "ent-wait.ulp" // ent_wait: pause with the syscall ending at entry+5 (amd64)
	EntBefore  = "odd=16 loop=0"
	EntOddFix  = "odd=17 loop=0"
	EntLoopFix = "odd=16 loop=42"
)

// buildEntries builds EntriesDir under dir for goarch.
func buildEntries(ctx context.Context, goarch, dir string) error {
	c, err := newCompiler(ctx, goarch, filepath.Join(dir, EntriesDir))
	if err != nil {
		return err
	}
	src := filepath.Join(SourceDir(), "entries")
	id := make([]byte, 20)
	crand.Read(id)
	lib := "libent-" + hex.EncodeToString(id[:4]) + ".so"
	flags := []string{"-Os", "-fPIC", "-ffunction-sections", "-fdata-sections"}
	libPath := filepath.Join(c.dir, lib)
	if err := c.run(append(flags, "-shared", "-Wl,--build-id=0x"+hex.EncodeToString(id), "-Wl,-soname,"+lib,
		"-o", libPath, filepath.Join(src, "libent.c"))...); err != nil {
		return err
	}
	if err := c.run("-O2", "-o", filepath.Join(c.dir, EntProg), filepath.Join(src, "entprog.c"),
		"-L"+c.dir, "-l:"+lib, "-lpthread", "-Wl,-rpath,$ORIGIN"); err != nil {
		return err
	}
	orig := filepath.Join(c.dir, "obj", "libent.o")
	if err := c.run(append(flags, "-c", "-o", orig, filepath.Join(src, "libent.c"))...); err != nil {
		return err
	}
	for _, b := range []struct{ out, fix string }{
		{EntOdd, "FIX_ODD"}, {EntLoop, "FIX_LOOP"}, {EntLong, "FIX_LONG"}, {EntWait, "FIX_WAIT"},
	} {
		if b.out == EntWait && goarch != "amd64" {
			continue
		}
		fixed := filepath.Join(c.dir, "obj", "libent-"+b.fix+".o")
		if err := c.run(append(flags, "-D"+b.fix, "-c", "-o", fixed, filepath.Join(src, "libent.c"))...); err != nil {
			return err
		}
		bu, _, err := patchbuild.Build(patchbuild.Input{Target: libPath, Orig: []string{orig}, Fixed: []string{fixed}, Name: "ent-" + b.fix})
		if err != nil {
			return fmt.Errorf("userpatchtest: build %s: %w", b.out, err)
		}
		if err := write(filepath.Join(c.dir, b.out), bu); err != nil {
			return err
		}
	}
	return os.RemoveAll(filepath.Join(c.dir, "obj"))
}
