package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/health"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/simboard"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// rig is one device on the simulated board with the engine in-process.
type rig struct {
	t       *testing.T
	repo    *agenttest.Repo
	dev     *agenttest.Device
	machine *simboard.Machine
	journal *journal.Journal
	engine  *engine.Engine
	reports []transport.Status
	// live and policy go into the engine at the next start.
	live   map[manifest.ComponentKind]engine.LiveApplier
	policy string
	// env, when set, stands between the engine and the board's
	// environment from the next start (power-cut tests).
	env bootenv.Store
	// now, when set, is the device's clock from the next start.
	now func() time.Time
}

func newRig(t *testing.T, r *agenttest.Repo, board string) *rig {
	t.Helper()
	if r == nil {
		r = agenttest.NewRepo(t, repo.Options{})
	}
	dev := agenttest.NewDevice(t, r, "dev-1", agenttest.DeviceOptions{Board: board})
	if _, err := dev.Board.Boot(); err != nil {
		t.Fatal(err)
	}
	g := &rig{t: t, repo: r, dev: dev, machine: &simboard.Machine{Board: dev.Board}}
	g.start()
	return g
}

// start plays an agent start: a fresh journal handle, TUF client and engine.
func (g *rig) start() {
	g.t.Helper()
	j, err := journal.Open(filepath.Join(g.dev.Dir, "journal.json"))
	if err != nil {
		g.t.Fatal(err)
	}
	client, err := tuf.New(tuf.Config{
		MetadataDir: filepath.Join(g.dev.Dir, "tuf"),
		MetadataURL: g.repo.URL + "/metadata",
		TargetsURL:  g.repo.URL + "/targets",
		TargetDir:   filepath.Join(g.dev.Dir, "staging"),
	})
	if err != nil {
		g.t.Fatal(err)
	}
	checks, err := health.Build([]string{"tuf", `exec:grep -q selftest=pass "$GRAFT_SLOT_DEVICE"`}, health.Probes{
		RefreshTUF: client.Refresh,
		SlotEnv: func(s string) []string {
			return []string{"GRAFT_SLOT_DEVICE=" + filepath.Join(g.dev.Dir, "slot-"+map[string]string{"A": "a", "B": "b"}[s]+".img")}
		},
	})
	if err != nil {
		g.t.Fatal(err)
	}
	g.journal = j
	var env bootenv.Store = g.dev.Board.Env
	if g.env != nil {
		env = g.env
	}
	g.engine = engine.New(engine.Options{
		Board:        g.dev.Board.Def,
		DeviceClass:  "sim",
		AgentVersion: "0.1.0",
		Journal:      j,
		Source:       client,
		Env:          env,
		Health:       health.Checker{Checks: checks, Timeout: 10 * time.Second},
		Machine:      g.machine,
		StagingDir:   filepath.Join(g.dev.Dir, "staging"),
		Report:       func(s transport.Status) { g.reports = append(g.reports, s) },
		Live:         g.live,
		Policy:       g.policy,
		Now:          g.now,
	})
}

func (g *rig) install(name string) error {
	return g.engine.Install(context.Background(), transport.Notice{Release: name, Manifest: agenttest.ManifestTarget(name)})
}

// untouched checks that a refused or failed release changed nothing that
// matters: slot A, the boot state and the installed release.
func (g *rig) untouched(installed string) {
	g.t.Helper()
	g.untouchedBut(installed, false)
}

// untouchedBut is untouched, where disarmed says the install began
// writing slot B and failed: B is then out of the boot order with no
// attempts, so nothing can boot the half-written slot.
func (g *rig) untouchedBut(installed string, disarmed bool) {
	g.t.Helper()
	if !bytes.Equal(g.dev.Slot("A")[:len(g.dev.Factory)], g.dev.Factory) {
		g.t.Error("slot A was modified")
	}
	rec := g.journal.Record()
	if rec.Update != nil || rec.Installed.Name != installed {
		g.t.Errorf("journal %+v: want %q installed and nothing in flight", rec, installed)
	}
	env, err := g.dev.Board.Env.Load()
	if err != nil {
		g.t.Fatal(err)
	}
	switch {
	case disarmed && (env["BOOT_ORDER"] != "A" || env["BOOT_B_LEFT"] != "0"):
		g.t.Errorf("boot state %v: want slot B out of the boot order with no attempts", env)
	case !disarmed && (env["BOOT_ORDER"] != "A B" || env["BOOT_B_LEFT"] != "3"):
		g.t.Errorf("boot state changed: %v", env)
	}
	if s, _ := g.dev.Board.Booted(); s != "A" {
		g.t.Errorf("booted %s, want A", s)
	}
}

