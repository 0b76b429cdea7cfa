package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/transport"
)

// bootState reads the board's RAUC variables.
func (g *rig) bootState() slot.State {
	g.t.Helper()
	env, err := g.dev.Board.Env.Load()
	if err != nil {
		g.t.Fatal(err)
	}
	st, err := slot.ParseState(env, []string{"A", "B"})
	if err != nil {
		g.t.Fatal(err)
	}
	return st
}

// TestRunningSlotRefilledDuringLongDownload: a download spread over
// several power cycles (each cut after 1 MiB) never runs the running
// slot's counter down: every start refills it, whatever is in flight,
// so every boot is slot A until the update itself arms slot B.
func TestRunningSlotRefilledDuringLongDownload(t *testing.T) {
	g := newRig(t, nil, "")
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 6<<20)})
	g.repo.CutAfter.Store(1 << 20)
	err := g.install("v2")
	for cycle := 1; !errors.Is(err, engine.ErrRebootPending); cycle++ {
		if err == nil || cycle > 8 {
			t.Fatalf("power cycle %d: %v; want a cut download, then the reboot into B", cycle, err)
		}
		if u := g.journal.Record().Update; u == nil || u.Step != journal.StepDownloading {
			t.Fatalf("power cycle %d: update %+v, want it downloading", cycle, u)
		}
		s, err2 := g.dev.Board.Boot() // the power goes; the download waits
		if err2 != nil || s != "A" {
			t.Fatalf("power cycle %d mid-download booted %s (%v), want A", cycle, s, err2)
		}
		g.start()
		err = g.engine.Resume(context.Background())
		if left := g.bootState().Left["A"]; left != slot.DefaultAttempts {
			t.Fatalf("power cycle %d: BOOT_A_LEFT = %d after the agent started, want %d", cycle, left, slot.DefaultAttempts)
		}
	}
	if s, _ := g.dev.Board.Booted(); s != "B" {
		t.Fatalf("booted %s after the install, want B", s)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec := g.journal.Record(); rec.Installed.Name != "v2" || rec.Installed.Slot != "B" {
		t.Fatalf("journal %+v: want v2 committed in B", rec)
	}
}

// commit installs and commits release name (its image passes the
// self-test).
func (g *rig) commit(name string, seq uint64) {
	g.t.Helper()
	g.repo.Publish(g.t, agenttest.Release{Name: name, Sequence: seq, Image: agenttest.Image(name, true, 1<<20)})
	if err := g.install(name); !errors.Is(err, engine.ErrRebootPending) {
		g.t.Fatal(err)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		g.t.Fatal(err)
	}
	if rec := g.journal.Record(); rec.Installed.Name != name {
		g.t.Fatalf("%s not committed: %+v", name, rec)
	}
}

// TestAbortedInstallNeverBoots: an install that fails half-way through
// writing slot B leaves B out of the boot order with no attempts, and
// no longer recorded as holding the previous release. A crash loop of
// the running slot afterwards (no agent start refilling it) resets the
// counters and boots it again, never the half-written slot.
func TestAbortedInstallNeverBoots(t *testing.T) {
	g := newRig(t, nil, "")
	g.commit("v2", 2) // slot B
	g.commit("v3", 3) // slot A; B holds v2, the previous release
	if p := g.journal.Record().Previous; p.Name != "v2" || p.Slot != "B" {
		t.Fatalf("previous %+v, want v2 in B", p)
	}
	g.repo.Publish(t, agenttest.Release{Name: "v4", Sequence: 4, Image: agenttest.Image("v4", true, 1<<20), SHA256: make([]byte, 32)})
	if err := g.install("v4"); !errors.Is(err, slot.ErrHashMismatch) {
		t.Fatalf("Install = %v, want the hash mismatch found while writing B", err)
	}
	st := g.bootState()
	if st.Bootable("B") || strings.Join(st.Order, " ") != "A" {
		t.Fatalf("boot state %v after the aborted install: want B out of the order", st)
	}
	rec := g.journal.Record()
	if rec.Previous.Slot == "B" || rec.Installed.Name != "v3" {
		t.Fatalf("journal %+v: slot B is half-written, it holds no previous release", rec)
	}
	for i := range 3 * slot.DefaultAttempts {
		s, err := g.dev.Board.Boot()
		if s == "" && err == nil { // no attempts left: counters reset, the board resets
			s, err = g.dev.Board.Boot()
		}
		if err != nil || s != "A" {
			t.Fatalf("boot %d of a crash loop chose %q (%v), want A", i+1, s, err)
		}
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec := g.journal.Record(); rec.Installed.Name != "v3" || rec.Installed.Slot != "A" {
		t.Fatalf("journal %+v: want v3 in A", rec)
	}
	// The next install writes B again and arms it as usual.
	g.commit("v5", 5)
	if rec := g.journal.Record(); rec.Installed.Slot != "B" || rec.Previous.Name != "v3" {
		t.Fatalf("journal %+v: want v5 in B, v3 previous", rec)
	}
}

// powerCut is what a test panics with to stop the engine at an instant.
type powerCut struct{}

// cutEnv cuts the power right after a Save of the environment for which
// cut says so.
type cutEnv struct {
	bootenv.Store
	cut func(bootenv.Env) bool
}

func (c *cutEnv) Save(env bootenv.Env) error {
	if err := c.Store.Save(env); err != nil {
		return err
	}
	if c.cut != nil && c.cut(env) {
		c.cut = nil
		panic(powerCut{})
	}
	return nil
}

// resumeUntilCut runs Resume and reports whether the power was cut.
func (g *rig) resumeUntilCut() (cut bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(powerCut); !ok {
				panic(r)
			}
			cut = true
		}
	}()
	return false, g.engine.Resume(context.Background())
}

