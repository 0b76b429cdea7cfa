package userpatch_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
	"github.com/graft-dev/graft/manifest/ulp"
)

// fixtureEnv names a directory of fixtures built on the host for this
// arch (the emulated-guest scenarios set it); without it the test builds
// them with the native compiler against the host's own libraries.
const fixtureEnv = "GRAFT_ULP_FIXTURES"

// stressEnv overrides the number of apply/revert cycles of TestStress.
const stressEnv = "GRAFT_ULP_CYCLES"

func carried(a userpatch.Active, pid int) bool {
	return slices.ContainsFunc(a.Procs, func(p *userpatch.Applied) bool { return p.PID == pid })
}

// TestMain removes the fixtures built on the host.
func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil && os.Getenv(fixtureEnv) == "" {
		os.RemoveAll(fix.Dir)
	}
	os.Exit(code)
}

var (
	fixOnce sync.Once
	fix     *userpatchtest.Fixtures
	fixErr  error
)

func fixtures(t *testing.T) *userpatchtest.Fixtures {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("live patching is Linux only")
	}
	fixOnce.Do(func() {
		if dir := os.Getenv(fixtureEnv); dir != "" {
			libs, _ := filepath.Glob(filepath.Join(dir, "libgt-*.so"))
			if len(libs) != 1 {
				fixErr = fmt.Errorf("%s: want one libgt-*.so, found %v", dir, libs)
				return
			}
			fix = &userpatchtest.Fixtures{Dir: dir, GOARCH: runtime.GOARCH, LibGT: filepath.Base(libs[0])}
			return
		}
		if runtime.GOARCH != "amd64" {
			fixErr = fmt.Errorf("no %s: fixtures for %s are built on the host", fixtureEnv, runtime.GOARCH)
			return
		}
		dir, err := os.MkdirTemp("", "userpatch-fixtures-")
		if err != nil {
			fixErr = err
			return
		}
		fix, fixErr = userpatchtest.Build(context.Background(), "amd64", dir, userpatchtest.HostLibs())
	})
	if fixErr != nil {
		t.Fatalf("fixtures: %v", fixErr)
	}
	return fix
}

// hostOnly skips a test that is not arch-specific inside the emulated
// guests (GRAFT_ULP_FIXTURES set): it runs on the host, and the guests'
// time goes to what differs per architecture.
func hostOnly(t *testing.T) {
	t.Helper()
	if os.Getenv(fixtureEnv) != "" {
		t.Skip("not arch-specific: runs on the host")
	}
}

// proc is a running fixture program whose stdout lines the test watches.
type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	last  string
	lines int
	done  chan struct{}
	err   error
}

func start(t *testing.T, f *userpatchtest.Fixtures, prog string, args ...string) *proc {
	t.Helper()
	return startCmd(t, f, exec.Command(f.Path(prog), args...))
}

func startCmd(t *testing.T, f *userpatchtest.Fixtures, cmd *exec.Cmd) *proc {
	t.Helper()
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+f.Dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.last = sc.Text()
			p.lines++
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		if s := stderr.String(); s != "" {
			p.err = fmt.Errorf("%w: stderr: %s", p.err, s)
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitFor waits until the program prints a line containing want.
func (p *proc) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		last := p.last
		p.mu.Unlock()
		if strings.Contains(last, want) {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("pid %d exited (%v) before printing %q; last line %q", p.pid(), p.err, want, last)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never printed %q; last line %q", p.pid(), want, last)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// calls returns the calls= figure of gtprog's last line.
func (p *proc) calls(t *testing.T) int {
	t.Helper()
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	_, c, ok := strings.Cut(last, "calls=")
	n, err := strconv.Atoi(c)
	if !ok || err != nil {
		t.Fatalf("no calls= in %q", last)
	}
	return n
}

// alive fails the test if the program died.
func (p *proc) alive(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("pid %d died: %v", p.pid(), p.err)
	default:
	}
}

func bundle(t *testing.T, f *userpatchtest.Fixtures, name string) *ulp.Bundle {
	t.Helper()
	b, err := f.Bundle(name)
	if err != nil {
		t.Fatalf("bundle %s: %v", name, err)
	}
	return b
}

// funcBytes reads the first bytes of every function a bundle replaces, in
// a running process, so that a test can see nothing changed.
func funcBytes(t *testing.T, pid int, b *ulp.Bundle) []byte {
	t.Helper()
	base, err := userpatch.LoadBase(pid, b.BuildID)
	if err != nil {
		t.Fatalf("load base: %v", err)
	}
	mem, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var out []byte
	for _, fn := range b.Funcs {
		buf := make([]byte, fn.Size)
		if _, err := mem.ReadAt(buf, int64(base+fn.Target)); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf...)
	}
	return out
}

func TestApplyRevertTestLibrary(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "4")
	p.waitFor(t, userpatchtest.GTBefore)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	a, err := pt.Apply(ctx, p.pid(), bundle(t, f, userpatchtest.GTBundle), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Logf("applied in %d attempt(s), process stopped %v", a.Attempts, a.Stop)
	p.waitFor(t, userpatchtest.GTAfter)
	// The replacement counts in the library's own static variable.
	// Polled, not a fixed pause: an emulated guest under load can run the
	// program's threads rarely.
	c1 := p.calls(t)
	moved := false
	for deadline := time.Now().Add(3 * time.Second); !moved && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		moved = p.calls(t) > c1
	}
	if !moved {
		t.Errorf("gt_calls() stayed at %d for 3 s after the patch: the replacement does not update the library's counter", c1)
	}
	if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}

