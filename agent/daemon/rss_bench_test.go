package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/tuf/repo"
)

// rssTarget is the idle resident set the agent must stay under, in bytes.
const rssTarget = 5_000_000

// rssSample is one reading of /proc/PID/status.
type rssSample struct {
	what string
	st   map[string]int64
}

// TestIdleRSSBench measures the resident memory of a real graft-agent
// binary (built as it ships: static, stripped) on the simulated board,
// connected to a real mosquitto, side by side in one run: idle before the
// agent's own trim (agent/memtrim, daemon.IdleTrimDelay after it goes
// idle), idle after it and an MQTT keepalive, and the same two after an
// A/B update (the agent that booted the new slot and committed it). It
// asserts nothing about the figures, only that the agent comes online,
// commits the update and stops on SIGTERM. GOGC and GOMEMLIMIT pass
// through from the environment to try other settings.
func TestIdleRSSBench(t *testing.T) {
	if os.Getenv("GRAFT_BENCH") == "" {
		t.Skip("set GRAFT_BENCH=1 (make bench)")
	}
	bin := filepath.Join(t.TempDir(), "graft-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/graft-dev/graft/agent/cmd/graft-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build graft-agent: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}

	broker := mqtttest.StartMosquitto(t)
	r := agenttest.NewRepo(t, repo.Options{})
	r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	dev := agenttest.NewDevice(t, r, "rss-1", agenttest.DeviceOptions{Broker: broker.URL()})
	fleet := agenttest.Watch(t, broker.URL())
	online := rssWatchOnline(t, broker.URL(), dev.ID)

	// Each boot of the simulated board starts the real binary; pids tells
	// the measuring side which process runs now.
	var logs rssLog
	pids := make(chan int, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ran := make(chan error, 1)
	go func() {
		ran <- dev.Board.Run(ctx, 4, func(ctx context.Context, _ string) (int, error) {
			cmd := exec.Command(bin, "run", "--config", dev.Config)
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			pids <- cmd.Process.Pid
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-ctx.Done():
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(15 * time.Second):
					cmd.Process.Kill()
					<-done
					return 0, fmt.Errorf("graft-agent (pid %d) ignored SIGTERM for 15s", cmd.Process.Pid)
				}
				return 0, nil
			case err := <-done:
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return ee.ExitCode(), nil
				}
				return 0, err
			}
		})
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		cancel()
		<-ran
		t.Fatalf(format+"\n%s", append(args, logs.String())...)
	}

	const idle = 3 * time.Second
	// after the trim, idle again through an MQTT keepalive (5 s in agent.conf)
	afterTrim := daemon.IdleTrimDelay + 6*time.Second
	var samples []rssSample
	sample := func(pid int, what string) {
		st, err := rssStatus(pid)
		if err != nil {
			fail("%s: %v", what, err)
		}
		samples = append(samples, rssSample{what, st})
	}

	pid := <-pids
	select {
	case <-online:
	case <-time.After(60 * time.Second):
		fail("graft-agent not online after 60s")
	}
	time.Sleep(idle)
	sample(pid, fmt.Sprintf("idle %v, before the trim", idle))
	time.Sleep(afterTrim - idle)
	sample(pid, fmt.Sprintf("idle %v, after the trim", afterTrim))

	fleet.Notify(t, dev.ID, "v2")
	final, err := fleet.WaitFinal(ctx, dev.ID, "v2")
	if err != nil || final.State != transport.StateCommitted {
		fail("v2: %+v %v", final, err)
	}
	select {
	case pid = <-pids:
	default:
		fail("v2 committed without a reboot")
	}
	time.Sleep(idle)
	sample(pid, fmt.Sprintf("after an A/B update, idle %v, before the trim", idle))
	time.Sleep(afterTrim - idle)
	sample(pid, fmt.Sprintf("after an A/B update, idle %v, after the trim", afterTrim))
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("agent: %v\n%s", err, logs.String())
	}

	env := func(k string) string {
		if v, ok := os.LookupEnv(k); ok {
			return v
		}
		return "unset"
	}
	fmt.Printf("idle-rss: graft-agent %s/%s %.2f MiB (static, stripped), sim board, connected to mosquitto; GOGC=%s GOMEMLIMIT=%s; target VmRSS <= 5 MB\n",
		runtime.GOOS, runtime.GOARCH, float64(fi.Size())/(1<<20), env("GOGC"), env("GOMEMLIMIT"))
	for _, s := range samples {
		fmt.Printf("idle-rss:   %-44s VmRSS %5.2f MB = %.2f of target  [RssAnon %.2f MB, RssFile %.2f MB, threads %d]\n",
			s.what, rssMB(s.st["VmRSS"]), float64(s.st["VmRSS"])/rssTarget, rssMB(s.st["RssAnon"]), rssMB(s.st["RssFile"]), s.st["Threads"])
	}
	fmt.Println("idle-rss:   the trim pages out the binary's clean read-only mappings (agent/memtrim); what comes back is the idle working set")
}

func rssMB(b int64) float64  { return float64(b) / 1e6 }
func rssMiB(b int64) float64 { return float64(b) / (1 << 20) }

// rssStatus reads the memory fields of /proc/PID/status, in bytes (the
// kernel's "kB" is KiB), and Threads as a count.
func rssStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	st := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) == 2 && f[1] == "kB" {
			n *= 1024
		}
		st[key] = n
	}
	for _, k := range []string{"VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"} {
		if _, ok := st[k]; !ok {
			return nil, fmt.Errorf("/proc/%d/status has no %s", pid, k)
		}
	}
	return st, nil
}

// rssWatchOnline subscribes to the device's online flag and returns a
// channel that is closed when the flag says true.
func rssWatchOnline(t *testing.T, broker, dev string) <-chan struct{} {
	t.Helper()
	online := make(chan struct{})
	var once sync.Once
	c := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID("rss-watch-" + strconv.Itoa(os.Getpid())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(transport.OnlineTopic(dev), 1, func(_ paho.Client, m paho.Message) {
		if v, err := transport.DecodeOnline(m.Payload()); err == nil && v {
			once.Do(func() { close(online) })
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", transport.OnlineTopic(dev), tok.Error())
	}
	return online
}

// rssLog collects the agent's output, written from exec's goroutines.
type rssLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *rssLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *rssLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
