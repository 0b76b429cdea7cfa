package daemon_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/tuf/repo"
)

// runAgent runs the agent (this test binary, see TestMain) as its own
// process until the test ends, with the fault mode's recheck shortened; it
// returns a channel with the process's end. (In this process, a goroutine
// that ends with its OS thread locked, as the userspace live-patch
// applier's does, takes the thread down, and with it a mosquitto the test
// started from that thread: Pdeathsig.)
func runAgent(t *testing.T, dev *agenttest.Device) (<-chan error, context.CancelFunc) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GRAFT_TEST_AGENT="+dev.Config, "GRAFT_TEST_FAULT_RECHECK=200ms")
	logs := &lockedBuilder{b: &strings.Builder{}}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		done <- err
	}()
	stop := func() { cmd.Process.Signal(syscall.SIGTERM) }
	t.Cleanup(func() {
		stop()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("agent log (end):\n%s", tail(logs.b.String(), 40))
			logs.mu.Unlock()
		}
	})
	return done, stop
}

// waitState waits for a status of dev in state, failing early if the
// agent stops.
func waitState(t *testing.T, f *agenttest.Fleet, id string, done <-chan error, state transport.State) transport.Status {
	t.Helper()
	return waitFor(t, f, id, done, func(s transport.Status) bool { return s.State == state })
}

// waitFor waits for a status of dev that ok accepts, failing early if the
// agent stops.
func waitFor(t *testing.T, f *agenttest.Fleet, id string, done <-chan error, ok func(transport.Status) bool) transport.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() {
		select {
		case err := <-done:
			stopped <- err
			cancel()
		case <-ctx.Done():
		}
	}()
	s, err := f.WaitFor(ctx, id, ok)
	if err != nil {
		select {
		case rerr := <-stopped:
			t.Fatalf("agent stopped (Run = %v) without the status waited for", rerr)
		default:
		}
		t.Fatalf("status waited for did not come: %v (saw %d events)", err, len(f.Of(id)))
	}
	return s
}

// A corrupt journal used to stop the agent at start, in silence, on every
// restart. Now it is moved aside, the fault is reported, the installed
// sequence is rebuilt from the bootloader's floor, and the agent goes on.
func TestCorruptJournalIsReportedAndRebuilt(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	r := agenttest.NewRepo(t, repo.Options{})
	f := agenttest.Watch(t, b.URL())
	dev := agenttest.NewDevice(t, r, "corrupt-1", agenttest.DeviceOptions{Broker: b.URL()})
	boot(t, dev)
	jp := filepath.Join(dev.Dir, "journal.json")
	if err := os.WriteFile(jp, []byte("{\"schema\": 1, \"installed\": {\"sequ"), 0o600); err != nil {
		t.Fatal(err)
	}
	setEnv(t, dev, map[string]string{slot.FloorVar: "7"})
	done, _ := runAgent(t, dev)
	s := waitState(t, f, dev.ID, done, transport.StateFault)
	if !strings.Contains(s.Reason, "journal corrupt") || s.Slot != "A" {
		t.Fatalf("fault status %+v: want the corrupt journal named, slot A", s)
	}
	waitState(t, f, dev.ID, done, transport.StateIdle)
	aside, _ := filepath.Glob(jp + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt journal kept as %q, want one copy", aside)
	}
	j, err := journal.Open(jp)
	if err != nil {
		t.Fatal(err)
	}
	if seq := j.Record().Installed.Sequence; seq != 7 {
		t.Fatalf("rebuilt journal has installed sequence %d, want the floor 7", seq)
	}
}

func boot(t *testing.T, dev *agenttest.Device) {
	t.Helper()
	if _, err := dev.Board.Boot(); err != nil {
		t.Fatal(err)
	}
}

func setEnv(t *testing.T, dev *agenttest.Device, vars map[string]string) {
	t.Helper()
	env, err := dev.Board.Env.Load()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vars {
		env[k] = v
	}
	if err := dev.Board.Env.Save(env); err != nil {
		t.Fatal(err)
	}
}

// mountTmpfs mounts a tmpfs of size at a new directory (root only).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "graft-data", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A full disk and a read-only data directory used to leave the agent
// running but mute (every status lost in the outbox) or stopped. Now it
// connects, reports the fault, keeps slot A bootable (its drained
// attempts refilled), and resumes once the directory recovers.
func TestDataDirFaultIsReported(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	r := agenttest.NewRepo(t, repo.Options{})
	f := agenttest.Watch(t, b.URL())
	for _, kind := range []string{"full", "read-only"} {
		t.Run(kind, func(t *testing.T) {
			dir := mountTmpfs(t, "12m")
			id := "fault-" + strings.ReplaceAll(kind, "-", "")
			dev := agenttest.NewDevice(t, r, id, agenttest.DeviceOptions{Broker: b.URL(), Dir: dir})
			boot(t, dev)
			setEnv(t, dev, map[string]string{"BOOT_A_LEFT": "1"}) // reboots drained slot A
			filler := filepath.Join(dir, "filler")
			switch kind {
			case "full":
				fill(t, filler)
			case "read-only":
				if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
					t.Fatalf("remount ro: %v %s", err, out)
				}
			}
			done, _ := runAgent(t, dev)
			s := waitState(t, f, id, done, transport.StateFault)
			if !strings.Contains(s.Reason, "data directory unusable") || s.Slot != "A" {
				t.Fatalf("fault status %+v", s)
			}
			env, err := dev.Board.Env.Load()
			if err != nil {
				t.Fatal(err)
			}
			if kind == "full" && (env["BOOT_A_LEFT"] != "3" || !strings.HasPrefix(env["BOOT_ORDER"], "A")) {
				t.Fatalf("boot state %v: want slot A first with its attempts refilled", env)
			}
			// The directory recovers: the agent starts over and reports idle.
			switch kind {
			case "full":
				if err := os.Remove(filler); err != nil {
					t.Fatal(err)
				}
			case "read-only":
				if out, err := exec.Command("mount", "-o", "remount,rw", dir).CombinedOutput(); err != nil {
					t.Fatalf("remount rw: %v %s", err, out)
				}
			}
			waitState(t, f, id, done, transport.StateIdle)
		})
	}
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := fh.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for small := 4096; small > 0; small /= 2 { // the last pages too
		for {
			if _, err := fh.Write(buf[:small]); err != nil {
				break
			}
		}
	}
}

// The data directory fills up while the agent runs: the next journal
// save fails, the agent finds the directory unusable and goes to its
// fault mode (it retried in silence before), then resumes when space is
// back and installs the release.
func TestDataDirFillsWhileRunning(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	r := agenttest.NewRepo(t, repo.Options{})
	f := agenttest.Watch(t, b.URL())
	dir := mountTmpfs(t, "12m")
	const id = "fills-1"
	dev := agenttest.NewDevice(t, r, id, agenttest.DeviceOptions{Broker: b.URL(), Dir: dir})
	boot(t, dev)
	done, _ := runAgent(t, dev)
	waitState(t, f, id, done, transport.StateIdle)
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	f.Notify(t, id, "v2")
	s := waitState(t, f, id, done, transport.StateFault)
	if !strings.Contains(s.Reason, "data directory unusable") {
		t.Fatalf("fault status %+v", s)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, f, id, done, func(s transport.Status) bool {
		return s.Release == "v2" && (s.State == transport.StateRebooting || transport.State(s.State) == transport.StateCommitted)
	})
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
