package userpatch_test

import (
	"context"
	"errors"
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
