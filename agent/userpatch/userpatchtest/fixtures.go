// Package userpatchtest builds the programs, libraries and bundles the
// live-patch tests use, for any of graft's architectures: a multi-threaded
// program using a test library (libgt), a program printing what glibc's
// atoi and OpenSSL's OpenSSL_version return, and bundles for both made by
// graft-fleet's patch builder from the C sources in agent/userpatch/testdata
// — plus bundles that must be refused (another build, wrong bytes, another
// arch). The host test runs them natively; the emulated-guest scenarios
// copy them into arm64 and armv7 guests.
package userpatchtest

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/graft-dev/graft/cross"
	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/tools/fleet/patchbuild"
)

// Libs names the real Debian libraries the fixtures patch, as host paths
// of the exact files the processes will map.
type Libs struct {
	Libc      string // libc.so.6
	Libcrypto string // libcrypto.so.3
}

// HostLibs are the build machine's own libraries (amd64).
func HostLibs() Libs {
	dir := "/lib/x86_64-linux-gnu"
	return Libs{Libc: filepath.Join(dir, "libc.so.6"), Libcrypto: filepath.Join(dir, "libcrypto.so.3")}
}

// Fixtures are the files of one architecture's scenario, all in Dir.
// File names are fixed so that a guest finds them by name.
type Fixtures struct {
	Dir    string
	GOARCH string
	// LibGT is the test library's file name and soname, libgt-<random>.so:
	// test runs side by side never see each other's library.
	LibGT string
}

// File names inside Fixtures.Dir.
const (
	HoldTrace  = "holdtrace"       // holdtrace PID: a debugger stand-in that stays attached
	GTProg     = "gtprog"          // gtprog N: N threads calling gt_value, prints v=...
	LibcProg   = "libcprog"        // prints atoi=... ssl=...
	GTBundle   = "gt.ulp"          // gt_value: x*3+1 → x*3+2
	AtoiBundle = "atoi.ulp"        // glibc atoi: base 10 → base 0
	SSLBundle  = "ssl.ulp"         // OpenSSL_version(0) → "graft-patched OpenSSL"
	OtherBuild = "other-build.ulp" // gt bundle with another build ID
	BadCheck   = "bad-check.ulp"   // gt bundle whose original-bytes hash is wrong
	OtherArch  = "other-arch.ulp"  // gt bundle claiming another arch
)

// EntryDir holds gtprog, libgt.so and gt.ulp built with entryFlags: the
// functions start with an instruction the trampoline must keep (x86-64
// endbr64, arm64 PACIASP or BTI c), or, on arm, are ARM-state code.
const EntryDir = "entry"

var entryFlags = map[string][]string{
	"amd64": {"-fcf-protection=full"},
	"arm64": {"-mbranch-protection=standard"},
	"arm":   {"-marm"},
}

// Outputs the programs print before and after the patches.
const (
	GTBefore   = "v=22"
	GTAfter    = "v=23"
	AtoiBefore = "atoi=0 "
	AtoiAfter  = "atoi=16 "
	SSLAfter   = "ssl=graft-patched OpenSSL"
)

// SourceDir is agent/userpatch/testdata, found from this file.
func SourceDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Build compiles the programs for goarch into dir and builds the bundles
// against libs (the libraries the target processes will map).
func Build(ctx context.Context, goarch, dir string, libs Libs) (*Fixtures, error) {
	c, err := newCompiler(ctx, goarch, dir)
	if err != nil {
		return nil, err
	}
	src := SourceDir()
	if err := c.gt(); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{"-O2", "-o", filepath.Join(dir, GTProg), filepath.Join(src, "gtprog.c"), "-L" + dir, "-l:" + c.lib, "-lpthread", "-Wl,-rpath,$ORIGIN"},
		{"-O2", "-fno-builtin", "-o", filepath.Join(dir, LibcProg), filepath.Join(src, "libcprog.c"), libs.Libcrypto},
		{"-O2", "-o", filepath.Join(dir, HoldTrace), filepath.Join(src, "holdtrace.c")},
	} {
		if err := c.run(s...); err != nil {
			return nil, err
		}
	}
	for _, b := range []struct{ out, target, src, name string }{
		{AtoiBundle, libs.Libc, "atoi", "glibc-atoi-base0"},
		{SSLBundle, libs.Libcrypto, "sslver", "openssl-version-graft"},
	} {
		if err := c.bundle(b.out, b.target, b.src, b.name); err != nil {
			return nil, err
		}
	}
	f := &Fixtures{Dir: dir, GOARCH: goarch, LibGT: c.lib}
	// The bundles that must be refused: the good one with another build
	// ID or a wrong original-bytes hash, and a real one for another arch.
	gt, err := f.Bundle(GTBundle)
	if err != nil {
		return nil, err
	}
	other := *gt
	other.BuildID = bytes.Repeat([]byte{0x5a}, len(gt.BuildID))
	bad := *gt
	bad.Funcs = append([]ulp.Func(nil), gt.Funcs...)
	bad.Funcs[0].Check = bytes.Repeat([]byte{0xee}, 32)
	for name, b := range map[string]*ulp.Bundle{OtherBuild: &other, BadCheck: &bad} {
		if err := write(filepath.Join(dir, name), b); err != nil {
			return nil, err
		}
	}
	otherArch := map[string]string{"amd64": "arm64", "arm64": "amd64", "arm": "arm64"}[goarch]
	oc, err := newCompiler(ctx, otherArch, filepath.Join(dir, "other-arch"))
	if err != nil {
		return nil, err
	}
	if err := oc.gt(); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(oc.dir, GTBundle), filepath.Join(dir, OtherArch)); err != nil {
		return nil, err
	}
	// The test library again, with the entry instructions the trampoline
	// must keep (endbr64; PACIASP/BTI) or in ARM state.
	ec, err := newCompiler(ctx, goarch, filepath.Join(dir, EntryDir))
	if err != nil {
		return nil, err
	}
	ec.extra = entryFlags[goarch]
	if err := ec.gt(); err != nil {
		return nil, err
	}
	if err := ec.run("-O2", "-o", filepath.Join(ec.dir, GTProg), filepath.Join(SourceDir(), "gtprog.c"), "-L"+ec.dir, "-l:"+ec.lib, "-lpthread", "-Wl,-rpath,$ORIGIN"); err != nil {
		return nil, err
	}
	if err := buildEntries(ctx, goarch, dir); err != nil {
		return nil, err
	}
	if err := buildBinding(ctx, goarch, dir, libs.Libc); err != nil {
		return nil, err
	}
	return f, nil
}