// TestRevertSurvivesPowerCut: the health checks of the new slot fail
// and the power goes between the two writes of revert (journal and boot
// environment, whichever comes first). The next boot is the old slot;
// the agent must finish the rollback with the health reason, never take
// that boot for a fallback without a verdict and arm the failed slot
// again. With a try left on the failed slot (the bootloader boots it
// again), the agent arms the revert and reboots.
func TestRevertSurvivesPowerCut(t *testing.T) {
	for _, tt := range []struct {
		name             string
		tryLeft, restart bool
	}{
		{name: "no try left"},
		{name: "failed slot booted again", tryLeft: true},
		{name: "agent restarted before the reboot", restart: true},
	} {
		tryLeft := tt.tryLeft
		t.Run(tt.name, func(t *testing.T) {
			g := newRig(t, nil, "")
			g.repo.Publish(t, agenttest.Release{Name: "v3", Sequence: 3, Image: agenttest.Image("v3", false, 1<<20)})
			if err := g.install("v3"); !errors.Is(err, engine.ErrRebootPending) {
				t.Fatal(err)
			}
			// In slot B: the self-test fails. Cut after the first write
			// of the revert.
			g.env = &cutEnv{Store: g.dev.Board.Env, cut: func(env bootenv.Env) bool {
				st, err := slot.ParseState(env, []string{"A", "B"})
				return err == nil && !st.Bootable("B")
			}}
			g.start()
			g.journal.OnSave = func(r journal.Record) {
				if r.Update != nil && r.Update.Step == journal.StepReverting {
					g.journal.OnSave = nil
					panic(powerCut{})
				}
			}
			if cut, err := g.resumeUntilCut(); !cut {
				t.Fatalf("Resume in the bad slot = %v, want the power cut during the revert", err)
			}
			g.env = nil
			if tryLeft {
				env, _ := g.dev.Board.Env.Load()
				env[slot.LeftVar("B")] = "1"
				g.dev.Board.Env.Save(env)
			}
			booted := "B"
			if !tt.restart { // else the same boot: the agent only restarts
				var err error
				if booted, err = g.dev.Board.Boot(); err != nil {
					t.Fatal(err)
				}
			}
			reboots := g.machine.Reboots
			g.start()
			err := g.engine.Resume(context.Background())
			if booted == "B" {
				// The revert is armed now; the reboot goes to A.
				if !errors.Is(err, engine.ErrRebootPending) || g.machine.Reboots != reboots+1 {
					t.Fatalf("Resume in B after the cut = %v, want the revert armed and a reboot", err)
				}
				if s, _ := g.dev.Board.Booted(); s != "A" {
					t.Fatalf("rebooted into %s, want A", s)
				}
				g.start()
				err = g.engine.Resume(context.Background())
			}
			if err != nil {
				t.Fatalf("Resume in A after the cut = %v, want the rollback finished", err)
			}
			if g.machine.Reboots != reboots+map[bool]int{false: 0, true: 1}[booted == "B"] {
				t.Fatal("slot B was armed and rebooted into again")
			}
			l := g.last()
			if l.State != transport.StateRolledBack || l.Release != "v3" || !strings.Contains(l.Reason, "slot B") {
				t.Fatalf("last report %+v: want v3 rolled back with the health reason", l)
			}
			g.untouchedAfterRollback(3)
		})
	}
}
