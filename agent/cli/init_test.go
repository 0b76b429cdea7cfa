package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/tuf/repo"
)

// TestInitSimBoard: from an agent config and the fleet's root.json alone,
// `graft-agent init` prepares the simulated board (slots, U-Boot
// environment with a valid CRC, command line, trusted root) so that an
// offline install works at once; a second init changes nothing; another
// root is refused.
func TestInitSimBoard(t *testing.T) {
	r := agenttest.NewRepo(t, repo.Options{})
	r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.json")
	os.WriteFile(rootFile, root, 0o644)
	c := config.Default()
	c.DeviceID, c.Board, c.DataDir = "sim-1", "sim", filepath.Join(dir, "data")
	c.Broker, c.MetadataURL, c.TargetsURL = "tcp://127.0.0.1:1", r.URL+"/metadata", r.URL+"/targets"
	conf, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "agent.conf")
	os.WriteFile(cfgFile, conf, 0o644)

	// Before init the device cannot even say which slot it booted.
	if code, _, errOut := run(t, "status", "--config", cfgFile); code == 0 {
		t.Fatalf("status before init succeeded")
	} else {
		t.Logf("before init: %s", strings.TrimSpace(errOut))
	}

	code, out, errOut := run(t, "init", "--root", rootFile, "--config", cfgFile)
	if code != 0 {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("init:\n%s", out)
	for _, want := range []string{"trusted TUF root", "slot rootfs.A", "slot rootfs.B", "fw_env.config", "U-Boot environment file", "kernel command line (booted slot A)"} {
		if !strings.Contains(out, want) {
			t.Errorf("init did not report %q", want)
		}
	}
	if code, out, _ := run(t, "bootenv", "get", "BOOT_ORDER", "BOOT_A_LEFT", "--config", cfgFile); code != 0 || out != "BOOT_ORDER=A B\nBOOT_A_LEFT=3\n" {
		t.Errorf("bootenv get after init: exit %d: %q", code, out)
	}
	// The environment is what the real fw_printenv reads.
	if _, err := exec.LookPath("fw_printenv"); err == nil {
		out, err := exec.Command("fw_printenv", "-c", filepath.Join(c.DataDir, "fw_env.config"), "BOOT_ORDER").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "BOOT_ORDER=A B" {
			t.Errorf("fw_printenv: %v: %s", err, out)
		}
	}

	code, out, errOut = run(t, "init", "--root", rootFile, "--config", cfgFile, "--json")
	var again struct {
		Created []string `json:"created"`
	}
	if err := json.Unmarshal([]byte(out), &again); code != 0 || err != nil || len(again.Created) != 0 {
		t.Errorf("second init: exit %d, %v: %s%s", code, err, out, errOut)
	}

	code, out, errOut = run(t, "install", "--offline", filepath.Dir(r.MetadataDir()), "--config", cfgFile)
	if code != 0 || !strings.Contains(out, "slot B") {
		t.Fatalf("install after init: exit %d\n%s%s", code, out, errOut)
	}

	other := agenttest.NewRepo(t, repo.Options{})
	otherRoot, _ := other.Root()
	os.WriteFile(rootFile, otherRoot, 0o644)
	if code, _, errOut := run(t, "init", "--root", rootFile, "--config", cfgFile); code != 1 || !strings.Contains(errOut, "graft-agent init:") {
		t.Errorf("init with another root: exit %d: %s", code, errOut)
	}
	if code, _, _ := run(t, "init", "--config", cfgFile); code != 2 {
		t.Errorf("init without --root: exit %d, want 2", code)
	}
}