// compiler builds C for one arch into one directory.
type compiler struct {
	ctx     context.Context
	cc, dir string
	extra   []string // flags every compile gets
	lib     string   // the test library's file name and soname
}

func newCompiler(ctx context.Context, goarch, dir string) (*compiler, error) {
	cc, err := cross.CC(goarch)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "obj"), 0o755); err != nil {
		return nil, err
	}
	return &compiler{ctx: ctx, cc: cc, dir: dir}, nil
}

func (c *compiler) run(args ...string) error {
	args = append(append([]string{}, c.extra...), args...)
	cmd := exec.CommandContext(c.ctx, c.cc, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("userpatchtest: %s %s: %w: %s", c.cc, strings.Join(args, " "), err, out.String())
	}
	return nil
}

// object compiles testdata/<name>.c the way patch sources are built.
// The fixed sources have the same file names under testdata/fixed/, as a
// patched source tree would: the builder tells local symbols apart by
// their file.
func (c *compiler) object(name string, fixed bool) (string, error) {
	src, out := filepath.Join(SourceDir(), name+".c"), filepath.Join(c.dir, "obj", name+".o")
	if fixed {
		src, out = filepath.Join(SourceDir(), "fixed", name+".c"), filepath.Join(c.dir, "obj", name+"-fixed.o")
	}
	err := c.run("-O2", "-fPIC", "-ffunction-sections", "-fdata-sections", "-fno-builtin", "-c", "-o", out, src)
	return out, err
}

// gt builds libgt.so and its bundle.
func (c *compiler) gt() error {
	// A build ID of its own per fixture build: test runs side by side
	// never patch each other's processes.
	id := make([]byte, 20)
	crand.Read(id)
	c.lib = "libgt-" + hex.EncodeToString(id[:4]) + ".so"
	if err := c.run("-O2", "-fPIC", "-ffunction-sections", "-fdata-sections", "-shared", "-Wl,--build-id=0x"+hex.EncodeToString(id),
		"-Wl,-soname,"+c.lib, "-o", filepath.Join(c.dir, c.lib), filepath.Join(SourceDir(), "libgt.c")); err != nil {
		return err
	}
	return c.bundle(GTBundle, filepath.Join(c.dir, c.lib), "libgt", "gt-value-fix")
}

func (c *compiler) bundle(out, target, src, name string) error {
	o, err := c.object(src, false)
	if err != nil {
		return err
	}
	f, err := c.object(src, true)
	if err != nil {
		return err
	}
	b, _, err := patchbuild.Build(patchbuild.Input{Target: target, Orig: []string{o}, Fixed: []string{f}, Name: name})
	if err != nil {
		return fmt.Errorf("userpatchtest: build %s: %w", out, err)
	}
	return write(filepath.Join(c.dir, out), b)
}

func write(name string, b *ulp.Bundle) error {
	enc, err := b.Encode()
	if err != nil {
		return fmt.Errorf("userpatchtest: %s: %w", filepath.Base(name), err)
	}
	return os.WriteFile(name, enc, 0o644)
}

// Bundle reads one of the bundles.
func (f *Fixtures) Bundle(name string) (*ulp.Bundle, error) {
	b, err := os.ReadFile(filepath.Join(f.Dir, name))
	if err != nil {
		return nil, err
	}
	return ulp.Decode(b)
}

// Path returns the path of a fixture file.
func (f *Fixtures) Path(name string) string { return filepath.Join(f.Dir, name) }
