package patchbuild_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/patchbuild"
)

// TestStaticsByUnit: the fix of testdata/statics.c changes the static
// st_helper only, and is compiled from a copy under another file name
// (as a patch tree often does). st_helper is matched by what identifies
// it in the target — name, the compilation unit the target's symbol
// table records, size — and replaced in place, so both its callers get
// the fix. It used to be matched by the fixed source's file name: it
// counted as a new function beside the old one and nothing was replaced.
// Against a target whose symbol table names another unit for it, the
// build is refused rather than patching another file's function.
func TestStaticsByUnit(t *testing.T) {
	for _, tc := range toolchains {
		t.Run(tc.arch, func(t *testing.T) {
			tc.need(t)
			dir := t.TempDir()
			src, err := os.ReadFile(filepath.Join("testdata", "statics.c"))
			if err != nil {
				t.Fatal(err)
			}
			renamed := filepath.Join(dir, "statics-fix-1234.c")
			if err := os.WriteFile(renamed, src, 0o644); err != nil {
				t.Fatal(err)
			}
			lib := tc.compile(t, dir, "statics.c", "libstatics.so")
			orig := tc.compile(t, dir, "statics.c", "orig.o")
			fixed := filepath.Join(dir, "fixed.o")
			tc.run(t, "gcc", append(append([]string{}, cflags...), "-DFIX", "-c", "-o", fixed, renamed)...)
			b, rep, err := patchbuild.Build(patchbuild.Input{Name: "statics", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			syms := tc.nm(t, lib, false)
			helper := ""
			for name := range syms {
				if len(name) >= len("st_helper") && name[:len("st_helper")] == "st_helper" {
					helper = name // gcc may name a clone st_helper.constprop.0
				}
			}
			if helper == "" {
				t.Fatalf("no st_helper in %s", lib)
			}
			if len(b.Funcs) != 1 || b.Funcs[0].Symbol != helper || b.Funcs[0].Target != syms[helper]&^1 {
				t.Errorf("replaced %+v, want %s at %#x", b.Funcs, helper, syms[helper])
			}
			if slices.Contains(rep.New, helper) || slices.Contains(rep.Copied, helper) {
				t.Errorf("%s travels as a copy beside the old one (new %v, copied %v)", helper, rep.New, rep.Copied)
			}

			// The target's symbol table says its st_helper is another
			// unit's: no match, and the build is refused.
			other := filepath.Join(dir, "other-unit.c")
			if err := os.WriteFile(other, src, 0o644); err != nil {
				t.Fatal(err)
			}
			otherLib := filepath.Join(dir, "libother.so")
			tc.run(t, "gcc", append(append([]string{}, cflags...), "-shared", "-Wl,--build-id=sha1", "-o", otherLib, other)...)
			_, _, err = patchbuild.Build(patchbuild.Input{Name: "statics", Target: otherLib, Orig: []string{orig}, Fixed: []string{fixed}})
			if !errors.Is(err, patchbuild.ErrUnresolved) {
				t.Fatalf("a static recorded under another unit: %v, want ErrUnresolved", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}
