package engine_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/engine"
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
