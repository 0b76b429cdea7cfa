package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/cli"
	"github.com/graft-dev/graft/tuf/repo"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = cli.Run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

// TestOfflineInstallAndMarkGood: install from a TUF repository on a
// directory, boot the new slot, mark it good by hand.
func TestOfflineInstallAndMarkGood(t *testing.T) {
	r := agenttest.NewRepo(t, repo.Options{})
	img := agenttest.Image("v2", true, 1<<20)
	r.Publish(t, agenttest.Release{Name: "v1", Sequence: 1, Image: agenttest.Image("v1", true, 1<<10), Boards: []string{"raspberrypi4-64"}})
	r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: img})
	dev := agenttest.NewDevice(t, r, "bench-1", agenttest.DeviceOptions{})
	if _, err := dev.Board.Boot(); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Dir(r.MetadataDir())

	code, out, errOut := run(t, "install", "--offline", repoDir, "--config", dev.Config)
	if code != 0 || !strings.Contains(out, "slot B") {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "100%") {
		t.Errorf("install showed no progress:\n%s", errOut)
	}
	var st struct {
		Booted string `json:"booted_slot"`
		Update *struct {
			Step string `json:"step"`
		} `json:"update"`
		Installed struct {
			Name string `json:"name"`
		} `json:"installed"`
	}
	code, out, _ = run(t, "status", "--json", "--config", dev.Config)
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status: exit %d, %v\n%s", code, err, out)
	}
	if st.Update == nil || st.Update.Step != "rebooting" || st.Booted != "A" {
		t.Fatalf("status after install: %s", out)
	}
	// An update is in flight: another install finishes it first (v2's
	// reboot is still pending) before looking at v1.
	if code, out, errOut := run(t, "install", "--offline", repoDir, "--config", dev.Config, "--release", "v1"); code != 0 || !strings.Contains(out, "reboot to try it") {
		t.Fatalf("second install: exit %d: %s%s", code, out, errOut)
	}

	if s, _ := dev.Board.Boot(); s != "B" {
		t.Fatalf("bootloader chose %s, want B", s)
	}
	// Without the daemon's health checks, the new slot waits for a verdict.
	if code, out, errOut := run(t, "install", "--offline", repoDir, "--config", dev.Config); code != 0 || !strings.Contains(out, "mark-good") {
		t.Fatalf("install after the reboot: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, "mark-good", "--config", dev.Config); code != 0 || !strings.Contains(out, "slot B") {
		t.Fatalf("mark-good: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, "status", "--json", "--config", dev.Config)
	st.Update = nil
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Update != nil || st.Installed.Name != "v2" || st.Booted != "B" {
		t.Fatalf("status after mark-good: %s", out)
	}
	var slots []struct {
		Name   string `json:"name"`
		Booted bool   `json:"booted"`
		Left   int    `json:"attempts_left"`
	}
	code, out, _ = run(t, "slots", "--json", "--config", dev.Config)
	if err := json.Unmarshal([]byte(out), &slots); code != 0 || err != nil || len(slots) != 2 || !slots[1].Booted || slots[1].Left != 3 {
		t.Fatalf("slots: %s", out)
	}
	if !bytes.Equal(dev.Slot("B")[:len(img)], img) {
		t.Fatal("slot B does not hold v2")
	}
}

func TestTUFCommands(t *testing.T) {
	clock := time.Now()
	r := agenttest.NewRepo(t, repo.Options{Now: func() time.Time { return clock }})
	target := r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<10)})
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.json")
	os.WriteFile(rootFile, root, 0o644)
	md := filepath.Join(dir, "metadata")
	urls := []string{"--metadata-dir", md, "--metadata-url", r.URL + "/metadata", "--targets-url", r.URL + "/targets", "--target-dir", dir}

	if code, _, e := run(t, "tuf", "init", rootFile, "--metadata-dir", md); code != 0 {
		t.Fatalf("tuf init: %d %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(md, "root.json")); err != nil {
		t.Fatal("root.json not stored under its plain name")
	}
	// refresh needs no --targets-url: it never fetches a target
	if code, out, e := run(t, "tuf", "refresh", "--metadata-dir", md, "--metadata-url", r.URL+"/metadata"); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("tuf refresh without --targets-url: %d %s %s", code, out, e)
	}
	code, out, e := run(t, "tuf", "refresh", "--json", "--metadata-dir", md, "--metadata-url", r.URL+"/metadata")
	var status struct {
		Valid  bool      `json:"valid"`
		Floor  time.Time `json:"floor"`
		Behind bool      `json:"clock_behind"`
	}
	if err := json.Unmarshal([]byte(out), &status); code != 0 || err != nil || !status.Valid || status.Floor.IsZero() || status.Behind {
		t.Fatalf("tuf refresh --json: %d %q %s", code, out, e)
	}
	// each subcommand's --help is its own
	code, out, e = run(t, "tuf", "init", "--help")
	if code != 0 || !strings.Contains(out+e, "tuf init ROOT_FILE") || strings.Contains(out+e, "targets-url") {
		t.Fatalf("tuf init --help: %d %q", code, out)
	}
	code, out, e = run(t, append([]string{"tuf", "download", target}, urls...)...)
	if code != 0 {
		t.Fatalf("tuf download: %d %s", code, e)
	}
	if _, err := os.Stat(strings.TrimSpace(out)); err != nil {
		t.Fatalf("downloaded file %q: %v", out, err)
	}
	if code, _, _ := run(t, append([]string{"tuf", "download", "releases/nope"}, urls...)...); code != 1 {
		t.Errorf("unknown target: exit %d, want 1", code)
	}
	// Metadata signed two days ago has expired: refused, exit 1, one line.
	clock = clock.Add(-48 * time.Hour)
	r.Publish(t, agenttest.Release{Name: "v3", Sequence: 3, Image: agenttest.Image("v3", true, 1<<10)})
	code, _, e = run(t, "tuf", "refresh", "--metadata-dir", md, "--metadata-url", r.URL+"/metadata", "--time", clock.Add(-time.Hour).Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("tuf refresh --time inside the validity: %d %s", code, e)
	}
	code, _, e = run(t, "tuf", "refresh", "--metadata-dir", md, "--metadata-url", r.URL+"/metadata")
	if code != 1 || strings.Count(strings.TrimSpace(e), "\n") != 0 || !strings.Contains(e, "expired") {
		t.Errorf("expired metadata: exit %d, stderr %q; want exit 1 and one line naming the check", code, e)
	}
}

