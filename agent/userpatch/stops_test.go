package userpatch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// tracedTasks lists the tasks of pid that have a tracer, with it.
func tracedTasks(t *testing.T, pid int) []string {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", e.Name(), "status"))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "TracerPid:"); ok && strings.TrimSpace(v) != "0" {
				out = append(out, e.Name()+" by "+strings.TrimSpace(v))
			}
		}
	}
	return out
}

// TestStopThatNeverEndsDetachesAll: a thread that cannot stop (a vfork
// parent waiting for its child) fails the apply, and no thread of the
// process stays traced: when the vfork child exits, the parent thread
// runs on instead of entering a stop nobody ends.
func TestStopThatNeverEndsDetachesAll(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "2", "vfork", "8")
	p.waitFor(t, "vf=1") // the child sleeps, the parent thread waits for it
	pt := userpatch.NewPatcher()
	defer pt.Close()
	began := time.Now()
	_, err := pt.Apply(context.Background(), p.pid(), bundle(t, f, userpatchtest.GTBundle), userpatch.Options{})
	if !errors.Is(err, userpatch.ErrBusy) {
		t.Fatalf("Apply with a vfork parent = %v, want ErrBusy", err)
	}
	t.Logf("refused after %v: %v", time.Since(began), err)
	if tr := tracedTasks(t, p.pid()); len(tr) > 0 {
		t.Fatalf("after the failed apply, tasks still traced: %v", tr)
	}
	p.waitFor(t, "vf=2") // the vfork parent ran on when its child exited
	if tr := tracedTasks(t, p.pid()); len(tr) > 0 {
		t.Fatalf("after the vfork child exited, tasks traced: %v", tr)
	}
	// And the process can be patched now.
	a, err := pt.Apply(context.Background(), p.pid(), bundle(t, f, userpatchtest.GTBundle), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply once the vfork ended: %v", err)
	}
	p.waitFor(t, userpatchtest.GTAfter)
	if err := pt.Revert(context.Background(), a, userpatch.Options{}); err != nil {
		t.Fatal(err)
	}
	p.alive(t)
}

// sigqueue sends sig with value v to pid as sigqueue(3) does (SI_QUEUE).
func sigqueue(pid, sig, v int) error {
	var si [128]byte
	le := func(off int, x uint32) {
		si[off], si[off+1], si[off+2], si[off+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	}
	le(0, uint32(sig))
	le(8, ^uint32(0)) // SI_QUEUE
	off := 12         // the union follows, pointer-aligned
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	le(off, uint32(os.Getpid()))
	le(off+4, uint32(os.Getuid()))
	le(off+8, uint32(v))
	_, _, errno := unix.Syscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(pid), uintptr(sig), uintptr(unsafe.Pointer(&si)))
	if errno != 0 {
		return errno
	}
	return nil
}

// sigField reads name=<n> from gtprog's last line.
func (p *proc) field(t *testing.T, name string) int {
	t.Helper()
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	for _, f := range strings.Fields(last) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s in %q: %v", name, last, err)
			}
			return n
		}
	}
	t.Fatalf("no %s= in %q", name, last)
	return 0
}

