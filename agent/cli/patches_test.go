package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
	"github.com/graft-dev/graft/tuf/repo"
)

// TestPatchesAndRevert: a live patch applied by the agent is listed by
// `patches` with the process carrying it, and `revert` (no daemon
// running: the command reverts it itself) takes it out of the process.
func TestPatchesAndRevert(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the host fixtures are built for linux/amd64")
	}
	fix, err := userpatchtest.Build(context.Background(), "amd64", t.TempDir(), userpatchtest.HostLibs())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fix.Path(userpatchtest.GTProg), "1")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	waitLine := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l := <-lines:
				if strings.HasPrefix(l, want) {
					return
				}
			case <-deadline:
				t.Fatalf("gtprog never printed %q", want)
			}
		}
	}
	waitLine(userpatchtest.GTBefore)

	r := agenttest.NewRepo(t, repo.Options{})
	dev := agenttest.NewDevice(t, r, "bench-1", agenttest.DeviceOptions{})
	ap, err := userpatch.NewApplier(dev.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fix.Bundle(userpatchtest.GTBundle)
	if err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dev.Dir, "gt.ulp")
	raw, _ := os.ReadFile(fix.Path(userpatchtest.GTBundle))
	os.WriteFile(keep, raw, 0o600)
	if _, err := ap.Manager().Add(context.Background(), b, keep); err != nil {
		t.Fatal(err)
	}
	ap.Close()
	waitLine(userpatchtest.GTAfter)

	code, stdout, stderr := run(t, "patches", "--json", "--config", dev.Config)
	var all struct {
		Userspace []struct {
			Name  string `json:"name"`
			Procs []struct {
				PID     int  `json:"pid"`
				Carries bool `json:"carries"`
			} `json:"processes"`
		} `json:"userspace"`
	}
	if err := json.Unmarshal([]byte(stdout), &all); code != 0 || err != nil {
		t.Fatalf("patches: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	found := false
	for _, v := range all.Userspace {
		for _, p := range v.Procs {
			found = found || (v.Name == b.Name && p.PID == cmd.Process.Pid && p.Carries)
		}
	}
	if !found {
		t.Fatalf("patches does not list pid %d carrying %s:\n%s", cmd.Process.Pid, b.Name, stdout)
	}

	code, stdout, stderr = run(t, "revert", b.Name, "--config", dev.Config)
	if code != 0 || !strings.Contains(stdout, "reverted") {
		t.Fatalf("revert: exit %d\n%s%s", code, stdout, stderr)
	}
	waitLine(userpatchtest.GTBefore)
	// The journal, and so `patches`, says reverted.
	code, stdout, stderr = run(t, "patches", "--json", "--config", dev.Config)
	var after struct {
		Userspace []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"userspace"`
	}
	if err := json.Unmarshal([]byte(stdout), &after); code != 0 || err != nil || len(after.Userspace) != 1 || after.Userspace[0].State != "reverted" {
		t.Errorf("patches after the revert: exit %d, %v: want %s reverted\n%s%s", code, err, b.Name, stdout, stderr)
	}
	if code, _, stderr = run(t, "revert", b.Name, "--config", dev.Config); code != 1 || !strings.Contains(stderr, "no active patch") {
		t.Errorf("second revert: exit %d, %s; want exit 1, no active patch", code, stderr)
	}
}
