package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/simboard"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/transport"
)

// Options configure a demo run.
type Options struct {
	BinDir string    // holds graft-agent and graft-fleet
	Out    io.Writer // the running commentary
	Keep   bool      // keep the work directory
	// ImageSize is the size of each image (default 24 MiB).
	ImageSize int64
}

// Summary is what the demo saw.
type Summary struct {
	Device   string
	Events   []transport.Status // every status event the fleet received, de-duplicated
	Boots    []string           // the slot of every boot, in order
	Final    transport.Status   // the last status
	Duration time.Duration
	// WorkDir is the work directory when Options.Keep is set: the device's
	// data directory is WorkDir/device.
	WorkDir string
}

const device = "sim-0001"

// Run runs the demo.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.ImageSize == 0 {
		o.ImageSize = 24 << 20
	}
	start := time.Now()
	d := &demo{o: o, sum: &Summary{Device: device}, out: o.Out}
	work, err := os.MkdirTemp("", "graft-demo-")
	if err != nil {
		return nil, err
	}
	d.work = work
	if o.Keep {
		d.sum.WorkDir = work
		d.say("work directory: %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = d.run(ctx)
	d.sum.Duration = time.Since(start)
	d.stopAll()
	if err != nil {
		return d.sum, err
	}
	d.summary()
	return d.sum, nil
}

type demo struct {
	o    Options
	out  io.Writer
	work string
	sum  *Summary

	mu      sync.Mutex
	seen    map[string]bool
	events  chan transport.Status
	procs   []*exec.Cmd
	mqttURL string
	httpURL string
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "\033[1m▸ "+format+"\033[0m\n", args...)
}

func (d *demo) bin(name string) string { return filepath.Join(d.o.BinDir, name) }

// fleet runs a graft-fleet command to completion.
func (d *demo) fleet(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.bin("graft-fleet"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("graft-fleet %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (d *demo) run(ctx context.Context) error {
	repo := filepath.Join(d.work, "fleet-repo")
	dev := filepath.Join(d.work, "device")

	d.say("creating a TUF repository (root, targets, snapshot, timestamp keys)")
	if _, err := d.fleet(ctx, "repo", "init", "--dir", repo); err != nil {
		return err
	}
	d.say("starting graft-fleet serve: embedded MQTT broker and TUF repository server on 127.0.0.1")
	if err := d.serve(ctx, repo); err != nil {
		return err
	}
	d.say("broker %s, repository %s", d.mqttURL, d.httpURL)
	if err := d.follow(ctx); err != nil {
		return err
	}

	d.say("building three %d MiB root filesystem images: v1 (factory), v2 (healthy), v3 (fails its self-test)", d.o.ImageSize>>20)
	v1 := image("v1", true, d.o.ImageSize)
	v2 := image("v2", true, d.o.ImageSize)
	v3 := image("v3", false, d.o.ImageSize)
	for name, img := range map[string][]byte{"v2": v2, "v3": v3} {
		if err := os.WriteFile(filepath.Join(d.work, name+".img"), img, 0o644); err != nil {
			return err
		}
	}

	d.say("provisioning device %s on the sim board: slot A holds v1, slot B is empty, U-Boot env boots A", device)
	set := boards.Builtin()
	def, err := set.Lookup("sim")
	if err != nil {
		return err
	}
	board, err := simboard.Provision(dev, def, d.o.ImageSize+(1<<20), v1)
	if err != nil {
		return err
	}
	board.OnBoot = func(n int, slot string, reset bool) {
		d.sum.Boots = append(d.sum.Boots, slot)
		d.say("bootloader: boot #%d → slot %s (from BOOT_ORDER and BOOT_%s_LEFT in uboot.env)", n, slot, slot)
	}
	if _, err := d.fleet(ctx, "repo", "root", "--dir", repo, "--out", filepath.Join(dev, "root.json")); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, d.bin("graft-agent"), "tuf", "init", filepath.Join(dev, "root.json"),
		"--metadata-dir", filepath.Join(dev, "tuf")).CombinedOutput(); err != nil {
		return fmt.Errorf("graft-agent tuf init: %w: %s", err, out)
	}
	conf := filepath.Join(dev, "agent.conf")
	confText, err := agentConfig(dev, d.mqttURL, d.httpURL)
	if err != nil {
		return err
	}
	if err := os.WriteFile(conf, confText, 0o644); err != nil {
		return err
	}

	d.say("powering the device on; the agent connects to the broker")
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- board.Run(ctx, 20, func(ctx context.Context, slot string) (int, error) {
			return d.runAgent(ctx, conf)
		})
	}()
	if _, err := d.waitFor(ctx, agentDone, func(s transport.Status) bool { return s.State == transport.StateIdle }); err != nil {
		return fmt.Errorf("device did not come up: %w", err)
	}

	d.say("releasing v2 (zstd-compressed image, sequence 2) and notifying the device")
	if err := d.release(ctx, repo, "v2", "2.0.0", "2", "zstd"); err != nil {
		return err
	}
	if _, err := d.fleet(ctx, "notify", "--broker", d.mqttURL, "--device", device, "v2"); err != nil {
		return err
	}
	st, err := d.waitFor(ctx, agentDone, func(s transport.Status) bool {
		return s.Release == "v2" && (s.State == transport.StateCommitted || s.State == transport.StateRolledBack || s.State == transport.StateFailed || s.State == transport.StateRefused)
	})
	if err != nil {
		return err
	}
	if st.State != transport.StateCommitted {
		return fmt.Errorf("v2 ended %s: %s", st.State, st.Reason)
	}

	d.say("releasing v3 (gzip-compressed, sequence 3) — its self-test fails in the new slot")
	if err := d.release(ctx, repo, "v3", "3.0.0", "3", "gzip"); err != nil {
		return err
	}
	if _, err := d.fleet(ctx, "notify", "--broker", d.mqttURL, "--device", device, "v3"); err != nil {
		return err
	}
	st, err = d.waitFor(ctx, agentDone, func(s transport.Status) bool {
		return s.Release == "v3" && (s.State == transport.StateCommitted || s.State == transport.StateRolledBack || s.State == transport.StateFailed || s.State == transport.StateRefused)
	})
	if err != nil {
		return err
	}
	if st.State != transport.StateRolledBack {
		return fmt.Errorf("v3 ended %s, want rolled-back: %s", st.State, st.Reason)
	}
	d.sum.Final = st
	d.say("the fleet's view:")
	out, err := d.fleet(ctx, "status", "--broker", d.mqttURL, "--wait", "500ms")
	if err != nil {
		return err
	}
	d.out.Write(out)
	d.say("the device's view (graft-agent status):")
	out, err = exec.CommandContext(ctx, d.bin("graft-agent"), "status", "--config", conf).CombinedOutput()
	if err != nil {
		return fmt.Errorf("graft-agent status: %w: %s", err, out)
	}
	d.out.Write(out)
	return nil
}

