package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/tuf/repo"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// build builds graft-agent and graft-fleet once for the package's tests
// and returns their directory.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "graft-server-bin-"); buildErr != nil {
			return
		}
		for name, pkg := range map[string]string{
			"graft-agent": "github.com/graft-dev/graft/agent/cmd/graft-agent",
			"graft-fleet": "github.com/graft-dev/graft/tools/fleet/cmd/graft-fleet",
		} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %w\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	// graft-fleet seals the repository's keys with this passphrase (as an
	// operator exports it, docs/server.md).
	os.Setenv("GRAFT_KEY_PASSPHRASE", "server test passphrase")
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// tool runs one of the built binaries and returns its standard output.
func tool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// lines keeps the last line a program printed.
type lines struct {
	mu   sync.Mutex
	last string
}

func (l *lines) get() string { l.mu.Lock(); defer l.mu.Unlock(); return l.last }

func startProgram(t *testing.T, path string, args ...string) *lines {
	t.Helper()
	cmd := exec.Command(path, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &lines{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l.mu.Lock()
			l.last = sc.Text()
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); <-done })
	return l
}

func waitLine(t *testing.T, l *lines, prefix string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.HasPrefix(l.get(), prefix) {
			return
		}
	}
	t.Fatalf("program never printed %q (last %q)", prefix, l.get())
}

