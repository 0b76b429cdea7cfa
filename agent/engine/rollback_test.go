package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/transport"
)

// TestRollbackByHand: a committed v2 in B is rolled back to v1 in A from
// the console: A boots next, B stays as its fallback, the journal and the
// fleet say who did it, and the next start commits nothing by mistake.
func TestRollbackByHand(t *testing.T) {
	g := newRig(t, nil, "")
	if _, err := g.engine.Rollback(context.Background(), "operator:alice"); !errors.Is(err, engine.ErrNoPrevious) {
		t.Fatalf("rollback onto a slot nothing ran in: %v", err)
	}
	g.commitV2()
	prev := g.journal.Record().Previous // the factory image: a slot, no name
	if prev.Slot != "A" {
		t.Fatalf("after v2 the journal's previous is %+v, want the factory slot A", prev)
	}
	slot, err := g.engine.Rollback(context.Background(), "operator:alice")
	if err != nil || slot != "A" {
		t.Fatalf("rollback: %s %v (previous %+v)", slot, err, prev)
	}
	if s, _ := g.dev.Board.Booted(); s != "A" {
		t.Fatalf("booted %s after the rollback, want A", s)
	}
	env, err := g.dev.Board.Env.Load()
	if err != nil {
		t.Fatal(err)
	}
	if env["BOOT_ORDER"] != "A B" {
		t.Errorf("boot order %q, want A first with B as its fallback", env["BOOT_ORDER"])
	}
	rec := g.journal.Record()
	if rec.Installed.Slot != "A" || rec.Previous.Name != "v2" || rec.Last == nil || rec.Last.State != string(transport.StateRolledBack) {
		t.Fatalf("journal %+v", rec)
	}
	last := g.last()
	if last.State != transport.StateRolledBack || last.Release != "v2" {
		t.Fatalf("reported %+v", last)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec := g.journal.Record(); rec.Installed.Slot != "A" || rec.Previous.Name != "v2" {
		t.Fatalf("after the restart: %+v", rec)
	}
}

// TestRollbackRefused: nothing happens while an update is in flight, or
// when the other slot is marked bad.
func TestRollbackRefused(t *testing.T) {
	g := newRig(t, nil, "")
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatal(err)
	}
	if _, err := g.engine.Rollback(context.Background(), "operator:alice"); !errors.Is(err, engine.ErrBusy) {
		t.Fatalf("rollback during an update: %v", err)
	}
	h := newRig(t, nil, "")
	h.commitV2()
	if err := h.dev.Board.Env.Save(map[string]string{"BOOT_ORDER": "B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Rollback(context.Background(), "operator:alice"); !errors.Is(err, engine.ErrNoPrevious) {
		t.Fatalf("rollback onto a bad slot: %v", err)
	}
	if s, _ := h.dev.Board.Booted(); s != "B" {
		t.Fatalf("booted %s", s)
	}
}
