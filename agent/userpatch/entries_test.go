package userpatch_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// The -Os test library of userpatchtest.EntriesDir: entries where a
// trampoline used to crash the process it fixed.

func entry(name string) string { return filepath.Join(userpatchtest.EntriesDir, name) }

// stays checks for d that the program lives and keeps printing want.
func (p *proc) stays(t *testing.T, d time.Duration, want string) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		p.alive(t)
		p.waitFor(t, want)
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEntryOddAddress: ent_odd sits at an odd address (amd64 -Os). The
// builder used to drop bit 0 and put the trampoline one byte early, over
// the previous function's last byte, with the entry cut mid-jmp.
func TestEntryOddAddress(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, entry(userpatchtest.EntProg))
	p.waitFor(t, userpatchtest.EntBefore)
	b := bundle(t, f, entry(userpatchtest.EntOdd))
	if runtime.GOARCH == "amd64" && b.Funcs[0].Target&1 == 0 {
		t.Fatalf("ent_odd at %#x: the test needs an odd address", b.Funcs[0].Target)
	}
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	p.waitFor(t, userpatchtest.EntOddFix)
	p.stays(t, 100*time.Millisecond, userpatchtest.EntOddFix)
	if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	p.waitFor(t, userpatchtest.EntBefore)
	p.alive(t)
}

// TestEntryLoopHead: ent_loop branches back to entry+1 (amd64), +2
// (Thumb) or +8 (arm64) while its thread waits in ent_step most of the
// time, with a return address past the trampoline. The bundle's guard is
// the whole function, so the agent waits until the thread is outside it;
// it used to write at once, and the loop's next turn ran the middle of
// the trampoline (SIGSEGV). Several cycles: each used to crash with a
// chance of about 3 in 4.
func TestEntryLoopHead(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, entry(userpatchtest.EntProg))
	p.waitFor(t, userpatchtest.EntBefore)
	b := bundle(t, f, entry(userpatchtest.EntLoop))
	if fn := b.Funcs[0]; fn.Guard != fn.Size {
		t.Fatalf("ent_loop guard %d of %d bytes: the builder did not see the loop head", fn.Guard, fn.Size)
	}
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	for i := range 5 {
		a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
		if err != nil {
			t.Fatalf("cycle %d: Apply: %v", i, err)
		}
		p.waitFor(t, userpatchtest.EntLoopFix)
		p.stays(t, 40*time.Millisecond, userpatchtest.EntLoopFix)
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			t.Fatalf("cycle %d: Revert: %v", i, err)
		}
		p.waitFor(t, userpatchtest.EntBefore)
		t.Logf("cycle %d: applied after %d attempt(s)", i, a.Attempts)
	}
	p.alive(t)
}

// TestEntryCheckEveryByte: ent_long differs from the build the bundle was
// made for only in its last bytes (as a forged build with the same build
// ID would). The agent refuses it; it used to check the first 32 bytes.
func TestEntryCheckEveryByte(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, entry(userpatchtest.EntProg))
	p.waitFor(t, userpatchtest.EntBefore)
	b := bundle(t, f, entry(userpatchtest.EntLong))
	fn := b.Funcs[0]
	if fn.Size <= 34 {
		t.Fatalf("ent_long is %d bytes: the test needs more than 32", fn.Size)
	}
	base, err := userpatch.LoadBase(p.pid(), b.BuildID)
	if err != nil {
		t.Fatal(err)
	}
	// ent_long is never called: changing its bytes in this process (a
	// private copy of the page) is harmless.
	mem, err := os.OpenFile("/proc/"+strconv.Itoa(p.pid())+"/mem", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	at := int64(base + fn.Target + fn.Size - 2)
	one := make([]byte, 1)
	if _, err := mem.ReadAt(one, at); err != nil {
		t.Fatal(err)
	}
	one[0] ^= 0x40
	if _, err := mem.WriteAt(one, at); err != nil {
		t.Fatal(err)
	}
	before := funcBytes(t, p.pid(), b)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	a, err := pt.Apply(context.Background(), p.pid(), b, userpatch.Options{})
	if !errors.Is(err, userpatch.ErrMismatch) {
		t.Fatalf("Apply to a function changed at byte %d of %d: %v (applied %v), want ErrMismatch", fn.Size-2, fn.Size, err, a != nil)
	}
	if string(funcBytes(t, p.pid(), b)) != string(before) {
		t.Fatal("a refused bundle changed the process")
	}
	p.alive(t)
}

// TestEntrySyscallAtRegionEnd (amd64): a thread blocked in pause(2),
// whose syscall instruction ends exactly where the 5-byte trampoline
// ends, is restarted by the kernel two bytes back, inside the trampoline.
// Its PC (the region's end) counts as inside: the apply waits and gives
// up busy, and the thread wakes into intact code. It used to be patched
// at once and crash on resume.
func TestEntrySyscallAtRegionEnd(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the 2-byte syscall restart into a 5-byte jmp is amd64's")
	}
	f := fixtures(t)
	p := start(t, f, entry(userpatchtest.EntProg), "wait")
	p.waitFor(t, "waiting")
	b := bundle(t, f, entry(userpatchtest.EntWait))
	if fn := b.Funcs[0]; fn.Keep != 0 || fn.Guard != 5 {
		t.Fatalf("ent_wait keep %d guard %d, want 0 and 5", fn.Keep, fn.Guard)
	}
	time.Sleep(20 * time.Millisecond) // the waiter is in pause by now
	pt := userpatch.NewPatcher()
	defer pt.Close()
	a, err := pt.Apply(context.Background(), p.pid(), b, userpatch.Options{Deadline: 300 * time.Millisecond})
	if !errors.Is(err, userpatch.ErrBusy) {
		t.Fatalf("Apply with a thread restarting into the trampoline: %v (applied %v), want ErrBusy", err, a != nil)
	}
	if err := syscall.Kill(p.pid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "woke=1")
	p.alive(t)
}