func (g *rig) last() transport.Status {
	if len(g.reports) == 0 {
		return transport.Status{}
	}
	return g.reports[len(g.reports)-1]
}

func TestInstallTryCommit(t *testing.T) {
	for _, c := range []manifest.Compression{manifest.CompressionNone, manifest.CompressionGzip, manifest.CompressionZstd} {
		t.Run(c.String(), func(t *testing.T) {
			g := newRig(t, nil, "")
			img := agenttest.Image("v2", true, 3<<20)
			g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img, Compression: c})

			if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
				t.Fatalf("Install = %v, want it to wait for the reboot", err)
			}
			if g.machine.Reboots != 1 {
				t.Fatalf("%d reboots, want 1", g.machine.Reboots)
			}
			if s, _ := g.dev.Board.Booted(); s != "B" {
				t.Fatalf("bootloader booted %s, want B (tried once)", s)
			}
			g.start() // the agent comes up in slot B
			if err := g.engine.Resume(context.Background()); err != nil {
				t.Fatal(err)
			}
			rec := g.journal.Record()
			if rec.Update != nil || rec.Installed.Name != "v2" || rec.Installed.Slot != "B" {
				t.Fatalf("journal %+v: want v2 committed in B", rec)
			}
			if got := g.dev.Slot("B")[:len(img)]; !bytes.Equal(got, img) {
				t.Fatal("slot B does not hold the image")
			}
			if !bytes.Equal(g.dev.Slot("A")[:len(g.dev.Factory)], g.dev.Factory) {
				t.Fatal("slot A was modified")
			}
			env, _ := g.dev.Board.Env.Load()
			if env["BOOT_ORDER"] != "B A" || env["BOOT_B_LEFT"] != "3" {
				t.Fatalf("boot state %v: want B first with 3 attempts", env)
			}
			if l := g.last(); l.State != transport.StateCommitted || l.Path != engine.PathAB || l.Slot != "B" {
				t.Fatalf("last report %+v", l)
			}
			// The retained notice comes again after a reconnect: nothing happens.
			before := len(g.reports)
			if err := g.install("v2"); err != nil || len(g.reports) != before {
				t.Fatalf("re-notice of the installed release: %v, %d new reports", err, len(g.reports)-before)
			}
		})
	}
}

func TestHealthFailureRollsBack(t *testing.T) {
	g := newRig(t, nil, "")
	g.repo.Publish(t, agenttest.Release{Name: "v3", Sequence: 3, Image: agenttest.Image("v3", false, 1<<20)})
	if err := g.install("v3"); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatal(err)
	}
	g.start() // in slot B: the self-test fails, the fallback is armed, reboot
	if err := g.engine.Resume(context.Background()); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("Resume in the bad slot = %v, want a reboot", err)
	}
	if s, _ := g.dev.Board.Booted(); s != "A" {
		t.Fatalf("booted %s after revert, want A", s)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := g.last()
	if l.State != transport.StateRolledBack || l.Release != "v3" || l.Slot != "A" || l.Reason == "" {
		t.Fatalf("last report %+v: want v3 rolled back to A with a reason", l)
	}
	g.untouchedAfterRollback(3)
	// The retained notice of v3 comes again: nothing happens, and the
	// rolled-back status stays the last word.
	before := len(g.reports)
	if err := g.install("v3"); err != nil || len(g.reports) != before {
		t.Fatalf("re-notice of v3 = %v with %d reports, want a quiet no-op", err, len(g.reports)-before)
	}
	// Another release at the same sequence is refused.
	g.repo.Publish(t, agenttest.Release{Name: "v3b", Sequence: 3, Image: agenttest.Image("v3", true, 1<<20)})
	if err := g.install("v3b"); !errors.Is(err, engine.ErrRolledBack) {
		t.Fatalf("v3b at the rolled-back sequence = %v, want ErrRolledBack", err)
	}
}

// commitV2 installs v2 into slot B and commits it.
func (g *rig) commitV2() {
	g.t.Helper()
	g.repo.Publish(g.t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
		g.t.Fatal(err)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		g.t.Fatal(err)
	}
	if rec := g.journal.Record(); rec.Installed.Name != "v2" {
		g.t.Fatalf("v2 not committed: %+v", rec)
	}
}