// TestSignalsKeptAcrossApply: signals sent with sigqueue while the patch
// is applied and reverted over and over all arrive, each once, with its
// si_code and value — and no apply fails for them.
func TestSignalsKeptAcrossApply(t *testing.T) {
	f := fixtures(t)
	n := 20000
	if testing.Short() || os.Getenv(fixtureEnv) != "" {
		n = 4000 // -short, and the emulated guests
	}
	p := start(t, f, userpatchtest.GTProg, "2", "signals")
	p.waitFor(t, userpatchtest.GTBefore)
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var cycles int
	var errs []error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
			if err == nil {
				err = pt.Revert(ctx, a, userpatch.Options{})
			}
			if err != nil {
				errs = append(errs, err)
			}
			cycles++
		}
	}()
	const sig = 34 + 6 // SIGRTMIN+6 in glibc
	for v := 1; v <= n; v++ {
		if v%20 == 0 {
			time.Sleep(time.Millisecond) // spread the signals over many cycles
		}
		for {
			err := sigqueue(p.pid(), sig, v)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.EAGAIN) {
				t.Fatalf("sigqueue: %v", err)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	close(stop)
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for p.field(t, "sig") < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	got, bad := p.field(t, "sig"), p.field(t, "bad")
	t.Logf("signals: %d sent, %d delivered, %d with a wrong si_code, value or twice; %d apply/revert cycles meanwhile, %d failed",
		n, got, bad, cycles, len(errs))
	if got != n || bad != 0 {
		t.Errorf("%d of %d signals delivered, %d wrong", got, n, bad)
	}
	for i, err := range errs {
		if i < 5 {
			t.Errorf("cycle failed: %v", err)
		}
	}
	p.alive(t)
}

// TestSleepResumesWhereItWas: the only thread of a process sleeps in
// nanosleep while patches are applied and reverted (each injecting
// system calls on it): the sleep resumes with its remaining time, as the
// kernel resumes it after a stop (restart_syscall), instead of starting
// over with the full time at each stop.
func TestSleepResumesWhereItWas(t *testing.T) {
	f := fixtures(t)
	const nap = 2000 // ms
	p := start(t, f, userpatchtest.GTProg, "0", "nap", strconv.Itoa(nap))
	p.waitFor(t, "napping")
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	began := time.Now()
	cycles := 0
	for time.Since(began) < nap*3/4*time.Millisecond {
		a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			t.Fatalf("Revert: %v", err)
		}
		cycles++
		time.Sleep(100 * time.Millisecond)
	}
	p.waitFor(t, "napped=")
	took := p.field(t, "napped")
	t.Logf("a %d ms nanosleep took %d ms with %d apply/revert cycles during it", nap, took, cycles)
	// Started over at the last stop, it would take at least 3/4 + 1 times
	// the nap; resumed, about the nap (a loaded host adds a little).
	if took >= nap*7/4 {
		t.Errorf("the %d ms sleep took %d ms: it started over after a stop", nap, took)
	}
	p.alive(t)
}

// TestVforkChildStopsItsParent: a vfork child shares its parent's
// memory, so patching the child patches the parent too. The stop takes
// in every task sharing the memory: the parent's thread waiting for the
// child cannot stop, so the apply is refused (before, the child alone
// was stopped and patched while the parent's other threads ran), and no
// task of either stays traced.
func TestVforkChildStopsItsParent(t *testing.T) {
	hostOnly(t) // the mm-sharing scan is not arch-specific; a TCG armhf guest cannot stop 8 threads in 3 s
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "2", "vfork", "8")
	p.waitFor(t, "vf=1")
	var child int
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid()))
	for _, e := range ents {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", p.pid(), e.Name()))
		if f := strings.Fields(string(b)); len(f) > 0 {
			child, _ = strconv.Atoi(f[0])
		}
	}
	if child == 0 {
		t.Fatal("no vfork child found")
	}
	pt := userpatch.NewPatcher()
	defer pt.Close()
	_, err := pt.Apply(context.Background(), child, bundle(t, f, userpatchtest.GTBundle), userpatch.Options{})
	t.Logf("Apply to the vfork child %d: %v", child, err)
	if !errors.Is(err, userpatch.ErrBusy) {
		t.Fatalf("Apply to a vfork child = %v, want ErrBusy (its parent's waiting thread cannot stop)", err)
	}
	for _, pid := range []int{p.pid(), child} {
		if tr := tracedTasks(t, pid); len(tr) > 0 {
			t.Fatalf("pid %d: tasks still traced: %v", pid, tr)
		}
	}
	p.waitFor(t, "vf=2")
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}