func (d *demo) release(ctx context.Context, repo, name, version, seq, compress string) error {
	_, err := d.fleet(ctx, "release", "add", "--repo", repo, "--name", name, "--version", version,
		"--sequence", seq, "--board", "sim", "--image", filepath.Join(d.work, name+".img"), "--compress", compress)
	return err
}

// serve starts graft-fleet serve and reads the addresses it prints.
func (d *demo) serve(ctx context.Context, repo string) error {
	cmd := exec.CommandContext(ctx, d.bin("graft-fleet"), "serve", "--repo", repo, "--db", filepath.Join(d.work, "fleet.db"), "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--json")
	cmd.Stderr = prefixWriter(d.out, "  fleet  │ ")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		return err
	}
	d.procs = append(d.procs, cmd)
	var addrs struct {
		MQTT string `json:"mqtt"`
		HTTP string `json:"http"`
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("graft-fleet serve: %w", err)
	}
	if err := json.Unmarshal(line, &addrs); err != nil || addrs.MQTT == "" || addrs.HTTP == "" {
		return fmt.Errorf("graft-fleet serve printed %q", line)
	}
	go io.Copy(io.Discard, stdout)
	d.mqttURL, d.httpURL = addrs.MQTT, addrs.HTTP
	return nil
}

// follow subscribes to the device's status, as `graft-fleet status
// --follow` does, and narrates each event.
func (d *demo) follow(ctx context.Context) error {
	d.seen = map[string]bool{}
	d.events = make(chan transport.Status, 256)
	opts := paho.NewClientOptions().AddBroker(d.mqttURL).SetClientID("graft-demo-watch").SetCleanSession(true).SetAutoReconnect(true)
	c := paho.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("watch broker: %v", t.Error())
	}
	t := c.Subscribe(transport.StatusTopic(device), 1, func(_ paho.Client, m paho.Message) {
		s, err := transport.DecodeStatus(m.Payload())
		if err != nil {
			return
		}
		d.mu.Lock()
		dup := d.seen[s.EventID]
		d.seen[s.EventID] = true
		if !dup {
			d.sum.Events = append(d.sum.Events, s)
		}
		d.mu.Unlock()
		if dup {
			return
		}
		d.narrate(s)
		d.events <- s
	})
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("watch subscribe: %v", t.Error())
	}
	go func() { <-ctx.Done(); c.Disconnect(100) }()
	return nil
}

