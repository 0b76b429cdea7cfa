package userpatch_test

import (
	"context"
	"os/exec"
	"slices"
	"testing"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// TestExecPatchedAgain: a patched process execs (same PID and start
// time, a new image mapping the same build): the next rescan notices
// that it no longer holds the trampolines and patches the new image, and
// Remove reverts it there.
func TestExecPatchedAgain(t *testing.T) {
	hostOnly(t)
	f := fixtures(t)
	prog := f.Path(userpatchtest.GTProg)
	cmd := exec.Command(prog, "1", "exec", prog, "2")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := startCmd(t, f, cmd)
	p.waitFor(t, userpatchtest.GTBefore)
	m, err := userpatch.NewManager(nil, nil, userpatch.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	b := bundle(t, f, userpatchtest.GTBundle)
	if _, err := m.Add(ctx, b, "unused"); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, userpatchtest.GTAfter)
	first := m.Active()[0].Procs[0]
	if _, err := stdin.Write([]byte("x")); err != nil { // exec
		t.Fatal(err)
	}
	p.waitFor(t, userpatchtest.GTBefore) // the new image runs the old code
	res := m.Rescan(ctx)
	if !slices.ContainsFunc(res, func(r userpatch.ProcResult) bool {
		return r.PID == p.pid() && r.Result == userpatch.ResultApplied
	}) {
		t.Fatalf("Rescan after the exec: %+v, want pid %d applied again", res, p.pid())
	}
	p.waitFor(t, userpatchtest.GTAfter)
	act := m.Active()
	if len(act) != 1 || len(act[0].Procs) != 1 || !userpatch.Carries(act[0].Procs[0]) {
		t.Fatalf("after the exec: %+v, want the process carrying the patch once", act)
	}
	t.Logf("patched at base %#x, after the exec at %#x", first.Base, act[0].Procs[0].Base)
	if _, err := m.Remove(ctx, b.Name); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}
