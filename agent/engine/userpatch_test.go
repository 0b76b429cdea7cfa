package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/transport"
)

// TestUserPatchThroughTheEngine: a release carrying a userspace live
// patch, published in a real TUF repository, reaches a running process
// through the engine and the real ptrace applier — the live path, no
// reboot. A later release whose bundle is for another build of the
// library cannot be applied live here and takes its fallback image, and
// the report says why.
func TestUserPatchThroughTheEngine(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the host fixtures are built for linux/amd64")
	}
	fix, err := userpatchtest.Build(context.Background(), "amd64", t.TempDir(), userpatchtest.HostLibs())
	if err != nil {
		t.Fatal(err)
	}
	prog := startLines(t, fix.Path(userpatchtest.GTProg), "2")
	prog.wait(t, userpatchtest.GTBefore)

	g := newRig(t, nil, "")
	ap, err := userpatch.NewApplier(g.dev.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	g.live = map[manifest.ComponentKind]engine.LiveApplier{manifest.KindUserPatch: ap}
	g.start()

	publishUserPatch(t, g, "v2", 2, fix.Path(userpatchtest.GTBundle), fix.LibGT)
	if err := g.install("v2"); err != nil {
		t.Fatalf("Install v2: %v (reports %+v)", err, g.reports)
	}
	prog.wait(t, userpatchtest.GTAfter)
	if l := g.last(); l.State != transport.StateCommitted || l.Path != engine.PathLive {
		t.Fatalf("last report %+v, want committed on the live path", l)
	}
	g.untouched("v2")
	if act := ap.Manager().Active(); len(act) != 1 || len(act[0].Procs) == 0 {
		t.Fatalf("active patches %+v, want gt-value-fix carried by the running process", act)
	}

	// A bundle for another build: gtprog maps a libgt.so no bundle is for.
	publishUserPatch(t, g, "v3", 3, fix.Path(userpatchtest.OtherBuild), fix.LibGT)
	err = g.install("v3")
	why := ""
	for _, r := range g.reports {
		if r.Release == "v3" && strings.Contains(r.Reason, "no bundle") {
			why = r.Reason
		}
	}
	if l := g.last(); l.Path != engine.PathAB || why == "" {
		t.Errorf("v3: Install = %v, reports %+v: want the A/B path, saying no bundle is for the mapped build", err, g.reports)
	}
	t.Logf("v3 took the A/B path: %s", why)
	prog.wait(t, userpatchtest.GTAfter) // v2's patch stays in place meanwhile
}

// publishUserPatch publishes a release with a userspace live patch made of
// one bundle file and a fallback image.
func publishUserPatch(t *testing.T, g *rig, name string, seq uint64, bundleFile, soname string) {
	t.Helper()
	raw, err := os.ReadFile(bundleFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := userpatchDecode(raw)
	if err != nil {
		t.Fatal(err)
	}
	img := agenttest.Image(name, true, 1<<20)
	imgTarget, bTarget := path.Join("releases", name, "rootfs.img"), path.Join("releases", name, "libgt.ulp")
	for target, data := range map[string][]byte{imgTarget: img, bTarget: raw} {
		if _, err := g.repo.AddTarget(target, bytes.NewReader(data), nil); err != nil {
			t.Fatal(err)
		}
	}
	isum, bsum := sha256.Sum256(img), sha256.Sum256(raw)
	m := &manifest.Manifest{Format: manifest.FormatVersion, Name: name, Version: "1.0.0", Sequence: seq, Boards: []string{"sim"},
		Components: []manifest.Component{
			{Kind: manifest.KindImage, Name: "rootfs", Image: &manifest.Image{SlotGroup: "rootfs", Target: imgTarget, Size: uint64(len(img)), SHA256: isum[:]}},
			{Kind: manifest.KindUserPatch, Name: "gt-fix", UserPatch: &manifest.UserPatch{Soname: soname, Fallback: "rootfs",
				Bundles: []manifest.PatchBundle{{BuildID: b, Target: bTarget, SHA256: bsum[:]}}}},
		}}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	g.repo.PublishRaw(t, name, enc)
}

// lineProc is a program whose latest stdout line a test watches.
type lineProc struct {
	mu   sync.Mutex
	last string
	done chan struct{}
}

func startLines(t *testing.T, name string, args ...string) *lineProc {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &lineProc{done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.last = sc.Text()
			p.mu.Unlock()
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	return p
}

func (p *lineProc) wait(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		last := p.last
		p.mu.Unlock()
		if strings.HasPrefix(last, prefix) {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("program exited; last line %q", last)
		case <-time.After(2 * time.Millisecond):
		}
	}
	t.Fatalf("program never printed %q", prefix)
}

func userpatchDecode(raw []byte) ([]byte, error) {
	b, err := ulp.Decode(raw)
	if err != nil {
		return nil, err
	}
	return b.BuildID, nil
}
