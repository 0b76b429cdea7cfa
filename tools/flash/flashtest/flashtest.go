package flashtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/provision"
	"github.com/graft-dev/graft/boards"
)

// BoardName is the simulated factory board: the sim board with a
// redundant U-Boot environment.
const BoardName = "sim-factory"

// BoardFile defines BoardName.
const BoardFile = `{
  "name": "sim-factory",
  "arch": "host",
  "console": {"device": "ttyAMA0", "baud": 115200},
  "slots": {"rootfs": {"A": "slot-a.img", "B": "slot-b.img"}},
  "bootloader": {
    "kind": "uboot",
    "fw_env_config": "fw_env.config",
    "fw_env": [
      {"device": "uboot.env", "offset": 0, "size": "0x4000"},
      {"device": "uboot.env", "offset": "0x4000", "size": "0x4000"}
    ],
    "attempts": 3,
    "try_attempts": 1
  },
  "cmdline": "cmdline",
  "reboot": "exit"
}
`

// SlotSize is a blank device's slot size.
const SlotSize = 8 << 20

// Device is a blank device on the simulated factory board, in
// provisioning mode on the master of a pty; Port is the slave.
type Device struct {
	t      testing.TB
	Dir    string
	Serial string
	Port   string
	Board  boards.Board
	master *os.File
	// Noise, when set before Start, sprays console noise on the line and
	// damages some frames in both directions.
	Noise   bool
	Reboots atomic.Int64

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewDevice lays out a blank device (zeroed slots, no environment) with
// SoC serial serial. Start it with Start.
func NewDevice(t testing.TB, serial string) *Device {
	t.Helper()
	dir := filepath.Join(t.TempDir(), serial)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	bf := filepath.Join(dir, "boards.json")
	if err := os.WriteFile(bf, []byte(BoardFile), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Board, cfg.BoardFile, cfg.DataDir = BoardName, bf, dir
	b, err := daemon.LoadBoard(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		size int64
	}{{"slot-a.img", SlotSize}, {"slot-b.img", SlotSize}, {"uboot.env", 0x8000}} {
		fh, err := os.Create(filepath.Join(dir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		fh.Truncate(f.size)
		fh.Close()
	}
	os.WriteFile(filepath.Join(dir, "cmdline"), []byte("console=ttyAMA0 rauc.slot=A\n"), 0o644)
	m, port := PTY(t)
	d := &Device{t: t, Dir: dir, Serial: serial, Port: port, Board: b, master: m}
	t.Cleanup(d.Stop)
	return d
}

// BoardFilePath is the device's board definitions file.
func (d *Device) BoardFilePath() string { return filepath.Join(d.Dir, "boards.json") }

// Start runs provisioning mode (in this process) until Stop.
func (d *Device) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	p, err := provision.New(provision.Options{
		Board: d.Board, BoardFile: d.BoardFilePath(), DataDir: d.Dir,
		Facts:  provision.Facts{Serial: d.Serial, MACs: []string{macOf(d.Serial)}, Storage: 2 * SlotSize},
		Reboot: func(context.Context) error { d.Reboots.Add(1); return nil },
	})
	if err != nil {
		d.t.Fatal(err)
	}
	var line provision.Line = keep{d.master}
	if d.Noise {
		line = newNoisy(d.master)
	}
	done := d.done
	go func() {
		defer close(done)
		p.Serve(ctx, func() (provision.Line, error) { return line, nil })
	}()
}

// Stop ends provisioning mode, as a power cut does: whatever a step was
// doing stops where it stood.
func (d *Device) Stop() {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.cancel = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		// Unblock the reader: a read on the master ends with a poke.
		d.master.SetReadDeadline(time.Now())
		<-done
		d.master.SetReadDeadline(time.Time{})
	}
}

// Slot returns slot name's bytes.
func (d *Device) Slot(name string) []byte {
	b, err := os.ReadFile(filepath.Join(d.Dir, "slot-"+strings.ToLower(name)+".img"))
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// Blank reports whether slot name is still all zeros.
func (d *Device) Blank(name string) bool {
	return bytes.Count(d.Slot(name), []byte{0}) == SlotSize
}

func macOf(serial string) string {
	var b [6]byte
	copy(b[:], fmt.Sprintf("%-6s", serial))
	b[0] = 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

type keep struct{ *os.File }

func (keep) Close() error { return nil }

// noisy is a device line shared with kernel output: before each write it
// prints a log line, every 4th write it damages one byte, and every 5th
// read gets a burst of garbage in front.
type noisy struct {
	f   *os.File
	mu  sync.Mutex
	rnd *rand.Rand
	w   int
	r   int
}

func newNoisy(f *os.File) *noisy { return &noisy{f: f, rnd: rand.New(rand.NewPCG(7, 8))} }

func (n *noisy) Write(p []byte) (int, error) {
	n.mu.Lock()
	n.w++
	q := bytes.Clone(p)
	if n.w%4 == 0 && len(q) > 0 {
		q[n.rnd.IntN(len(q))] ^= 0x21
	}
	noise := fmt.Sprintf("[ %5d.%06d] mmc0: timeout waiting for hardware interrupt %c\r\n", n.w, n.rnd.IntN(1e6), 0xF7)
	n.mu.Unlock()
	if _, err := io.WriteString(n.f, noise); err != nil {
		return 0, err
	}
	if _, err := n.f.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (n *noisy) Read(p []byte) (int, error) {
	k, err := n.f.Read(p)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.r++
	if k > 0 && n.r%5 == 0 {
		junk := []byte{0xF7, 'G', 0x00, 'x', 0xF7, 'G', 'F', 0x01, 0x00}
		if k+len(junk) <= len(p) {
			copy(p[len(junk):], p[:k])
			copy(p, junk)
			k += len(junk)
		}
	}
	return k, err
}

func (n *noisy) SetWriteDeadline(t time.Time) error { return n.f.SetWriteDeadline(t) }

func (n *noisy) Close() error { return nil }