func (d *demo) narrate(s transport.Status) {
	msg := fmt.Sprintf("fleet sees %s: %s", s.Device, s.State)
	if s.Release != "" {
		msg += " " + s.Release
	}
	if s.Total > 0 {
		msg += fmt.Sprintf(" %s %3d%% of %.1f MiB", bar(s.Done, s.Total), s.Done*100/s.Total, float64(s.Total)/(1<<20))
	}
	if s.Slot != "" {
		msg += " (booted " + s.Slot + ")"
	}
	if s.Reason != "" {
		msg += " — " + s.Reason
	}
	fmt.Fprintf(d.out, "\033[36m  fleet  │ %s\033[0m\n", msg)
}

func bar(done, total int64) string {
	n := int(done * 20 / total)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 20-n) + "]"
}

// waitFor waits for a status event matching ok.
func (d *demo) waitFor(ctx context.Context, agentDone <-chan error, ok func(transport.Status) bool) (transport.Status, error) {
	timeout := time.After(90 * time.Second)
	for {
		select {
		case s := <-d.events:
			if ok(s) {
				return s, nil
			}
		case err := <-agentDone:
			return transport.Status{}, fmt.Errorf("device stopped: %v", err)
		case <-timeout:
			return transport.Status{}, errors.New("timed out waiting for the device")
		case <-ctx.Done():
			return transport.Status{}, ctx.Err()
		}
	}
}

// runAgent runs graft-agent until it exits and returns its exit status.
func (d *demo) runAgent(ctx context.Context, conf string) (int, error) {
	cmd := exec.Command(d.bin("graft-agent"), "run", "--config", conf)
	cmd.Stdout = prefixWriter(d.out, "  device │ ")
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	d.mu.Lock()
	d.procs = append(d.procs, cmd)
	d.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), nil
		}
		return 0, err
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		return 0, ctx.Err()
	}
}

// stopAll stops the device's agent first, so that it leaves the broker
// cleanly, then the fleet server, and lets their last lines drain before
// the summary.
func (d *demo) stopAll() {
	d.mu.Lock()
	procs := d.procs
	d.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if p.Process != nil && p.ProcessState == nil {
			p.Process.Signal(syscall.SIGTERM)
			time.Sleep(300 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
}

func (d *demo) summary() {
	var b strings.Builder
	fmt.Fprintf(&b, "\nSummary (%.1f s)\n", d.sum.Duration.Seconds())
	fmt.Fprintf(&b, "  boots:  %s\n", strings.Join(d.sum.Boots, " → "))
	for _, s := range d.sum.Events {
		if s.State == transport.StateCommitted || s.State == transport.StateRolledBack || s.State == transport.StateFailed {
			fmt.Fprintf(&b, "  %-4s %-12s path %-3s slot %s  %s\n", s.Release, s.State, s.Path, s.Slot, s.Reason)
		}
	}
	fmt.Fprintf(&b, "  status events received by the fleet: %d (unique event IDs)\n", len(d.sum.Events))
	fmt.Fprint(d.out, b.String())
}

// image builds a root filesystem image for the demo: a header the health
// check reads, then pseudo-random blocks with repeats, so compression has
// something to do.
func image(version string, healthy bool, size int64) []byte {
	self := "fail"
	if healthy {
		self = "pass"
	}
	img := make([]byte, size)
	hdr := fmt.Sprintf("graft demo rootfs %s\nselftest=%s\n", version, self)
	copy(img, hdr)
	seed := sha256.Sum256([]byte(version))
	r := rand.New(rand.NewChaCha8(seed))
	for off := int64(4096); off < size; off += 4096 {
		end := min(off+4096, size)
		if r.IntN(3) == 0 {
			continue // zero block
		}
		for i := off; i < end; i += 8 {
			v := r.Uint64() & 0x0f0f0f0f0f0f0f0f
			for j := int64(0); j < 8 && i+j < end; j++ {
				img[i+j] = byte(v >> (8 * j))
			}
		}
	}
	return img
}

// agentConfig is the demo device's config: the fleet's broker and
// repository, and a self-test health check that reads the booted slot.
func agentConfig(dataDir, mqttURL, httpURL string) ([]byte, error) {
	c := config.Default()
	c.DeviceID, c.Board, c.DataDir = device, "sim", dataDir
	c.Broker, c.KeepAlive = mqttURL, 10*time.Second
	c.MetadataURL, c.TargetsURL = httpURL+"/metadata", httpURL+"/targets"
	c.HealthTimeout = 20 * time.Second
	c.HealthChecks = append(c.HealthChecks, `exec:grep -q selftest=pass "$GRAFT_SLOT_DEVICE"`)
	return c.Encode()
}

// prefixWriter writes each line with a prefix.
func prefixWriter(w io.Writer, prefix string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(w, "\033[2m%s%s\033[0m\n", prefix, sc.Text())
		}
	}()
	return pw
}