func TestApplyRevertGlibcAndOpenSSL(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.LibcProg)
	p.waitFor(t, userpatchtest.AtoiBefore)
	p.mu.Lock()
	before := p.last
	p.mu.Unlock()
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	atoi, err := pt.Apply(ctx, p.pid(), bundle(t, f, userpatchtest.AtoiBundle), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply atoi: %v", err)
	}
	p.waitFor(t, userpatchtest.AtoiAfter)
	ssl, err := pt.Apply(ctx, p.pid(), bundle(t, f, userpatchtest.SSLBundle), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply OpenSSL_version: %v", err)
	}
	p.waitFor(t, userpatchtest.SSLAfter)
	t.Logf("atoi stop %v, OpenSSL_version stop %v", atoi.Stop, ssl.Stop)
	for _, a := range []*userpatch.Applied{atoi, ssl} {
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			t.Fatalf("Revert %s: %v", a.Patch, err)
		}
	}
	p.waitFor(t, before)
	p.alive(t)
}

func TestRefusedBundlesLeaveProcessUntouched(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "2")
	p.waitFor(t, userpatchtest.GTBefore)
	good := bundle(t, f, userpatchtest.GTBundle)
	before := funcBytes(t, p.pid(), good)
	mapsBefore, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.pid()))
	pt := userpatch.NewPatcher()
	defer pt.Close()
	for _, tc := range []struct {
		file string
		want error
	}{
		{userpatchtest.OtherBuild, userpatch.ErrWrongBuild},
		{userpatchtest.BadCheck, userpatch.ErrMismatch},
		{userpatchtest.OtherArch, userpatch.ErrWrongArch},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := pt.Apply(context.Background(), p.pid(), bundle(t, f, tc.file), userpatch.Options{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Apply = %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}
	if after := funcBytes(t, p.pid(), good); !slices.Equal(before, after) {
		t.Error("refused bundles changed the target's code")
	}
	if mapsAfter, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.pid())); string(mapsAfter) != string(mapsBefore) {
		t.Errorf("refused bundles left mappings behind:\nbefore\n%s\nafter\n%s", mapsBefore, mapsAfter)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}

// TestStress applies and reverts the test library's patch 1,000 times
// while 8 threads call the patched function and abort on a wrong value.
func TestStress(t *testing.T) {
	f := fixtures(t)
	cycles := 1000
	if s := os.Getenv(stressEnv); s != "" {
		cycles, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		cycles = 50
	}
	p := start(t, f, userpatchtest.GTProg, "8")
	p.waitFor(t, userpatchtest.GTBefore)
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	mapsBefore := mappings(t, p.pid())
	var stops []time.Duration
	retries := 0
	for i := range cycles {
		a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
		if err != nil {
			t.Fatalf("cycle %d: Apply: %v", i, err)
		}
		stops = append(stops, a.Stop)
		retries += a.Attempts - 1
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			t.Fatalf("cycle %d: Revert: %v", i, err)
		}
		p.alive(t)
	}
	slices.Sort(stops)
	t.Logf("%d cycles, 8 threads: apply stop median %v, p99 %v, max %v; %d retries while busy",
		cycles, stops[len(stops)/2], stops[len(stops)*99/100], stops[len(stops)-1], retries)
	left := mappings(t, p.pid()) - mapsBefore
	t.Logf("leftover mappings after %d cycles: %d (no-escape %v)", cycles, left, b.NoEscape)
	if left > 2 { // one kept patch mapping, split in two by its data's protection
		t.Errorf("%d mappings more after %d cycles: reverted patches pile up", left, cycles)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}

// mappings counts the lines of /proc/PID/maps.
func mappings(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestKeptMappingReused: a patch whose builder could not prove that no
// pointer into it escapes keeps its mapping after a revert, and applying
// it again reuses that mapping: the maps stay bounded.
func TestKeptMappingReused(t *testing.T) {
	hostOnly(t)
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "2")
	p.waitFor(t, userpatchtest.GTBefore)
	b := bundle(t, f, userpatchtest.GTBundle)
	b.NoEscape = false
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	before := mappings(t, p.pid())
	var mem uint64
	for i := range 30 {
		a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
		if err != nil {
			t.Fatalf("cycle %d: Apply: %v", i, err)
		}
		if i == 0 {
			mem = a.Mem
		} else if a.Mem != mem {
			t.Fatalf("cycle %d: patch mapped at %#x, the kept mapping is at %#x", i, a.Mem, mem)
		}
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			t.Fatalf("cycle %d: Revert: %v", i, err)
		}
		if a.Mem != mem {
			t.Fatalf("cycle %d: the revert removed a mapping pointers may still lead into", i)
		}
	}
	left := mappings(t, p.pid()) - before
	t.Logf("30 cycles of a patch that may hand out pointers: %d mappings more", left)
	if left > 2 {
		t.Errorf("%d mappings more after 30 cycles", left)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}

