package userpatch_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
	"github.com/graft-dev/graft/manifest/ulp"
)

// Environment of TestAgentCrashChild, set by TestAgentCrash.
const (
	crashEnv    = "GRAFT_ULP_CRASH" // apply or revert
	crashDirEnv = "GRAFT_ULP_CRASH_DIR"
)

// crashStore writes the journal as the agent does (DataDir/userpatch.json)
// and ends the process — a crash — when asked to write it the n-th time.
type crashStore struct {
	path string
	n    int
}

func (s *crashStore) SavePatches(a []userpatch.Active) error {
	s.n--
	if s.n == 0 {
		os.Exit(3)
	}
	b, err := json.Marshal(struct {
		Patches []userpatch.Active `json:"patches"`
	}{a})
	if err != nil {
		return err
	}
	return os.WriteFile(s.path, b, 0o600)
}

// TestAgentCrash: the agent dies between writing the trampolines and
// journalling them, and later between a revert and journalling it. At
// restart the journal, reconciled with what the process holds, has the
// process carrying the patch (so it can be reverted), and then the
// patch reverted (so it is not applied again).
func TestAgentCrash(t *testing.T) {
	hostOnly(t)
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "1")
	p.waitFor(t, userpatchtest.GTBefore)
	dir := t.TempDir()
	raw, err := os.ReadFile(f.Path(userpatchtest.GTBundle))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gt.ulp"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	child := func(phase string) {
		t.Helper()
		self, _ := os.Executable()
		cmd := exec.Command(self, "-test.run=^TestAgentCrashChild$", "-test.v")
		cmd.Env = append(os.Environ(), crashEnv+"="+phase, crashDirEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Fatalf("%s: the agent did not crash where asked: %v\n%s", phase, err, out)
		}
	}
	child("apply")
	p.waitFor(t, userpatchtest.GTAfter)
	ap, err := userpatch.NewApplier(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	act := ap.Manager().Active()
	ap.Close()
	if len(act) != 1 || !carried(act[0], p.pid()) {
		t.Fatalf("after a crash between apply and journal: %+v, want pid %d carrying the patch", act, p.pid())
	}
	child("revert")
	p.waitFor(t, userpatchtest.GTBefore)
	ap, err = userpatch.NewApplier(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { ap.Run(ctx); close(ran) }()
	time.Sleep(3 * userpatch.RescanInterval)
	cancel()
	<-ran
	if p.waitForWithin(t, userpatchtest.GTAfter, 50*time.Millisecond) {
		t.Fatal("after a crash between revert and journal, the restarted agent applied the patch again")
	}
	st, _ := userpatch.LoadState(dir)
	if len(st) != 1 || !st[0].Reverted() {
		t.Fatalf("journal after the restart: %+v, want the patch reverted", st)
	}
	p.alive(t)
}

// TestAgentCrashChild is TestAgentCrash's agent.
func TestAgentCrashChild(t *testing.T) {
	phase, dir := os.Getenv(crashEnv), os.Getenv(crashDirEnv)
	if phase == "" {
		t.Skip("run by TestAgentCrash")
	}
	store := &crashStore{path: filepath.Join(dir, "userpatch.json"), n: 2}
	restored, err := userpatch.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := userpatch.NewManager(store, nil, userpatch.Options{}, restored)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	switch phase {
	case "apply":
		raw, _ := os.ReadFile(filepath.Join(dir, "gt.ulp"))
		b, err := ulp.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Add(ctx, b, filepath.Join(dir, "gt.ulp"))
		t.Fatalf("Add returned (%+v, %v) without writing the journal twice", res, err)
	case "revert":
		res, err := m.Remove(ctx, restored[0].Name)
		t.Fatalf("Remove returned (%+v, %v) without writing the journal twice", res, err)
	}
}
