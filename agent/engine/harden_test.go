package engine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf"
)

// A symlink (or a hard link) planted in staging/ under the name the next
// download uses, pointing at the booted slot's file: the download used to
// write the image through it onto slot A. Now the guard removes the entry
// (not its target) and the download goes to a fresh file.
func TestStagingLinkToBootedSlotIsNotFollowed(t *testing.T) {
	for _, kind := range []string{"symlink", "hardlink"} {
		t.Run(kind, func(t *testing.T) {
			g := newRig(t, nil, "")
			img := agenttest.Image("v2", true, 1<<20)
			g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img})
			slotA := filepath.Join(g.dev.Dir, "slot-a.img")
			before, err := os.ReadFile(slotA)
			if err != nil {
				t.Fatal(err)
			}
			staging := filepath.Join(g.dev.Dir, "staging")
			if err := os.MkdirAll(staging, 0o755); err != nil {
				t.Fatal(err)
			}
			planted := filepath.Join(staging, "v2--releases_v2_rootfs.img")
			link := os.Symlink
			if kind == "hardlink" {
				link = os.Link
			}
			if err := link(slotA, planted); err != nil {
				t.Fatal(err)
			}
			if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
				t.Fatalf("Install = %v, want it to wait for the reboot", err)
			}
			after, err := os.ReadFile(slotA)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("the download wrote through the planted link onto the booted slot A")
			}
			if got := g.dev.Slot("B")[:len(img)]; !bytes.Equal(got, img) {
				t.Fatal("slot B does not hold the image")
			}
			fi, err := os.Stat(staging)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Fatalf("staging directory mode %v, want 0700", fi.Mode().Perm())
			}
		})
	}
}

