package userpatch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// waitForWithin is waitFor with a shorter deadline, for a test that
// expects the line soon or not at all.
func (p *proc) waitForWithin(t *testing.T, want string, d time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		p.mu.Lock()
		last := p.last
		p.mu.Unlock()
		if strings.Contains(last, want) {
			return true
		}
	}
	return false
}

// TestReadOnlyCopyNotPatched: the process maps the test library a second
// time, read-only, below the loaded copy (as crash reporters and
// libbacktrace do); the trampolines go into the loaded copy, so the
// process runs the fixed code, and revert restores it.
func TestReadOnlyCopyNotPatched(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "2", "rocopy")
	p.waitFor(t, userpatchtest.GTBefore)
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.pid()))
	if n := strings.Count(string(maps), f.LibGT); n < 2 {
		t.Fatalf("the library is mapped %d times, want a read-only copy too:\n%s", n, maps)
	}
	pt := userpatch.NewPatcher()
	defer pt.Close()
	a, err := pt.Apply(context.Background(), p.pid(), bundle(t, f, userpatchtest.GTBundle), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !p.waitForWithin(t, userpatchtest.GTAfter, 3*time.Second) {
		t.Fatalf("applied at base %#x, but the process still runs the old code:\n%s", a.Base, maps)
	}
	if err := pt.Revert(context.Background(), a, userpatch.Options{}); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}

// TestBuildIDFollowsRewrittenFile: the library file is rewritten in
// place (same device and inode) with another build; a process started
// afterwards maps the new build, and the agent, which has read the old
// one, must not take it for the bundle's target.
func TestBuildIDFollowsRewrittenFile(t *testing.T) {
	hostOnly(t)
	f := fixtures(t)
	dir := t.TempDir()
	for _, name := range []string{userpatchtest.GTProg, f.LibGT} {
		b, err := os.ReadFile(f.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	own := &userpatchtest.Fixtures{Dir: dir, GOARCH: f.GOARCH, LibGT: f.LibGT}
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	first := start(t, own, userpatchtest.GTProg, "1")
	first.waitFor(t, userpatchtest.GTBefore)
	a, err := pt.Apply(context.Background(), first.pid(), b, userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := pt.Revert(context.Background(), a, userpatch.Options{}); err != nil {
		t.Fatal(err)
	}
	first.cmd.Process.Kill()
	<-first.done
	// Another build of the library, written into the same inode.
	libs, _ := filepath.Glob(filepath.Join(f.Path(userpatchtest.EntryDir), "libgt-*.so"))
	if len(libs) != 1 {
		t.Fatalf("entry libraries: %v", libs)
	}
	other, err := os.ReadFile(libs[0])
	if err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, f.LibGT)
	before, _ := os.Stat(lib)
	if err := os.WriteFile(lib, other, 0o755); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(lib)
	if !os.SameFile(before, after) {
		t.Fatal("the rewrite changed the inode")
	}
	second := start(t, own, userpatchtest.GTProg, "1")
	second.waitFor(t, userpatchtest.GTBefore)
	_, err = pt.Apply(context.Background(), second.pid(), b, userpatch.Options{})
	if !errors.Is(err, userpatch.ErrWrongBuild) {
		t.Fatalf("Apply to the rewritten library = %v, want ErrWrongBuild", err)
	}
	second.alive(t)
}
