package patchbuild_test

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/tools/fleet/patchbuild"
)

// objdumpTargets lists the offsets from fn's entry that the disassembler
// (the arch's own binutils objdump) shows fn's instructions referring to
// ("<fn+0x2>"), in order.
func objdumpTargets(t *testing.T, tc toolchain, lib, fn string) []uint64 {
	t.Helper()
	out := tc.run(t, "objdump", "-d", "--no-show-raw-insn", lib)
	_, body, ok := strings.Cut(out, "<"+fn+">:\n")
	if !ok {
		t.Fatalf("objdump: no %s in %s", fn, lib)
	}
	body, _, _ = strings.Cut(body, "\n\n")
	re := regexp.MustCompile(`<` + regexp.QuoteMeta(fn) + `\+0x([0-9a-f]+)>`)
	var offs []uint64
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseUint(m[1], 16, 64)
		offs = append(offs, v)
	}
	return offs
}

func funcOf(t *testing.T, b *ulp.Bundle, name string) ulp.Func {
	t.Helper()
	for _, f := range b.Funcs {
		if f.Symbol == name {
			return f
		}
	}
	t.Fatalf("%s is not in the bundle: %+v", name, b.Funcs)
	return ulp.Func{}
}

// TestEntries builds testdata/entry.c at -Os, where gcc packs functions at
// any byte and puts loop heads right after the first instruction:
//   - en_odd sits at an odd address on amd64: its Target is exactly what
//     nm says (bit 0 used to be dropped on every arch, putting the
//     trampoline one byte early, over the previous function's ret);
//   - en_loop's own loop branches back into the bytes a trampoline
//     overwrites (amd64 entry+1, Thumb entry+2 after "push {r3, lr}",
//     arm64 entry+8 inside the 16-byte far form): its guard is the whole
//     function, and the branch found is the one objdump shows;
//   - en_odd and (at -O2, through its jump table) en_switch have no such
//     branch and keep the short guard.
func TestEntries(t *testing.T) {
	tests := []struct {
		name  string
		tc    toolchain
		flags []string
		loop  uint64 // where en_loop's branch lands
	}{
		{"amd64", toolchains[0], nil, 1},
		{"arm64", toolchains[1], nil, 8},
		{"arm thumb", toolchains[2], []string{"-mthumb"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.tc.need(t)
			dir := t.TempDir()
			flags := append([]string{"-Os"}, tt.flags...)
			lib := tt.tc.compile(t, dir, "entry.c", "libentry.so", flags...)
			orig := tt.tc.compile(t, dir, "entry.c", "orig.o", flags...)
			fixed := tt.tc.compile(t, dir, "entry.c", "fixed.o", append([]string{"-DFIX"}, flags...)...)
			b, rep, err := patchbuild.Build(patchbuild.Input{Name: "entry", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			checkRoundTrip(t, b)
			syms := tt.tc.nm(t, lib, false)

			odd := funcOf(t, b, "en_odd")
			want := syms["en_odd"]
			if tt.tc.arch == ulp.ARM {
				want &^= 1
			}
			if tt.tc.arch == ulp.AMD64 && want&1 == 0 {
				t.Fatalf("en_odd at %#x: the test needs it at an odd address", want)
			}
			if odd.Target != want {
				t.Errorf("en_odd target %#x, nm says %#x", odd.Target, want)
			}
			if got := ulp.CheckSum(fileBytes(t, lib, odd.Target, odd.Size)); string(got) != string(odd.Check) {
				t.Errorf("en_odd: check does not hash its %d bytes", odd.Size)
			}
			near := odd.Keep + uint64(ulp.NearSize(tt.tc.arch, odd.Thumb))
			if odd.Guard != near {
				t.Errorf("en_odd guard %d, want the short trampoline's %d", odd.Guard, near)
			}

			loop := funcOf(t, b, "en_loop")
			if loop.Guard != loop.Size {
				t.Errorf("en_loop guard %d, want the whole function (%d bytes)", loop.Guard, loop.Size)
			}
			var in uint64
			for _, f := range rep.Replaced {
				if f.Symbol == "en_loop" {
					in = f.BranchIn
				}
			}
			seen := objdumpTargets(t, tt.tc, lib, "en_loop")
			if in != tt.loop || !slices.Contains(seen, in) {
				t.Errorf("en_loop: branch into the trampoline bytes found at +%d, want +%d; objdump shows branches to %v", in, tt.loop, seen)
			}
			// Calls, branches and jump tables only: no pointer into the
			// patch can escape, its mapping may go after a revert.
			if !b.NoEscape || !rep.NoEscape || len(rep.Escapes) != 0 {
				t.Errorf("no-escape %v (report %v, escapes %q), want true", b.NoEscape, rep.NoEscape, rep.Escapes)
			}
			// en_odd is never guarded whole; Thumb's en_switch is, for its
			// TBB table (inline in the code, its targets are not decoded).
			if !slices.ContainsFunc(rep.Guarded, func(g string) bool { return strings.HasPrefix(g, "en_loop:") }) ||
				slices.ContainsFunc(rep.Guarded, func(g string) bool { return strings.HasPrefix(g, "en_odd:") }) {
				t.Errorf("guarded %q, want en_loop and not en_odd", rep.Guarded)
			}
		})
	}
	t.Run("amd64 jump table", func(t *testing.T) {
		tc := toolchains[0]
		tc.need(t)
		dir := t.TempDir()
		lib := tc.compile(t, dir, "entry.c", "libentry.so")
		orig := tc.compile(t, dir, "entry.c", "orig.o")
		fixed := tc.compile(t, dir, "entry.c", "fixed.o", "-DFIX")
		b, rep, err := patchbuild.Build(patchbuild.Input{Name: "entry", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		sw := funcOf(t, b, "en_switch")
		if sw.Guard != 5 {
			t.Errorf("en_switch guard %d, want 5: its jump table lands past the trampoline (guarded %q)", sw.Guard, rep.Guarded)
		}
	})
}

// TestBTIStatic: far.c's fix calls the static far_bump, which gcc starts
// without a landing pad (only direct calls reach it). In an arm64 library
// marked for BTI (-z force-bti) its code pages are guarded, and the
// veneer's BR would fault there: the builder branches to a copy of
// far_bump in the patch instead. It used to go through a veneer.
// Without the BTI mark the veneer stays.
func TestBTIStatic(t *testing.T) {
	tc := toolchains[1]
	tc.need(t)
	for _, bti := range []bool{true, false} {
		dir := t.TempDir()
		flags := []string{"-mbranch-protection=standard"}
		libFlags := flags
		if bti {
			libFlags = append(libFlags, "-Wl,-z,force-bti")
		}
		lib := tc.compile(t, dir, "far.c", "libfar.so", libFlags...)
		orig := tc.compile(t, dir, "far.c", "orig.o", flags...)
		fixed := tc.compile(t, dir, "far.c", "fixed.o", append([]string{"-DFIX"}, flags...)...)
		b, rep, err := patchbuild.Build(patchbuild.Input{Name: "far", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
		if err != nil {
			t.Fatalf("bti %v: Build: %v", bti, err)
		}
		checkRoundTrip(t, b)
		bump := tc.nm(t, lib, false)["far_bump"]
		copied := slices.Contains(rep.Copied, "far_bump")
		if copied != bti || hasTargetReloc(b, bump) == bti || (rep.Veneers == 0) != bti {
			t.Errorf("bti %v: far_bump copied %v, veneers %d, a relocation to it %v", bti, copied, rep.Veneers, hasTargetReloc(b, bump))
		}
	}
}