// TestServerLiveOnly runs the real graft-agent on this host with the
// debian-server board, set up as docs/server.md says (graft-agent init
// with the fleet's root.json), against a real mosquitto and a real TUF
// repository that graft-fleet publishes into. A userspace live patch
// reaches a running process; a release that only an image carries is
// refused, with the reason in its status.
func TestServerLiveOnly(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the live-patch fixtures are built for linux/amd64")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := build(t)
	agent, fleetTool := filepath.Join(bin, "graft-agent"), filepath.Join(bin, "graft-fleet")
	fix, err := userpatchtest.Build(ctx, "amd64", t.TempDir(), userpatchtest.HostLibs())
	if err != nil {
		t.Fatal(err)
	}
	prog := startProgram(t, fix.Path(userpatchtest.GTProg), "2")
	waitLine(t, prog, userpatchtest.GTBefore)

	broker := mqtttest.StartMosquitto(t)
	r := agenttest.NewRepo(t, repo.Options{})
	fleet := agenttest.Watch(t, broker.URL())
	fleet.OnStatus = func(s transport.Status) { t.Logf("fleet sees %s: %s %s %s", s.Device, s.State, s.Release, s.Reason) }
	repoDir := filepath.Dir(r.MetadataDir())

	// The server: agent.conf, the fleet's root.json, graft-agent init.
	dir := t.TempDir()
	board := "debian-server"
	if ids, err := boards.ReadOSRelease(boards.DefaultOSReleasePath); err == nil && slices.Contains(ids, "debian") {
		if _, err := os.Stat(boards.DefaultCompatiblePath); err != nil {
			board = "auto" // a Debian host without a device tree: detected
		}
	}
	c := config.Default()
	c.DeviceID, c.Board, c.DataDir = "server-1", board, filepath.Join(dir, "var-lib-graft")
	c.Broker, c.KeepAlive = broker.URL(), 5*time.Second
	c.MetadataURL, c.TargetsURL = r.URL+"/metadata", r.URL+"/targets"
	c.LogLevel = "debug"
	conf, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(cfgFile, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(dir, "root.json")
	tool(t, fleetTool, "repo", "root", "--dir", repoDir, "--out", rootFile)
	t.Logf("graft-agent init:\n%s", tool(t, agent, "init", "--root", rootFile, "--config", cfgFile))
	status := tool(t, agent, "status", "--config", cfgFile)
	if !strings.Contains(status, "board debian-server") || !strings.Contains(status, "live-only") {
		t.Fatalf("status does not say live-only on debian-server:\n%s", status)
	}

	run := exec.CommandContext(ctx, agent, "run", "--config", cfgFile)
	var logs syncBuffer
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		run.Process.Signal(os.Interrupt)
		run.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	if _, err := fleet.WaitFor(ctx, c.DeviceID, func(s transport.Status) bool { return s.State == transport.StateIdle }); err != nil {
		t.Fatalf("agent never came online: %v\n%s", err, logs.String())
	}

	// v2: a userspace live patch of the library the running program uses
	// (with a fallback image, which this board never installs).
	img := filepath.Join(dir, "rootfs.img")
	os.WriteFile(img, agenttest.Image("v2", true, 1<<20), 0o644)
	tool(t, fleetTool, "release", "add", "--repo", repoDir, "--name", "v2", "--version", "2.0.0", "--sequence", "2",
		"--board", "debian-server", "--user-patch", fix.Path(userpatchtest.GTBundle), "--soname", fix.LibGT, "--image", img)
	tool(t, fleetTool, "notify", "--broker", broker.URL(), "--repo", repoDir, "--device", c.DeviceID, "v2")
	st, err := fleet.WaitFinal(ctx, c.DeviceID, "v2")
	if err != nil || st.State != transport.StateCommitted || st.Path != "live" {
		t.Fatalf("v2 ended %+v, %v: want committed on the live path\n%s", st, err, logs.String())
	}
	waitLine(t, prog, userpatchtest.GTAfter)
	t.Logf("v2 committed live: the running gtprog now prints %q", prog.get())
	if p := tool(t, agent, "patches", "--config", cfgFile); !regexp.MustCompile(`gt-value-fix +` + regexp.QuoteMeta(fix.LibGT) + `.*1 processes`).MatchString(p) {
		t.Errorf("graft-agent patches does not list the patch:\n%s", p)
	}

	// v3: an image only. Refused, and the status says why.
	os.WriteFile(img, agenttest.Image("v3", true, 1<<20), 0o644)
	tool(t, fleetTool, "release", "add", "--repo", repoDir, "--name", "v3", "--version", "3.0.0", "--sequence", "3",
		"--board", "debian-server", "--image", img)
	tool(t, fleetTool, "notify", "--broker", broker.URL(), "--repo", repoDir, "--device", c.DeviceID, "v3")
	st, err = fleet.WaitFor(ctx, c.DeviceID, func(s transport.Status) bool {
		return s.Release == "v3" && (s.State == transport.StateRefused || agenttest.Final(s))
	})
	if err != nil || st.State != transport.StateRefused || !regexp.MustCompile(`carries only the image rootfs.*live patches only`).MatchString(st.Reason) {
		t.Fatalf("v3: %+v, %v: want refused as live-only\n%s", st, err, logs.String())
	}
	t.Logf("v3 refused: %s", st.Reason)
	waitLine(t, prog, userpatchtest.GTAfter) // v2's patch stays
	if s := tool(t, agent, "status", "--config", cfgFile); !strings.Contains(s, "installed  v2") {
		t.Errorf("status after v3:\n%s", s)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestSystemdUnit checks agent/dist/graft-agent.service: systemd-analyze
// verify where systemd is installed (with ExecStart pointed at a built
// agent), and in any case the keys the setup relies on.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../agent/dist/graft-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]map[string]string{}
	cur := ""
	for i, l := range strings.Split(string(unit), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			cur = l[1 : len(l)-1]
			sections[cur] = map[string]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || cur == "" {
				t.Fatalf("line %d: %q is not KEY=VALUE in a section", i+1, l)
			}
			sections[cur][k] = v
		}
	}
	for _, want := range [][3]string{
		{"Service", "ExecStart", "/usr/local/bin/graft-agent run --config /etc/graft/agent.conf"},
		{"Service", "StateDirectory", "graft"},
		{"Service", "RestartForceExitStatus", "75"},
		{"Service", "Restart", "always"},
		{"Unit", "After", "network-online.target"},
		{"Install", "WantedBy", "multi-user.target"},
	} {
		if got := sections[want[0]][want[1]]; got != want[2] {
			t.Errorf("[%s] %s = %q, want %q", want[0], want[1], got, want[2])
		}
	}
	if sections["Service"]["StateDirectory"] != filepath.Base(config.Default().DataDir) {
		t.Errorf("StateDirectory %q is not the default data_dir %s", sections["Service"]["StateDirectory"], config.Default().DataDir)
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: parse check only")
	}
	dir := t.TempDir()
	agent := filepath.Join(build(t), "graft-agent")
	local := strings.ReplaceAll(string(unit), "/usr/local/bin/graft-agent", agent)
	path := filepath.Join(dir, "graft-agent.service")
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	// verify also complains about units of the host that the sandbox
	// cannot load; only lines about this unit count.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "graft-agent.service") {
			ours = append(ours, l)
		}
	}
	if len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
	t.Logf("systemd-analyze verify %s: %v %s", filepath.Base(path), err, strings.TrimSpace(string(out)))
}
