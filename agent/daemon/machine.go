package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
)

// ErrExitForReboot is returned by Run on a board whose reboot is "exit":
// the process must exit with boards.ExitReboot so that its supervisor (the
// simulated board) boots the next slot.
var ErrExitForReboot = errors.New("exit for reboot")

// ErrStillUp means reboot(2) returned and the system did not go down.
var ErrStillUp = errors.New("reboot(2) returned but the system is still up")

// machine is the real device: /proc, the kernel command line, reboot(2).
type machine struct {
	board boards.Board
	// beforeReboot flushes what must leave the device before it goes down.
	beforeReboot func(ctx context.Context)
	mu           sync.Mutex
	cmdline      string // the kernel command line as first read by this process
}

// Booted reads the booted slot from the kernel command line ("" on a
// live-only board, which has no slots). The boot ID
// covers the kernel's boot_id and the command line, so it changes at every
// boot, the simulated board's too.
//
// The command line is read once, before any kernel live patch is loaded
// (the daemon asks first thing): a live patch can change what
// /proc/cmdline shows, never what this boot booted.
func (m *machine) Booted() (string, string, error) {
	m.mu.Lock()
	if m.cmdline == "" {
		b, err := os.ReadFile(m.board.Cmdline)
		if err != nil {
			m.mu.Unlock()
			return "", "", fmt.Errorf("kernel command line: %w", err)
		}
		m.cmdline = strings.TrimSpace(string(b))
	}
	cmdline := m.cmdline
	m.mu.Unlock()
	s := "" // a live-only board boots no slot
	if !m.board.LiveOnly() {
		var err error
		if s, err = slot.BootedSlot(cmdline); err != nil {
			return "", "", err
		}
	}
	kernelBootID, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", "", fmt.Errorf("boot id: %w", err)
	}
	sum := sha256.Sum256([]byte(string(kernelBootID) + "\x00" + cmdline))
	return s, hex.EncodeToString(sum[:8]), nil
}

func (m *machine) Reboot(ctx context.Context) error {
	if m.beforeReboot != nil {
		m.beforeReboot(ctx)
	}
	unix.Sync()
	if m.board.Reboot == "exit" {
		return ErrExitForReboot
	}
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot(2): %w", err)
	}
	select { // the kernel is going down
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return ErrStillUp
	}
}

// RebootBoard reboots the way board b does: reboot(2), or
// ErrExitForReboot on a board whose reboot is "exit".
func RebootBoard(ctx context.Context, b boards.Board) error {
	return (&machine{board: b}).Reboot(ctx)
}

func (m *machine) Mountinfo() (io.Reader, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return strings.NewReader(string(b)), nil
}