// TestManagerPatchesLaterProcesses: a bundle made active reaches a
// process that starts afterwards, survives a restart of the manager (from
// its journal), and Remove reverts it everywhere.
func TestManagerPatchesLaterProcesses(t *testing.T) {
	f := fixtures(t)
	dir := t.TempDir()
	first := start(t, f, userpatchtest.GTProg, "1")
	first.waitFor(t, userpatchtest.GTBefore)
	ap, err := userpatch.NewApplier(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := bundle(t, f, userpatchtest.GTBundle)
	keep := filepath.Join(dir, "gt.ulp")
	raw, _ := os.ReadFile(f.Path(userpatchtest.GTBundle))
	os.WriteFile(keep, raw, 0o600)
	res, err := ap.Manager().Add(ctx, b, keep)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if !slices.ContainsFunc(res, func(r userpatch.ProcResult) bool {
		return r.PID == first.pid() && r.Result == userpatch.ResultApplied
	}) {
		t.Fatalf("Add results = %+v, want pid %d applied", res, first.pid())
	}
	first.waitFor(t, userpatchtest.GTAfter)
	ran := make(chan struct{})
	go func() { ap.Run(ctx); close(ran) }()
	later := start(t, f, userpatchtest.GTProg, "1")
	began := time.Now()
	later.waitFor(t, userpatchtest.GTAfter)
	t.Logf("a process started later was patched %v after it started (rescan every %v)", time.Since(began), userpatch.RescanInterval)
	// The journal is written after the pass that patched it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := userpatch.LoadState(dir)
		if len(st) == 1 && carried(st[0], later.pid()) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-ran
	ap.Close()

	// A restarted agent restores both processes from its journal.
	ap2, err := userpatch.NewApplier(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ap2.Close()
	act := ap2.Manager().Active()
	if len(act) != 1 || !carried(act[0], first.pid()) || !carried(act[0], later.pid()) {
		t.Fatalf("restored %+v, want one patch carried by pids %d and %d", act, first.pid(), later.pid())
	}
	if _, err := ap2.Manager().Remove(context.Background(), b.Name); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	first.waitFor(t, userpatchtest.GTBefore)
	later.waitFor(t, userpatchtest.GTBefore)
	// The journal says reverted; the same bundle made active again is
	// applied again.
	if st, _ := userpatch.LoadState(dir); len(st) != 1 || !st[0].Reverted() || len(st[0].Procs) != 0 {
		t.Fatalf("journal after Remove: %+v, want the patch reverted", st)
	}
	if res, err := ap2.Manager().Add(context.Background(), b, keep); err != nil || !slices.ContainsFunc(res, func(r userpatch.ProcResult) bool {
		return r.PID == first.pid() && r.Result == userpatch.ResultApplied
	}) {
		t.Fatalf("Add of the reverted patch: %+v, %v; want pid %d applied", res, err, first.pid())
	}
	first.waitFor(t, userpatchtest.GTAfter)
	if st, _ := userpatch.LoadState(dir); len(st) != 1 || st[0].Reverted() {
		t.Fatalf("journal after the second Add: %+v, want the patch active", st)
	}
}

// TestEntryInstructions: the test library built with endbr64 (x86-64),
// PACIASP/BTI (arm64) at function entries, or as ARM-state code (arm):
// the bundle keeps the entry instruction and the patch works.
func TestEntryInstructions(t *testing.T) {
	f := fixtures(t)
	ef := &userpatchtest.Fixtures{Dir: f.Path(userpatchtest.EntryDir), GOARCH: f.GOARCH}
	b := bundle(t, ef, userpatchtest.GTBundle)
	t.Logf("%s: keep %d bytes at the entry, thumb %v", b.Funcs[0].Symbol, b.Funcs[0].Keep, b.Funcs[0].Thumb)
	if runtime.GOARCH != "arm" && b.Funcs[0].Keep == 0 {
		t.Errorf("the bundle keeps no entry instruction of %s", b.Funcs[0].Symbol)
	}
	p := start(t, ef, userpatchtest.GTProg, "2")
	p.waitFor(t, userpatchtest.GTBefore)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	a, err := pt.Apply(context.Background(), p.pid(), b, userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	p.waitFor(t, userpatchtest.GTAfter)
	if err := pt.Revert(context.Background(), a, userpatch.Options{}); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}