func TestBootenvCommands(t *testing.T) {
	r := agenttest.NewRepo(t, repo.Options{})
	dev := agenttest.NewDevice(t, r, "env-1", agenttest.DeviceOptions{})
	cfg := filepath.Join(dev.Dir, "fw_env.config")
	if code, _, e := run(t, "bootenv", "set", "BOOT_ORDER=B A", "upgrade_available=1", "--fw-env-config", cfg); code != 0 {
		t.Fatalf("set: %d %s", code, e)
	}
	code, out, _ := run(t, "bootenv", "get", "BOOT_ORDER", "upgrade_available", "--config", dev.Config)
	if code != 0 || out != "BOOT_ORDER=B A\nupgrade_available=1\n" {
		t.Fatalf("get: exit %d %q", code, out)
	}
	if code, _, _ := run(t, "bootenv", "get", "no_such_var", "--fw-env-config", cfg); code != 1 {
		t.Errorf("get of a missing variable: exit %d, want 1", code)
	}
	if code, _, _ := run(t, "bootenv", "get", "x", "--fw-env-config", cfg, "--grubenv", cfg); code != 2 {
		t.Errorf("two backends: exit %d, want 2", code)
	}
	grub := filepath.Join(t.TempDir(), "grubenv")
	if out, err := exec.Command("grub-editenv", grub, "create").CombinedOutput(); err != nil {
		t.Fatalf("grub-editenv (grub-common): %v %s", err, out)
	}
	if code, _, e := run(t, "bootenv", "set", "BOOT_ORDER=A B", "--grubenv", grub); code != 0 {
		t.Fatalf("grub set: %d %s", code, e)
	}
	if code, out, _ := run(t, "bootenv", "get", "BOOT_ORDER", "--grubenv", grub); code != 0 || out != "BOOT_ORDER=A B\n" {
		t.Fatalf("grub get: %d %q", code, out)
	}
	if out, err := exec.Command("grub-editenv", grub, "list").Output(); err != nil || string(out) != "BOOT_ORDER=A B\n" {
		t.Fatalf("grub-editenv list after graft's set: %q %v", out, err)
	}
}

func TestConfigErrorsAndUsage(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "agent.conf")
	os.WriteFile(bad, []byte("[device]\nid = d1\ncolour = blue\n"), 0o644)
	code, _, e := run(t, "status", "--config", bad)
	if code != 1 || !strings.Contains(e, bad+":3") || !strings.Contains(e, "colour") || strings.Count(strings.TrimSpace(e), "\n") != 0 {
		t.Errorf("unknown key: exit %d, stderr %q; want exit 1 and one line with file:line and key", code, e)
	}
	for _, args := range [][]string{{"frobnicate"}, {"status", "--bogus"}, {"install"}, {"tuf"}, {}} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := run(t, "--help"); code != 0 || !strings.Contains(out, "graft-agent run") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}
