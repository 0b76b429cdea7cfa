package userpatch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// TestThreadsAppearingMidApply: threads are created and exit all the time
// while the patch is applied and reverted.
func TestThreadsAppearingMidApply(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "2", "churn")
	p.waitFor(t, userpatchtest.GTBefore)
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	for i := range 100 {
		a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			p.alive(t)
			t.Fatalf("cycle %d: Apply: %v", i, err)
		}
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			time.Sleep(50 * time.Millisecond)
			p.alive(t)
			t.Fatalf("cycle %d: Revert: %v", i, err)
		}
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}

// TestProcessDiesMidApply: processes that exit or crash (SIGSEGV) while
// being patched give ErrGone, never a panic or a stuck tracer, and a
// process patched alongside is unharmed.
func TestProcessDiesMidApply(t *testing.T) {
	f := fixtures(t)
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	other := start(t, f, userpatchtest.GTProg, "2")
	other.waitFor(t, userpatchtest.GTBefore)
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSEGV, syscall.SIGKILL, syscall.SIGSEGV} {
		victim := start(t, f, userpatchtest.GTProg, "4")
		victim.waitFor(t, userpatchtest.GTBefore)
		// Kill it after a varying delay while apply/revert cycles run.
		go func() {
			time.Sleep(time.Duration(i+1) * 3 * time.Millisecond)
			victim.cmd.Process.Signal(sig)
		}()
		for {
			a, err := pt.Apply(ctx, victim.pid(), b, userpatch.Options{})
			if err == nil {
				err = pt.Revert(ctx, a, userpatch.Options{})
			}
			if err != nil {
				if !errors.Is(err, userpatch.ErrGone) && !errors.Is(err, userpatch.ErrWrongBuild) {
					t.Fatalf("%v mid-apply: %v, want ErrGone", sig, err)
				}
				break
			}
		}
		<-victim.done
		// The other process still patches and reverts cleanly.
		a, err := pt.Apply(ctx, other.pid(), b, userpatch.Options{})
		if err != nil {
			t.Fatalf("after %v: Apply to the other process: %v", sig, err)
		}
		other.waitFor(t, userpatchtest.GTAfter)
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			t.Fatalf("Revert: %v", err)
		}
		other.waitFor(t, userpatchtest.GTBefore)
	}
	other.alive(t)
}

// TestTracedProcessSkipped: a process a debugger holds is skipped and
// reported, never fought over; once the debugger lets go it is patched.
func TestTracedProcessSkipped(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "1")
	p.waitFor(t, userpatchtest.GTBefore)
	dbg := start(t, f, userpatchtest.HoldTrace, strconv.Itoa(p.pid()))
	dbg.waitFor(t, "attached")
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	if _, err := pt.Apply(context.Background(), p.pid(), b, userpatch.Options{}); !errors.Is(err, userpatch.ErrTraced) {
		t.Fatalf("Apply to a traced process = %v, want ErrTraced", err)
	}
	dir := t.TempDir()
	m, err := userpatch.NewManager(nil, nil, userpatch.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res, err := m.Add(context.Background(), b, filepath.Join(dir, "unused"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(res, func(r userpatch.ProcResult) bool {
		return r.PID == p.pid() && r.Result == userpatch.ResultSkipped && strings.Contains(r.Reason, "traced")
	}) {
		t.Fatalf("Add results %+v: want pid %d skipped as traced", res, p.pid())
	}
	dbg.cmd.Process.Kill()
	<-dbg.done
	if res := m.Rescan(context.Background()); !slices.ContainsFunc(res, func(r userpatch.ProcResult) bool {
		return r.PID == p.pid() && r.Result == userpatch.ResultApplied
	}) {
		t.Fatalf("Rescan after the debugger left: %+v, want pid %d applied", res, p.pid())
	}
	p.waitFor(t, userpatchtest.GTAfter)
}

// TestLibraryReplacedOnDisk: the library file is replaced (a package
// upgrade) while the process runs; the process still maps the old build,
// now "(deleted)", and is still found and patched by its build ID.
func TestLibraryReplacedOnDisk(t *testing.T) {
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
	p := start(t, own, userpatchtest.GTProg, "1")
	p.waitFor(t, userpatchtest.GTBefore)
	lib := filepath.Join(dir, f.LibGT)
	if err := os.WriteFile(lib+".new", []byte("not the library any more"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(lib+".new", lib); err != nil {
		t.Fatal(err)
	}
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.pid()))
	if !strings.Contains(string(maps), f.LibGT+" (deleted)") {
		t.Fatalf("the old library is not mapped as deleted:\n%s", maps)
	}
	pt := userpatch.NewPatcher()
	defer pt.Close()
	a, err := pt.Apply(context.Background(), p.pid(), bundle(t, f, userpatchtest.GTBundle), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	p.waitFor(t, userpatchtest.GTAfter)
	if err := pt.Revert(context.Background(), a, userpatch.Options{}); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, userpatchtest.GTBefore)
}
