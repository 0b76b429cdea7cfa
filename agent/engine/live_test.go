package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/engine/enginetest"
	"github.com/graft-dev/graft/agent/klp"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
)

// liveRelease publishes release name with kernel patches (by component
// name), optionally a userspace patch "up" and a fallback image.
func liveRelease(t *testing.T, g *rig, name string, seq uint64, kernel []string, user, image bool, edit ...func(*manifest.Manifest)) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	add := func(target string, b []byte) []byte {
		if _, err := g.repo.AddTarget(target, bytes.NewReader(b), nil); err != nil {
			t.Fatal(err)
		}
		files[target] = b
		sum := sha256.Sum256(b)
		return sum[:]
	}
	m := &manifest.Manifest{Format: manifest.FormatVersion, Name: name, Version: "1.0.0", Sequence: seq, Boards: []string{"sim"}}
	fallback := ""
	if image {
		fallback = "rootfs"
		img := agenttest.Image(name, true, 1<<20)
		sum := add(path.Join("releases", name, "rootfs.img"), img)
		m.Components = append(m.Components, manifest.Component{Kind: manifest.KindImage, Name: "rootfs", Image: &manifest.Image{
			SlotGroup: "rootfs", Target: path.Join("releases", name, "rootfs.img"), Size: uint64(len(img)), SHA256: sum}})
	}
	for _, k := range kernel {
		target := path.Join("releases", name, k+".ko")
		sum := add(target, []byte("module "+k+" of "+name))
		m.Components = append(m.Components, manifest.Component{Kind: manifest.KindKernelPatch, Name: k, KernelPatch: &manifest.KernelPatch{
			Target: target, SHA256: sum, Release: "6.1.0-50-amd64", Name: "graft_" + k, Fallback: fallback}})
	}
	if user {
		target := path.Join("releases", name, "libc.ulp")
		sum := add(target, []byte("bundle of "+name))
		m.Components = append(m.Components, manifest.Component{Kind: manifest.KindUserPatch, Name: "up", UserPatch: &manifest.UserPatch{
			Soname: "libc.so.6", Fallback: fallback,
			Bundles: []manifest.PatchBundle{{BuildID: []byte("buildid-0123"), Target: target, SHA256: sum}}}})
	}
	for _, f := range edit {
		f(m)
	}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	g.repo.PublishRaw(t, name, raw)
	return files
}

func liveRig(t *testing.T, policy string, kinds ...manifest.ComponentKind) (*rig, *enginetest.Applier) {
	g := newRig(t, nil, "")
	a := &enginetest.Applier{}
	g.live = map[manifest.ComponentKind]engine.LiveApplier{}
	for _, k := range kinds {
		g.live[k] = a
	}
	g.policy = policy
	g.start()
	return g, a
}