// TestPlainRebootsKeepCommittedSlot: after a commit, ordinary reboots
// must not drain the slot's attempts into a fallback to the old release.
func TestPlainRebootsKeepCommittedSlot(t *testing.T) {
	g := newRig(t, nil, "")
	g.commitV2()
	for i := range 5 {
		s, err := g.dev.Board.Boot()
		if err != nil || s != "B" {
			t.Fatalf("reboot %d booted %s (%v), want B", i+1, s, err)
		}
		g.start()
		if err := g.engine.Resume(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	env, _ := g.dev.Board.Env.Load()
	if env["BOOT_B_LEFT"] != "3" {
		t.Fatalf("boot state %v: B's attempts not refilled", env)
	}
}

// TestUnexpectedFallbackReported: the committed slot stops booting; the
// bootloader falls back to A and the agent says so, and knows what runs.
func TestUnexpectedFallbackReported(t *testing.T) {
	g := newRig(t, nil, "")
	g.commitV2()
	for range 3 { // B panics three times before the agent starts
		if _, err := g.dev.Board.Boot(); err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := g.dev.Board.Boot(); s != "A" {
		t.Fatalf("bootloader chose %s after B's attempts ran out, want A", s)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := g.last(); l.State != transport.StateRolledBack || l.Release != "v2" || l.Slot != "A" || l.Reason == "" {
		t.Fatalf("last report %+v: want v2 reported rolled back to A", l)
	}
	if rec := g.journal.Record(); rec.Installed.Slot != "A" || rec.Installed.Name != "" {
		t.Fatalf("journal %+v: want the factory release in A installed", rec)
	}
}

// TestNoticeDuringUpdate: a new notice while a download keeps failing
// resumes the update in flight first and reports the failure for retry.
func TestNoticeDuringUpdate(t *testing.T) {
	g := newRig(t, nil, "")
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 3<<20)})
	g.repo.CutAfter.Store(1 << 20) // each response is cut after 1 MiB: three tries are needed
	if err := g.install("v2"); err == nil {
		t.Fatal("want a transfer error")
	}
	g.repo.Publish(t, agenttest.Release{Name: "v3", Sequence: 3, Image: agenttest.Image("v3", true, 1<<20)})
	if err := g.install("v3"); err == nil || errors.Is(err, engine.ErrRefused) {
		t.Fatalf("notice of v3 during v2's failing download = %v, want v2's transfer error (retry)", err)
	}
	if u := g.journal.Record().Update; u == nil || u.Release.Name != "v2" {
		t.Fatalf("update in flight %+v, want v2 kept", u)
	}
	g.repo.CutAfter.Store(0)
	if err := g.install("v3"); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("retry = %v, want v2 to finish and reboot", err)
	}
	if u := g.journal.Record().Update; u == nil || u.Release.Name != "v2" {
		t.Fatalf("update %+v, want v2 waiting for its reboot", u)
	}
}

func (g *rig) untouchedAfterRollback(seq uint64) {
	g.t.Helper()
	rec := g.journal.Record()
	if rec.Update != nil || rec.RolledBack != seq || rec.Installed.Name != "" {
		g.t.Fatalf("journal %+v", rec)
	}
	env, _ := g.dev.Board.Env.Load()
	if env["BOOT_ORDER"] != "A B" || env["BOOT_B_LEFT"] != "0" || env["BOOT_A_LEFT"] == "0" {
		g.t.Fatalf("boot state %v: want A first and B marked bad", env)
	}
	if !bytes.Equal(g.dev.Slot("A")[:len(g.dev.Factory)], g.dev.Factory) {
		g.t.Fatal("slot A was modified")
	}
}

// TestBootloaderFallback: the new slot never comes up (its kernel
// panics), the bootloader spends its one try and boots A; the agent sees
// it from the command line and reports the rollback.
func TestBootloaderFallback(t *testing.T) {
	g := newRig(t, nil, "")
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatal(err)
	}
	// Slot B panics before the agent starts: reset into the bootloader,
	// which falls back to A. With no verdict, the agent tries B once more.
	for try := 1; try <= engine.MaxTries; try++ {
		if s, err := g.dev.Board.Boot(); err != nil || s != "A" {
			t.Fatalf("try %d: boot after the panic chose %s (%v), want the fallback to A", try, s, err)
		}
		g.start()
		err := g.engine.Resume(context.Background())
		if try < engine.MaxTries {
			if !errors.Is(err, engine.ErrRebootPending) || g.last().State != transport.StateRebooting {
				t.Fatalf("try %d: Resume = %v, last %+v; want slot B armed again", try, err, g.last())
			}
			if s, _ := g.dev.Board.Booted(); s != "B" {
				t.Fatalf("try %d: rebooted into %s, want B", try, s)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if l := g.last(); l.State != transport.StateRolledBack || l.Slot != "A" || l.Reason == "" {
		t.Fatalf("last report %+v", l)
	}
	g.untouchedAfterRollback(2)
}

// TestResumeInterruptedDownload: the server cuts the image mid-way; the
// journal keeps the offset and the next try resumes from it.
func TestResumeInterruptedDownload(t *testing.T) {
	g := newRig(t, nil, "")
	img := agenttest.Image("v2", true, 3<<20)
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img})
	g.repo.CutAfter.Store(1 << 20)
	if err := g.install("v2"); err == nil || errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("Install with a cut transfer = %v, want a transfer error", err)
	}
	u := g.journal.Record().Update
	if u == nil || u.Step != journal.StepDownloading || u.Offset <= 0 {
		t.Fatalf("journal update %+v: want a download journalled part-way", u)
	}
	g.repo.CutAfter.Store(0)
	g.start()
	if err := g.engine.Resume(context.Background()); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("Resume = %v, want the install to finish and reboot", err)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec := g.journal.Record(); rec.Installed.Name != "v2" {
		t.Fatalf("journal %+v", rec)
	}
}

