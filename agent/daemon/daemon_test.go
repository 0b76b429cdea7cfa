package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/tuf/repo"
)

// The test binary doubles as the agent: with GRAFT_TEST_AGENT set to a
// config path it runs `graft-agent run`, with journal hooks that SIGKILL
// it at a chosen save (GRAFT_TEST_KILL = "before:N" or "after:N").
func TestMain(m *testing.M) {
	if d, err := time.ParseDuration(os.Getenv("GRAFT_TEST_FAULT_RECHECK")); err == nil {
		daemon.SetFaultRecheck(d)
	}
	if cfg := os.Getenv("GRAFT_TEST_AGENT"); cfg != "" {
		os.Exit(agentMain(cfg))
	}
	os.Exit(m.Run())
}

func agentMain(cfgPath string) int {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	counter := filepath.Join(cfg.DataDir, "test-saves")
	when, n, _ := strings.Cut(os.Getenv("GRAFT_TEST_KILL"), ":")
	killAt, _ := strconv.Atoi(n)
	saves := func() int { b, _ := os.ReadFile(counter); return bytes.Count(b, []byte{'\n'}) }
	hooks := daemon.Hooks{
		BeforeJournal: func(journal.Record) {
			if when == "before" && saves()+1 == killAt {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		},
		OnJournal: func(rec journal.Record) {
			f, _ := os.OpenFile(counter, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			step := "idle"
			if rec.Update != nil {
				step = string(rec.Update.Step)
			}
			fmt.Fprintln(f, step)
			f.Sync()
			f.Close()
			if when == "after" && saves() == killAt {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	err = daemon.Run(ctx, cfg, log, hooks)
	switch {
	case errors.Is(err, daemon.ErrExitForReboot):
		return boards.ExitReboot
	case err != nil:
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	return 0
}

// power runs the device: the simulated bootloader boots a slot, the agent
// (this test binary) runs until it asks for a reboot; a SIGKILLed agent is
// started again in the same boot, as a supervisor would. The kill spec
// applies to the first agent only.
func power(ctx context.Context, t *testing.T, dev *agenttest.Device, kill string, logs *bytes.Buffer) error {
	var mu sync.Mutex
	return dev.Board.Run(ctx, 8, func(ctx context.Context, _ string) (int, error) {
		for restarts := 0; restarts < 4; restarts++ {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "GRAFT_TEST_AGENT="+dev.Config, "GRAFT_TEST_KILL="+kill)
			kill = ""
			mu.Lock()
			cmd.Stdout, cmd.Stderr = logs, logs
			mu.Unlock()
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-ctx.Done():
				cmd.Process.Signal(syscall.SIGTERM)
				<-done
				return 0, nil
			case err := <-done:
				var ee *exec.ExitError
				if errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
					continue // power stays on; the supervisor restarts the agent
				}
				if errors.As(err, &ee) {
					return ee.ExitCode(), nil
				}
				return 0, err
			}
		}
		return 0, errors.New("agent killed too often")
	})
}

type world struct {
	broker *mqtttest.Broker
	repo   *agenttest.Repo
	fleet  *agenttest.Fleet
	image  []byte
}

func newWorld(t *testing.T) *world {
	w := &world{broker: mqtttest.StartMosquitto(t), repo: agenttest.NewRepo(t, repo.Options{})}
	w.fleet = agenttest.Watch(t, w.broker.URL())
	w.image = agenttest.Image("v2", true, 1<<20)
	w.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: w.image})
	return w
}

// update runs one device through release v2 with an optional kill and
// checks the outcome: v2 committed in slot B exactly once, slot A intact.
func (w *world) update(t *testing.T, id, kill string) []string {
	dev := agenttest.NewDevice(t, w.repo, id, agenttest.DeviceOptions{Broker: w.broker.URL()})
	w.fleet.Notify(t, id, "v2")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var logs bytes.Buffer
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- power(runCtx, t, dev, kill, &logs) }()
	final, err := w.fleet.WaitFinal(ctx, id, "v2")
	stop()
	if perr := <-ran; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		t.Fatalf("%v\nagent log (end):\n%s", err, tail(logs.String(), 60))
	}
	if final.State != transport.StateCommitted || final.Slot != "B" {
		t.Fatalf("final %+v, want committed in slot B\n%s", final, tail(logs.String(), 60))
	}
	time.Sleep(200 * time.Millisecond) // let duplicates, if any, arrive
	if n := w.fleet.Count(id, "v2", transport.StateCommitted); n != 1 {
		t.Errorf("fleet saw %d commits of v2, want exactly 1", n)
	}
	j, err := journal.Open(filepath.Join(dev.Dir, "journal.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rec := j.Record(); rec.Update != nil || rec.Installed.Name != "v2" || rec.Installed.Slot != "B" {
		t.Errorf("journal %+v", rec)
	}
	env, err := dev.Board.Env.Load()
	if err != nil {
		t.Fatal(err)
	}
	if env["BOOT_ORDER"] != "B A" || env["BOOT_B_LEFT"] != "3" {
		t.Errorf("boot state %v, want B good and first", env)
	}
	if !bytes.Equal(dev.Slot("A")[:len(dev.Factory)], dev.Factory) {
		t.Error("slot A was harmed")
	}
	if !bytes.Equal(dev.Slot("B")[:len(w.image)], w.image) {
		t.Error("slot B does not hold v2")
	}
	b, _ := os.ReadFile(filepath.Join(dev.Dir, "test-saves"))
	return strings.Fields(string(b))
}

// TestKillAtEveryJournalStep SIGKILLs the agent just before and just after
// each journal save of an update, restarts it, and checks that the update
// still completes cleanly every time.
func TestKillAtEveryJournalStep(t *testing.T) {
	w := newWorld(t)
	steps := w.update(t, "clean", "")
	t.Logf("an undisturbed update journals %d saves: %s", len(steps), strings.Join(steps, " "))
	if len(steps) < 8 {
		t.Fatalf("only %d journal saves; the lifecycle has more steps", len(steps))
	}
	for i := 1; i <= len(steps); i++ {
		for _, when := range []string{"before", "after"} {
			spec := fmt.Sprintf("%s:%d", when, i)
			t.Run(spec, func(t *testing.T) {
				t.Parallel()
				w.update(t, fmt.Sprintf("kill-%s-%d", when, i), spec)
			})
		}
	}
}

// TestBrokerRestartMidUpdate restarts mosquitto while the device downloads:
// the agent reconnects (subscriptions made again on connect), the update
// completes, and the events produced while the broker was down arrive.
func TestBrokerRestartMidUpdate(t *testing.T) {
	w := newWorld(t)
	w.repo.BytesPerSecond.Store(512 << 10) // 1 MiB image: about 2 s of download
	id := "restart-1"
	restarted := make(chan bool, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, s := range w.fleet.Of(id) {
				if s.State == transport.StateDownloading && s.Total > 0 && s.Done < s.Total {
					w.broker.Restart()
					restarted <- true
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		restarted <- false
	}()
	w.update(t, id, "")
	if !<-restarted {
		t.Fatal("the broker was never restarted mid-download")
	}
	var downloading []int64
	for _, s := range w.fleet.Of(id) {
		if s.State == transport.StateDownloading && s.Total > 0 {
			downloading = append(downloading, s.Done)
		}
	}
	if len(downloading) < 3 {
		t.Errorf("fleet saw download progress %v: events from the broker's downtime are missing", downloading)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
