package patchbuild_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/tools/fleet/patchbuild"
)

// toolchain is the Debian C toolchain for one arch.
type toolchain struct {
	arch   string
	prefix string // "" for the host gcc
}

var toolchains = []toolchain{
	{ulp.AMD64, ""},
	{ulp.ARM64, "aarch64-linux-gnu-"},
	{ulp.ARM, "arm-linux-gnueabihf-"},
}

// cflags are the flags docs/ulp.md requires.
var cflags = []string{"-O2", "-fPIC", "-ffunction-sections", "-fdata-sections"}

func (tc toolchain) need(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(tc.prefix + "gcc"); err != nil {
		t.Skipf("%sgcc not installed", tc.prefix)
	}
}

func (tc toolchain) run(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tc.prefix+tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s%s %s: %v\n%s", tc.prefix, tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// compile builds testdata/src into dir/out as an object (-c) or a shared
// library and returns its path.
func (tc toolchain) compile(t *testing.T, dir, src, out string, extra ...string) string {
	t.Helper()
	p := filepath.Join(dir, out)
	args := append(append([]string{}, cflags...), extra...)
	if strings.HasSuffix(out, ".so") {
		args = append(args, "-shared", "-Wl,--build-id=sha1")
	} else {
		args = append(args, "-c")
	}
	tc.run(t, "gcc", append(args, "-o", p, filepath.Join("testdata", src))...)
	return p
}

// nm returns the symbol values nm prints for an ELF (defined symbols).
func (tc toolchain) nm(t *testing.T, path string, dynamic bool) map[string]uint64 {
	t.Helper()
	args := []string{path}
	if dynamic {
		args = []string{"-D", path}
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(tc.run(t, "nm", args...), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(f[2], "@")
		m[name] = v
	}
	return m
}

// gotEntries returns, per symbol, the address of the GOT entry readelf
// shows a GLOB_DAT or JUMP_SLOT dynamic relocation filling.
func gotEntries(t *testing.T, tc toolchain, lib string) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	for _, line := range strings.Split(tc.run(t, "readelf", "-rW", lib), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !(strings.HasSuffix(f[2], "GLOB_DAT") || strings.HasSuffix(f[2], "JUMP_SLOT") || strings.HasSuffix(f[2], "JMP_SLOT")) {
			continue
		}
		v, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(f[4], "@")
		if _, seen := m[name]; !seen || strings.HasSuffix(f[2], "GLOB_DAT") {
			m[name] = v
		}
	}
	return m
}

// fileBytes reads n bytes at vaddr through the section headers (not the
// segments Build reads through).
func fileBytes(t *testing.T, path string, vaddr, n uint64) []byte {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, s := range f.Sections {
		if s.Type == elf.SHT_PROGBITS && vaddr >= s.Addr && vaddr+n <= s.Addr+s.Size {
			b, err := s.Data()
			if err != nil {
				t.Fatal(err)
			}
			return b[vaddr-s.Addr : vaddr-s.Addr+n]
		}
	}
	t.Fatalf("%s: no section holds %#x+%d", path, vaddr, n)
	return nil
}

// checkRoundTrip encodes and decodes the bundle.
func checkRoundTrip(t *testing.T, b *ulp.Bundle) {
	t.Helper()
	enc, err := b.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	dec, err := ulp.Decode(enc)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !reflect.DeepEqual(dec, b) {
		t.Fatalf("decoded bundle differs from the built one")
	}
}

func hasTargetReloc(b *ulp.Bundle, sym uint64) bool {
	for _, r := range b.Relocs {
		if r.Base == ulp.BaseTarget && r.Sym&^1 == sym {
			return true
		}
	}
	return false
}

func TestBuildDemo(t *testing.T) {
	for _, tc := range toolchains {
		t.Run(tc.arch, func(t *testing.T) {
			tc.need(t)
			dir := t.TempDir()
			lib := tc.compile(t, dir, "demo.c", "libdemo.so")
			orig := tc.compile(t, dir, "demo.c", "orig.o")
			fixed := tc.compile(t, dir, "demo.c", "fixed.o", "-DFIX_GREET")
			b, rep, err := patchbuild.Build(patchbuild.Input{Name: "demo-greet", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			syms := tc.nm(t, lib, false)
			if len(b.Funcs) != 1 || b.Funcs[0].Symbol != "demo_greet" {
				t.Fatalf("funcs %+v, want exactly demo_greet", b.Funcs)
			}
			f := b.Funcs[0]
			if f.Target != syms["demo_greet"] {
				t.Errorf("demo_greet target %#x, nm says %#x", f.Target, syms["demo_greet"])
			}
			if got := ulp.CheckSum(fileBytes(t, lib, f.Target, f.Size)); !bytes.Equal(got, f.Check) {
				t.Errorf("check of %d bytes at %#x does not hash the target's bytes", f.Size, f.Target)
			}
			if f.Thumb != (tc.arch == ulp.ARM) {
				t.Errorf("thumb %v on %s", f.Thumb, tc.arch)
			}
			// The fix reads counter (static: bound where it is) and calls
			// demo_name and demo_add and reads demo_global, which are
			// exported with default visibility: the process may bind them
			// elsewhere, so the patch goes through the target's own GOT
			// entries, as the library's code does.
			if !hasTargetReloc(b, syms["counter"]) {
				t.Errorf("no relocation resolves to counter at %#x", syms["counter"])
			}
			got := gotEntries(t, tc, lib)
			for _, name := range []string{"demo_name", "demo_add", "demo_global"} {
				if !hasTargetReloc(b, got[name]) || hasTargetReloc(b, syms[name]) {
					t.Errorf("%s: not bound through the target's GOT entry at %#x (definition %#x)", name, got[name], syms[name])
				}
			}
			// The new string literal travels in the patch's code; its
			// address is handed to snprintf, so the patch is not
			// no-escape (a pointer to the literal could be kept).
			if !bytes.Contains(b.Code, []byte("hello, fixed %s %d %d\x00")) {
				t.Errorf("the new string literal is not in the patch")
			}
			if b.NoEscape || len(rep.Escapes) == 0 {
				t.Errorf("no-escape %v with escapes %q, want false with the literal's reference", b.NoEscape, rep.Escapes)
			}
			if rep.GOTSlots != 0 {
				t.Errorf("%d GOT slots, want none (every symbol is reached through the target's GOT)", rep.GOTSlots)
			}
			if b.BSS < 4 || !reflect.DeepEqual(rep.NewData, []string{"greet_calls.0"}) {
				t.Errorf("bss %d new data %v, want greet_calls in the patch's BSS", b.BSS, rep.NewData)
			}
			if rep.Veneers != 3 {
				t.Errorf("%d veneers, want 3 (snprintf, demo_name and demo_add through the target's GOT)", rep.Veneers)
			}
			if b.Arch != tc.arch || b.Soname != "libdemo.so" {
				t.Errorf("arch %q soname %q", b.Arch, b.Soname)
			}
			id := tc.run(t, "readelf", "-n", lib)
			if !strings.Contains(id, rep.BuildID) || len(rep.BuildID) != 40 {
				t.Errorf("build id %s not in readelf -n", rep.BuildID)
			}
			checkRoundTrip(t, b)
			checkLinks(t, b)
		})
	}
}

// checkLinks links the bundle with ulp.Link for a target loaded at one
// address and the patch 1 MiB above it, and checks that every x86
// PC-relative relocation into the target lands on its symbol.
func checkLinks(t *testing.T, b *ulp.Bundle) {
	t.Helper()
	targetBase, patchBase := uint64(0x7f0000000000), uint64(0x7f0000100000)
	if b.Arch == ulp.ARM {
		targetBase, patchBase = 0x40000000, 0x40100000
	}
	img, err := ulp.Link(b, patchBase, targetBase, 4096)
	if err != nil {
		t.Fatalf("Link: %v", err)
	}
	if b.Arch != ulp.AMD64 {
		return
	}
	for _, r := range b.Relocs {
		if r.Base != ulp.BaseTarget || (r.Type != uint32(elf.R_X86_64_PC32) && r.Type != uint32(elf.R_X86_64_PLT32)) {
			continue
		}
		disp := int64(int32(binary.LittleEndian.Uint32(img[r.Offset:])))
		if got := uint64(int64(patchBase+r.Offset+4) + disp); got != targetBase+r.Sym {
			t.Errorf("relocation at %#x reaches %#x, want target+%#x", r.Offset, got, r.Sym)
		}
	}
}

func TestRefusals(t *testing.T) {
	type tcase struct {
		name    string
		origCC  []string // extra flags of the original object
		fixedCC []string
		fixedTC *toolchain // another toolchain for the fixed object
		want    error
		arches  []string // only on these (nil: all)
	}
	other := toolchains[1]
	cases := []tcase{
		{name: "nothing changed", want: patchbuild.ErrNoChange},
		{name: "global changed size", fixedCC: []string{"-DFIX_SIZE", "-DFIX_GREET"}, want: patchbuild.ErrLayout},
		{name: "struct member moved", origCC: []string{"-g"}, fixedCC: []string{"-g", "-DFIX_STRUCT"}, want: patchbuild.ErrLayout},
		{name: "too short", fixedCC: []string{"-DFIX_NOP"}, want: patchbuild.ErrTooShort, arches: []string{ulp.AMD64, ulp.ARM}},
		{name: "symbol missing in target", fixedCC: []string{"-DFIX_MISSING"}, want: patchbuild.ErrUnresolved},
		{name: "preemptible symbol without a GOT entry", fixedCC: []string{"-DFIX_BIND"}, want: patchbuild.ErrBinding},
		{name: "no function sections", fixedCC: []string{"-fno-function-sections", "-DFIX_GREET"}, want: patchbuild.ErrFlags},
		{name: "other arch", fixedTC: &other, want: patchbuild.ErrArch, arches: []string{ulp.AMD64, ulp.ARM}},
	}
	for _, tc := range toolchains {
		t.Run(tc.arch, func(t *testing.T) {
			tc.need(t)
			dir := t.TempDir()
			lib := tc.compile(t, dir, "demo.c", "libdemo.so")
			for i, c := range cases {
				if c.arches != nil && !strings.Contains(strings.Join(c.arches, ","), tc.arch) {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					ftc := tc
					if c.fixedTC != nil {
						ftc = *c.fixedTC
						ftc.need(t)
					}
					orig := tc.compile(t, dir, "demo.c", "o"+strconv.Itoa(i)+".o", c.origCC...)
					fixed := ftc.compile(t, dir, "demo.c", "f"+strconv.Itoa(i)+".o", c.fixedCC...)
					_, _, err := patchbuild.Build(patchbuild.Input{Name: "x", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
					if !errors.Is(err, c.want) {
						t.Fatalf("err = %v, want %v", err, c.want)
					}
					t.Logf("refused: %v", err)
				})
			}
		})
	}
}

func TestNoBuildID(t *testing.T) {
	tc := toolchains[0]
	tc.need(t)
	dir := t.TempDir()
	lib := filepath.Join(dir, "libnoid.so")
	tc.run(t, "gcc", append(append([]string{}, cflags...), "-shared", "-Wl,--build-id=none", "-o", lib, "testdata/demo.c")...)
	orig := tc.compile(t, dir, "demo.c", "orig.o")
	fixed := tc.compile(t, dir, "demo.c", "fixed.o", "-DFIX_GREET")
	_, _, err := patchbuild.Build(patchbuild.Input{Name: "x", Target: lib, Orig: []string{orig}, Fixed: []string{fixed}})
	if !errors.Is(err, patchbuild.ErrNoBuildID) {
		t.Fatalf("err = %v, want ErrNoBuildID", err)
	}
}

// TestDebianLibs patches the host's real glibc and OpenSSL builds.
func TestDebianLibs(t *testing.T) {
	tc := toolchains[0]
	tests := []struct {
		name, lib, src, fn string
		calls              []string // functions the fix calls in the target
		literal            string
	}{
		{name: "libc atoi", lib: "/lib/x86_64-linux-gnu/libc.so.6", src: "atoi.c", fn: "atoi", calls: []string{"strtol"}},
		{name: "libcrypto OpenSSL_version", lib: "/lib/x86_64-linux-gnu/libcrypto.so.3", src: "opensslversion.c",
			fn: "OpenSSL_version", literal: "OpenSSL 3.0 (graft live-patched)\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc.need(t)
			if _, err := os.Stat(tt.lib); err != nil {
				t.Skipf("%s: %v", tt.lib, err)
			}
			dir := t.TempDir()
			orig := tc.compile(t, dir, tt.src, "orig.o")
			fixed := tc.compile(t, dir, tt.src, "fixed.o", "-DFIX")
			b, _, err := patchbuild.Build(patchbuild.Input{Name: "fix-" + tt.fn, Target: tt.lib, Orig: []string{orig}, Fixed: []string{fixed}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			dyn := tc.nm(t, tt.lib, true)
			if len(b.Funcs) != 1 || b.Funcs[0].Symbol != tt.fn || b.Funcs[0].Target != dyn[tt.fn] {
				t.Fatalf("funcs %+v, want %s at %#x", b.Funcs, tt.fn, dyn[tt.fn])
			}
			f := b.Funcs[0]
			if got := ulp.CheckSum(fileBytes(t, tt.lib, f.Target, f.Size)); !bytes.Equal(got, f.Check) {
				t.Errorf("check does not hash the target's bytes")
			}
			for _, c := range tt.calls {
				if !hasTargetReloc(b, dyn[c]) {
					t.Errorf("no relocation resolves to %s at %#x: %+v", c, dyn[c], b.Relocs)
				}
			}
			if tt.literal != "" && !bytes.Contains(b.Code, []byte(tt.literal)) {
				t.Errorf("new literal not in the patch")
			}
			checkRoundTrip(t, b)
			checkLinks(t, b)
		})
	}
}