// TestBadInput: every bad release is refused or fails with a clear error
// and leaves slot A, the boot state and the journal as they were.
func TestBadInput(t *testing.T) {
	img := agenttest.Image("v2", true, 1<<20)
	tests := []struct {
		name    string
		release string                    // default v2
		board   func(t *testing.T) string // board file overriding sim
		publish func(t *testing.T, r *agenttest.Repo)
		want    error
		// disarmed: the failure came while writing slot B, which is
		// then out of the boot order.
		disarmed bool
	}{
		{name: "malformed manifest", want: manifest.ErrMalformed, publish: func(t *testing.T, r *agenttest.Repo) {
			r.PublishRaw(t, "v2", []byte{0xa1, 0x01, 0xff, 0x00})
		}},
		{name: "another board", want: manifest.ErrWrongBoard, publish: func(t *testing.T, r *agenttest.Repo) {
			r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Boards: []string{"raspberrypi4-64"}, Image: img})
		}},
		{name: "another arch", want: manifest.ErrWrongArch, publish: func(t *testing.T, r *agenttest.Repo) {
			r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Arch: "riscv64", Image: img})
		}},
		{name: "sequence not above installed", release: "v0", want: manifest.ErrOldSequence, publish: func(t *testing.T, r *agenttest.Repo) {
			r.Publish(t, agenttest.Release{Name: "v0", Sequence: 0, Image: img})
		}},
		{name: "image does not match the manifest hash", want: slot.ErrHashMismatch, disarmed: true, publish: func(t *testing.T, r *agenttest.Repo) {
			r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img, SHA256: bytes.Repeat([]byte{7}, 32)})
		}},
		{name: "full disk", want: slot.ErrWrite, disarmed: true,
			board: func(t *testing.T) string {
				// Slot B lives on a 512 KiB tmpfs: writing the 1 MiB image runs
				// out of space for real.
				dir := t.TempDir()
				if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "graft-full", dir).CombinedOutput(); err != nil {
					t.Skipf("cannot mount a small tmpfs here (needs root): %v %s", err, out)
				}
				t.Cleanup(func() { exec.Command("umount", dir).Run() })
				return fmt.Sprintf(`{"name": "sim", "extends": "sim", "slots": {"rootfs": {"A": "slot-a.img", "B": %q}}}`, filepath.Join(dir, "slot-b.img"))
			},
			publish: func(t *testing.T, r *agenttest.Repo) {
				r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			board := ""
			if tt.board != nil {
				board = tt.board(t)
			}
			g := newRig(t, nil, board)
			tt.publish(t, g.repo)
			name := tt.release
			if name == "" {
				name = "v2"
			}
			err := g.install(name)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Install = %v, want %v", err, tt.want)
			}
			if l := g.last(); l.State != transport.StateRefused && l.State != transport.StateFailed {
				t.Errorf("last report %+v: want refused or failed", l)
			}
			g.untouchedBut("", tt.disarmed)
			if entries, _ := os.ReadDir(filepath.Join(g.dev.Dir, "staging")); len(entries) != 0 {
				t.Errorf("staging keeps %d files after a failure", len(entries))
			}
		})
	}
}

// TestExpiredMetadataRefused: a repository whose timestamp expired is
// refused by TUF before any manifest is read.
func TestExpiredMetadataRefused(t *testing.T) {
	clock := time.Now()
	r := agenttest.NewRepo(t, repo.Options{Now: func() time.Time { return clock }})
	g := newRig(t, r, "")
	clock = clock.Add(-48 * time.Hour) // timestamp signed two days ago: expired
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	if err := g.install("v2"); !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("Install = %v, want tuf.ErrExpired", err)
	}
	g.untouched("")
}
