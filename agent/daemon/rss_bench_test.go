package daemon_test

import (
	"bufio"
	"bytes"
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
	"unsafe"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/tuf/repo"
)

// rssTarget is the idle resident set the agent must stay under, in bytes.
const rssTarget = 8_000_000

// TestIdleRSSBench measures the resident memory of a real graft-agent
// binary (built as it ships: static, stripped) that is connected to a real
// mosquitto and idle on the simulated board. It prints VmRSS and VmHWM
// against the 8 MB target, then VmRSS again after the kernel was asked to
// reclaim the process's pages (MADV_PAGEOUT) and the agent idled through
// a keepalive: what it really keeps using. It asserts nothing about the
// figures, only that the agent comes online and stops on SIGTERM. GOGC
// and GOMEMLIMIT pass through from the environment to try other settings.
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
	dev := agenttest.NewDevice(t, r, "rss-1", agenttest.DeviceOptions{Broker: broker.URL()})
	if _, err := dev.Board.Boot(); err != nil {
		t.Fatal(err)
	}
	online := rssWatchOnline(t, broker.URL(), dev.ID)

	var logs rssLog
	cmd := exec.Command(bin, "run", "--config", dev.Config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return fmt.Errorf("SIGTERM %d: %w", pid, err)
		}
		select {
		case err := <-exited:
			return err
		case <-time.After(15 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("graft-agent (pid %d) ignored SIGTERM for 15s", pid)
		}
	}
	t.Cleanup(func() { stop() })

	select {
	case <-online:
	case err := <-exited:
		stopped = true
		t.Fatalf("graft-agent exited before it was online: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("graft-agent not online after 60s\n%s", logs.String())
	}
	const idle = 3 * time.Second
	time.Sleep(idle)
	st, err := rssStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Then ask the kernel to reclaim what it can of the process (clean
	// file pages; anonymous pages only go to swap, if any), idle again, and
	// see what comes back: the pages the idle agent really keeps using.
	// The second idle spans an MQTT keepalive (5 s in agent.conf).
	const idleAfter = 6 * time.Second
	reclaimErr := rssPageOut(pid)
	time.Sleep(idleAfter)
	after, err := rssStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop graft-agent: %v\n%s", err, logs.String())
	}

	env := func(k string) string {
		if v, ok := os.LookupEnv(k); ok {
			return v
		}
		return "unset"
	}
	fmt.Printf("idle-rss: graft-agent %s/%s %.2f MiB (static, stripped), connected to mosquitto, idle %v after online=true; GOGC=%s GOMEMLIMIT=%s\n",
		runtime.GOOS, runtime.GOARCH, float64(fi.Size())/(1<<20), idle, env("GOGC"), env("GOMEMLIMIT"))
	fmt.Printf("idle-rss:   VmRSS %6.2f MB (%5.2f MiB) = %.2f of the 8 MB target   [RssAnon %.2f MB, RssFile %.2f MB, threads %d]\n",
		rssMB(st["VmRSS"]), rssMiB(st["VmRSS"]), float64(st["VmRSS"])/rssTarget, rssMB(st["RssAnon"]), rssMB(st["RssFile"]), st["Threads"])
	fmt.Printf("idle-rss:   VmHWM %6.2f MB (%5.2f MiB) = %.2f of the 8 MB target   (peak since start) [shared, noisy machine]\n",
		rssMB(st["VmHWM"]), rssMiB(st["VmHWM"]), float64(st["VmHWM"])/rssTarget)
	if reclaimErr != nil {
		fmt.Printf("idle-rss:   after reclaim: not measured (%v)\n", reclaimErr)
		return
	}
	fmt.Printf("idle-rss:   after MADV_PAGEOUT + %v idle: VmRSS %.2f MB (%.2f MiB) = %.2f of the target [RssAnon %.2f MB, RssFile %.2f MB, RssShmem %.2f MB]\n",
		idleAfter, rssMB(after["VmRSS"]), rssMiB(after["VmRSS"]), float64(after["VmRSS"])/rssTarget, rssMB(after["RssAnon"]), rssMB(after["RssFile"]), rssMB(after["RssShmem"]))
	fmt.Println("idle-rss:   RssFile is clean pages of the binary file (the kernel maps page-cache neighbours on every fault), reclaimable under pressure; GOGC/GOMEMLIMIT act on RssAnon only")
}

// rssPageOut asks the kernel to page out every mapping of process pid
// (process_madvise MADV_PAGEOUT; Linux >= 5.10, root).
func rssPageOut(pid int) error {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	var firstErr error
	paged := 0
	for _, line := range strings.Split(strings.TrimSpace(string(maps)), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && strings.HasPrefix(f[5], "[v") { // [vdso], [vvar], [vsyscall]
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		// struct iovec of the other process's addresses: never dereferenced here.
		iov := struct{ base, len uintptr }{uintptr(start), uintptr(end - start)}
		_, _, errno := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd), uintptr(unsafe.Pointer(&iov)), 1, unix.MADV_PAGEOUT, 0, 0)
		if errno != 0 {
			if firstErr == nil {
				firstErr = fmt.Errorf("process_madvise %s: %w", f[0], errno)
			}
			continue
		}
		paged++
	}
	if paged == 0 {
		return firstErr
	}
	return nil
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