// stagedFiles lists what the engine left in its staging directory.
func stagedFiles(t *testing.T, g *rig) []string {
	ents, _ := os.ReadDir(filepath.Join(g.dev.Dir, "staging"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestLiveFirstAppliesLive(t *testing.T) {
	g, a := liveRig(t, engine.PolicyLiveFirst, manifest.KindKernelPatch, manifest.KindUserPatch)
	files := liveRelease(t, g, "v2", 2, []string{"kp1"}, true, true)
	if err := g.install("v2"); err != nil {
		t.Fatalf("Install = %v, want the live path to end at once", err)
	}
	if !a.IsActive("kp1") || !a.IsActive("up") {
		t.Fatalf("active %v, want kp1 and up", a.Active)
	}
	for target, want := range files {
		if path.Ext(target) != ".img" && !bytes.Equal(a.Seen[target], want) {
			t.Errorf("applier saw %q for %s, want the published bytes", a.Seen[target], target)
		}
	}
	if _, ok := a.Seen["releases/v2/rootfs.img"]; ok {
		t.Error("the fallback image was downloaded on the live path")
	}
	g.untouched("v2")
	rec := g.journal.Record()
	if rec.Installed.Slot != "A" || len(rec.Live) != 2 || rec.Last.Path != engine.PathLive || rec.Deferred != nil {
		t.Errorf("journal %+v: want v2 live on A with 2 live components", rec)
	}
	if l := g.last(); l.State != transport.StateCommitted || l.Path != engine.PathLive || l.Slot != "A" {
		t.Errorf("last report %+v, want committed on the live path", l)
	}
	if s := stagedFiles(t, g); len(s) != 0 {
		t.Errorf("staging keeps %v", s)
	}
}

func TestLiveFallsBackToImage(t *testing.T) {
	stall := klp.ErrStalled
	tests := []struct {
		name      string
		policy    string
		kinds     []manifest.ComponentKind
		checkErr  map[string]error
		applyErr  map[string]error
		wantCalls []string // the applier calls after the checks
	}{
		{"kernel has no livepatch support", "", []manifest.ComponentKind{manifest.KindKernelPatch, manifest.KindUserPatch},
			map[string]error{"kp1": klp.ErrUnsupported}, nil, nil},
		{"no applier for userspace patches", "", []manifest.ComponentKind{manifest.KindKernelPatch}, nil, nil, nil},
		{"policy image-only", engine.PolicyImageOnly, []manifest.ComponentKind{manifest.KindKernelPatch, manifest.KindUserPatch}, nil, nil, nil},
		{"second component stalls: the first is reverted", "", []manifest.ComponentKind{manifest.KindKernelPatch, manifest.KindUserPatch},
			nil, map[string]error{"kp2": stall},
			[]string{"apply kp1", "apply kp2", "revert kp1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, a := liveRig(t, tt.policy, tt.kinds...)
			a.CheckErr, a.ApplyErr = tt.checkErr, tt.applyErr
			liveRelease(t, g, "v2", 2, []string{"kp1", "kp2"}, true, true)
			if err := g.install("v2"); !errors.Is(err, engine.ErrRebootPending) {
				t.Fatalf("Install = %v, want the A/B path waiting for its reboot", err)
			}
			calls := slices.DeleteFunc(a.CallLog(), func(c string) bool { return len(c) > 6 && c[:6] == "check " })
			if !slices.Equal(calls, tt.wantCalls) {
				t.Errorf("applier calls %q, want %q", calls, tt.wantCalls)
			}
			if len(a.Active) != 0 {
				t.Errorf("still active: %v", a.Active)
			}
			if s, _ := g.dev.Board.Booted(); s != "B" {
				t.Fatalf("booted %s, want B (the image tried once)", s)
			}
			rec := g.journal.Record()
			if u := rec.Update; u == nil || u.Path != engine.PathAB || u.Why == "" || u.Release.Slot != "B" {
				t.Fatalf("update in flight %+v: want the A/B path into B with a reason", u)
			}
			if l := g.last(); l.Path != engine.PathAB || l.State != transport.StateRebooting {
				t.Errorf("last report %+v", l)
			}
			g.start()
			if err := g.engine.Resume(context.Background()); err != nil {
				t.Fatal(err)
			}
			if l := g.last(); l.State != transport.StateCommitted || l.Path != engine.PathAB || l.Slot != "B" {
				t.Errorf("after the reboot: %+v, want committed in B", l)
			}
		})
	}
}

func TestLiveRefusedWithoutFallback(t *testing.T) {
	t.Run("cannot apply here", func(t *testing.T) {
		g, a := liveRig(t, "", manifest.KindKernelPatch)
		a.CheckErr = map[string]error{"kp1": klp.ErrWrongKernel}
		liveRelease(t, g, "v2", 2, []string{"kp1"}, false, false)
		if err := g.install("v2"); !errors.Is(err, engine.ErrRefused) || !errors.Is(err, engine.ErrNotLive) {
			t.Fatalf("Install = %v, want ErrRefused and ErrNotLive", err)
		}
		if l := g.last(); l.State != transport.StateRefused || l.Reason == "" {
			t.Errorf("last report %+v, want refused with the reason", l)
		}
		g.untouched("")
	})
	t.Run("apply fails", func(t *testing.T) {
		g, a := liveRig(t, "", manifest.KindKernelPatch)
		a.ApplyErr = map[string]error{"kp2": klp.ErrNotLivepatch}
		liveRelease(t, g, "v2", 2, []string{"kp1", "kp2"}, false, false)
		if err := g.install("v2"); !errors.Is(err, engine.ErrFailed) {
			t.Fatalf("Install = %v, want ErrFailed", err)
		}
		if len(a.Active) != 0 {
			t.Errorf("still active: %v", a.Active)
		}
		if l := g.last(); l.State != transport.StateFailed || l.Path != engine.PathLive {
			t.Errorf("last report %+v", l)
		}
		g.untouched("")
	})
	t.Run("image-only without an image", func(t *testing.T) {
		g, _ := liveRig(t, engine.PolicyImageOnly, manifest.KindKernelPatch)
		liveRelease(t, g, "v2", 2, []string{"kp1"}, false, false)
		if err := g.install("v2"); !errors.Is(err, engine.ErrRefused) {
			t.Fatalf("Install = %v, want ErrRefused", err)
		}
	})
}

// TestLivePowerCutMidApply: the agent stops while the second component
// is being applied; the next start applies what is missing (not the
// first again) and commits.
func TestLivePowerCutMidApply(t *testing.T) {
	g, a := liveRig(t, "", manifest.KindKernelPatch)
	a.Block = map[string]bool{"kp2": true}
	liveRelease(t, g, "v2", 2, []string{"kp1", "kp2"}, false, true)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for !slices.Contains(calls(a), "apply kp2") {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := g.engine.Install(ctx, transport.Notice{Release: "v2", Manifest: agenttest.ManifestTarget("v2")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Install = %v, want it cut off", err)
	}
	if u := g.journal.Record().Update; u == nil || u.Applying != "kp2" || !slices.Equal(u.Applied, []string{"kp1"}) {
		t.Fatalf("journal update %+v: want kp1 applied and kp2 in flight", u)
	}
	a.Block = nil
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := countCalls(a, "apply kp1"); n != 1 {
		t.Errorf("kp1 applied %d times, want once", n)
	}
	if !a.IsActive("kp1") || !a.IsActive("kp2") || g.journal.Record().Installed.Name != "v2" {
		t.Errorf("active %v, journal %+v", a.Active, g.journal.Record())
	}
	g.untouched("v2")
}

func calls(a *enginetest.Applier) []string { return a.CallLog() }

func countCalls(a *enginetest.Applier, c string) int {
	n := 0
	for _, x := range calls(a) {
		if x == c {
			n++
		}
	}
	return n
}

// TestLiveNowImageLater: live now; the image at the window; its commit
// retires the live component, whose fix the image carries.
func TestLiveNowImageLater(t *testing.T) {
	g, a := liveRig(t, engine.PolicyLiveNowImageLater, manifest.KindKernelPatch)
	liveRelease(t, g, "v2", 2, []string{"kp1"}, false, true)
	if err := g.install("v2"); err != nil {
		t.Fatal(err)
	}
	rec := g.journal.Record()
	if !a.IsActive("kp1") || rec.Deferred == nil || rec.Deferred.Image != "rootfs" {
		t.Fatalf("active %v, deferred %+v: want kp1 live and rootfs deferred", a.Active, rec.Deferred)
	}
	if err := g.engine.InstallDeferred(context.Background()); !errors.Is(err, engine.ErrRebootPending) {
		t.Fatalf("InstallDeferred = %v, want the image waiting for its reboot", err)
	}
	g.start()
	if err := g.engine.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec = g.journal.Record()
	if rec.Installed.Name != "v2" || rec.Installed.Slot != "B" || rec.Deferred != nil || len(rec.Live) != 0 {
		t.Errorf("journal %+v: want v2 in slot B, nothing deferred or live", rec)
	}
	if a.IsActive("kp1") {
		t.Error("kp1 still applied after the image carrying its fix committed")
	}
	if err := g.engine.InstallDeferred(context.Background()); err != nil {
		t.Errorf("InstallDeferred with nothing deferred = %v", err)
	}
}

// TestLiveRecordFollowsTheKernel: which earlier kernel patches a new one
// replaced is what the kernel did, not the manifest's replace flag. A
// patch that stacked although its manifest said replace leaves the
// earlier one recorded; one that replaced although its manifest did not
// say so drops it; and at the next start the record follows the kernel.
func TestLiveRecordFollowsTheKernel(t *testing.T) {
	tests := []struct {
		name                   string
		manifestSays, replaces bool
		want                   []string
	}{
		{"stacked although the manifest said replace", true, false, []string{"kp1", "kp2"}},
		{"replaced although the manifest did not say so", false, true, []string{"kp2"}},
		{"stacked as the manifest said", false, false, []string{"kp1", "kp2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, a := liveRig(t, engine.PolicyLiveFirst, manifest.KindKernelPatch)
			a.Replaces = map[string]bool{"kp2": tt.replaces}
			liveRelease(t, g, "v2", 2, []string{"kp1"}, false, false)
			if err := g.install("v2"); err != nil {
				t.Fatal(err)
			}
			liveRelease(t, g, "v3", 3, []string{"kp2"}, false, false, func(m *manifest.Manifest) {
				m.Components[0].KernelPatch.Replace = tt.manifestSays
			})
			if err := g.install("v3"); err != nil {
				t.Fatal(err)
			}
			if got := liveNames(g); !slices.Equal(got, tt.want) {
				t.Errorf("journal's live components %v, want %v (the kernel has %v)", got, tt.want, a.Active)
			}
			// The kernel loses kp1 (say it was reverted by hand): the
			// next start follows.
			a.Revert(t.Context(), &manifest.Component{Name: "kp1"})
			g.start()
			if err := g.engine.Resume(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := liveNames(g); !slices.Equal(got, []string{"kp2"}) {
				t.Errorf("after a start, journal's live components %v, want [kp2]", got)
			}
		})
	}
}

func liveNames(g *rig) []string {
	var out []string
	for _, l := range g.journal.Record().Live {
		out = append(out, l.Component.Name)
	}
	return out
}