// Deleting (or resetting) journal.json used to reset anti-rollback: an
// older release installed. The sequence floor in the bootloader
// environment now rebuilds the journal's installed sequence.
func TestLostJournalKeepsAntiRollback(t *testing.T) {
	for _, how := range []string{"deleted", "reset"} {
		t.Run(how, func(t *testing.T) {
			g := newRig(t, nil, "")
			g.commitV2()
			env, err := g.dev.Board.Env.Load()
			if err != nil {
				t.Fatal(err)
			}
			if env[slot.FloorVar] != "2" {
				t.Fatalf("%s = %q after committing sequence 2", slot.FloorVar, env[slot.FloorVar])
			}
			jp := filepath.Join(g.dev.Dir, "journal.json")
			switch how {
			case "deleted":
				err = os.Remove(jp)
			case "reset":
				err = os.WriteFile(jp, []byte(`{"schema": 1}`), 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			g.start()
			g.repo.Publish(t, agenttest.Release{Name: "v1-old", Sequence: 1, Image: agenttest.Image("v1-old", true, 1<<20)})
			if err := g.install("v1-old"); !errors.Is(err, engine.ErrRefused) || !errors.Is(err, manifest.ErrOldSequence) {
				t.Fatalf("older release after the journal was %s: %v, want refused as an old sequence", how, err)
			}
			if rec := g.journal.Record(); rec.Installed.Sequence != 2 || rec.Update != nil {
				t.Fatalf("journal %+v: want installed sequence 2 rebuilt, nothing in flight", rec)
			}
			if l := g.last(); l.State != transport.StateRefused || l.Release != "v1-old" {
				t.Fatalf("last report %+v, want v1-old refused", l)
			}
			// A newer release still installs.
			g.repo.Publish(t, agenttest.Release{Name: "v3", Sequence: 3, Image: agenttest.Image("v3", true, 1<<20)})
			if err := g.install("v3"); !errors.Is(err, engine.ErrRebootPending) {
				t.Fatalf("newer release: %v", err)
			}
		})
	}
}

// A malformed boot state (BOOT_ORDER naming a slot the board does not
// have, a counter that is not a number) used to fail every start of the
// agent (Resume) and every update, in a loop. Now it is repaired.
func TestMalformedBootStateIsRepaired(t *testing.T) {
	g := newRig(t, nil, "")
	env, err := g.dev.Board.Env.Load()
	if err != nil {
		t.Fatal(err)
	}
	env["BOOT_ORDER"], env["BOOT_B_LEFT"] = "A Z", "zz"
	if err := g.dev.Board.Env.Save(env); err != nil {
		t.Fatal(err)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatalf("Resume with a malformed boot state: %v", err)
	}
	env, err = g.dev.Board.Env.Load()
	if err != nil {
		t.Fatal(err)
	}
	if env["BOOT_ORDER"] != "A B" || env["BOOT_A_LEFT"] != "3" || env["BOOT_B_LEFT"] != "3" {
		t.Fatalf("boot state after repair: %v", env)
	}
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("install after the repair: %v", err)
	}
}

// A man in the middle tampers with the image in transit: the hash check
// refuses it (no byte reaches a slot), and the release used to be failed
// for good, ignored until the fleet notified again. Now the failure is
// marked for retry: the same notice is tried again and, once the network
// is clean, installs. A failure about the release itself stays final.
func TestTamperedDownloadIsRetriedNotBlocked(t *testing.T) {
	g := newRig(t, nil, "")
	img := agenttest.Image("v2", true, 1<<20)
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img})
	n := transport.Notice{Release: "v2", Manifest: agenttest.ManifestTarget("v2"), Time: 1}
	g.repo.Tamper.Store(true)
	err := g.engine.Install(context.Background(), n)
	if !errors.Is(err, engine.ErrRetry) || !errors.Is(err, tuf.ErrHash) {
		t.Fatalf("tampered download: %v, want ErrRetry with the hash error", err)
	}
	g.untouched("")
	if l := g.last(); l.State != transport.StateFailed || l.Release != "v2" {
		t.Fatalf("last report %+v, want v2 failed (for now)", l)
	}
	if rec := g.journal.Record(); rec.Last == nil || !rec.Last.Retry {
		t.Fatalf("journal outcome %+v, want it marked for retry", rec.Last)
	}
	// The same notice again (a back-off later), the network clean now.
	g.repo.Tamper.Store(false)
	if err := g.engine.Install(context.Background(), n); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("same notice after the tampering stopped: %v, want it installed", err)
	}
	if got := g.dev.Slot("B")[:len(img)]; !bytes.Equal(got, img) {
		t.Fatal("slot B does not hold the image")
	}

	// Final: a release for another board is refused, and not retried.
	g2 := newRig(t, nil, "")
	g2.repo.Publish(t, agenttest.Release{Name: "other", Sequence: 2, Image: img, Boards: []string{"rpi4"}})
	if err := g2.install("other"); !errors.Is(err, engine.ErrRefused) || errors.Is(err, engine.ErrRetry) {
		t.Fatalf("release for another board: %v, want refused for good", err)
	}
}

// A link planted beside the staging file (the partial file a TUF client
// may write through first) is swept too.
func TestStagingSweepsPlantedEntries(t *testing.T) {
	g := newRig(t, nil, "")
	img := agenttest.Image("v2", true, 1<<20)
	g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img})
	slotA := filepath.Join(g.dev.Dir, "slot-a.img")
	staging := filepath.Join(g.dev.Dir, "staging")
	if err := os.MkdirAll(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"v2--releases_v2_rootfs.img.part", "anything"} {
		if err := os.Symlink(slotA, filepath.Join(staging, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(staging, "v2--releases_v2_rootfs.img.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("Install = %v", err)
	}
	left, err := os.ReadDir(staging)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if e.Type()&os.ModeSymlink != 0 || e.IsDir() {
			t.Errorf("planted entry %s is still in staging/", e.Name())
		}
	}
	if fi, err := os.Lstat(slotA); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("slot A: %v %v", fi, err)
	}
	if !bytes.Equal(g.dev.Slot("A")[:len(g.dev.Factory)], g.dev.Factory) {
		t.Fatal("slot A was modified")
	}
}
