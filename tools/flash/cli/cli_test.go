package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/provision"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/tools/flash/flashtest"
	"github.com/graft-dev/graft/tools/flash/ledger"
	"github.com/graft-dev/graft/tools/flash/station"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/tuf/repo"
)

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestProvisionRealAgent provisions a device whose other end of the pty
// is a real graft-agent process in provisioning mode, through the
// graft-flash command line, then reads the ledger back.
func TestProvisionRealAgent(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "graft-agent")
	if b, err := exec.Command("go", "build", "-o", agent, "github.com/graft-dev/graft/agent/cmd/graft-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	r := agenttest.NewRepo(t, repo.Options{})
	img := agenttest.Image("factory-1", true, 2<<20)
	r.Publish(t, agenttest.Release{Name: "factory-1", Sequence: 1, Boards: []string{flashtest.BoardName}, Image: img})
	caDir := filepath.Join(dir, "ca")
	if _, err := ca.Init(caDir, ca.Options{}); err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(dir, "agent.conf.tmpl")
	os.WriteFile(tmpl, []byte("[device]\nid = {id}\nboard = auto\n[mqtt]\nbroker = tcp://127.0.0.1:1\n[tuf]\nmetadata_url = {repo_url}/metadata\ntargets_url = {repo_url}/targets\n"), 0o644)

	dev := flashtest.NewDevice(t, "cafe01") // lays out the blank disk; its pty is ours
	master, port := flashtest.PTY(t)
	cmd := exec.Command(agent, "provision", "--port", "fd:3", "--board", flashtest.BoardName, "--board-file", dev.BoardFilePath(),
		"--data-dir", dev.Dir, "--soc-serial", dev.Serial)
	cmd.ExtraFiles = []*os.File{master}
	var agentLog bytes.Buffer
	cmd.Stderr = &agentLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() { err := cmd.Wait(); exited <- err; close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})

	led := filepath.Join(dir, "ledger.db")
	common := []string{"--release", "factory-1", "--repo", filepath.Dir(r.MetadataDir()), "--ca", caDir,
		"--config", tmpl, "--id-template", "sim-{serial}", "--ledger", led, "--listen", "127.0.0.1:0", "--wait", "20s"}
	out, errOut, code := run(t, append([]string{"provision", "--port", port, "--json"}, common...)...)
	if code != 0 {
		t.Fatalf("provision: exit %d\n%s\n%s\nagent:\n%s", code, out, errOut, agentLog.String())
	}
	var res []station.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 || res[0].Outcome != ledger.Provisioned {
		t.Fatalf("results %s: %v", out, err)
	}
	// The agent reboots the simulated board: it exits with ExitReboot.
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != boards.ExitReboot {
			t.Fatalf("agent exit: %v\n%s", err, agentLog.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("agent did not reboot\n%s", agentLog.String())
	}
	if st, err := provision.ReadState(dev.Dir); err != nil || !st.Provisioned() {
		t.Fatalf("state %+v %v", st, err)
	}
	if !bytes.Equal(dev.Slot("A")[:len(img)], img) {
		t.Error("slot A does not hold the image")
	}

	out, _, code = run(t, "ledger", "export", "--csv", "--ledger", led)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != 0 || err != nil || len(recs) != 2 {
		t.Fatalf("ledger export: exit %d, %v, %q", code, err, out)
	}
	if row := recs[1]; row[4] != "sim-cafe01" || row[5] != "cafe01" || row[10] != ledger.Provisioned || row[8] == "" {
		t.Errorf("ledger row %v", row)
	}

	// Without the CA key: one clear line, exit 1, no device touched.
	os.Remove(filepath.Join(caDir, ca.KeyFile))
	_, errOut, code = run(t, append([]string{"provision", "--port", port}, common...)...)
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "ca.key") {
		t.Errorf("missing CA key: exit %d, %q", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	if _, _, code := run(t, "provision"); code != exitUsage {
		t.Errorf("provision without flags: exit %d", code)
	}
	if out, _, code := run(t, "--help"); code != 0 || !strings.Contains(out, "graft-flash provision") {
		t.Errorf("--help: %d %q", code, out)
	}
	if _, _, code := run(t, "ledger", "drop"); code != exitUsage {
		t.Errorf("ledger drop: exit %d", code)
	}
}

func TestPortsJSON(t *testing.T) {
	_, port := flashtest.PTY(t)
	out, errOut, code := run(t, "ports", "--json")
	if code != 0 {
		t.Fatalf("ports: exit %d: %s", code, errOut)
	}
	var ports []portView
	if err := json.Unmarshal([]byte(out), &ports); err != nil {
		t.Fatalf("ports --json: %v: %q", err, out)
	}
	_ = port // ptys are not listed as serial ports; the list must still parse
}

func TestInitramfsRefusesWrongBinary(t *testing.T) {
	notELF := filepath.Join(t.TempDir(), "graft-agent")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	_, errOut, code := run(t, "initramfs", "--arch", "arm64", "-o", filepath.Join(t.TempDir(), "i.cpio.gz"), "--agent", notELF)
	if code != 1 || !strings.Contains(errOut, "not an ELF") {
		t.Fatalf("exit %d: %q", code, errOut)
	}
}
