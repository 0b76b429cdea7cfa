package simboard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
)

// ErrPowerCycles means the board kept rebooting past the allowed count.
var ErrPowerCycles = errors.New("simboard: too many reboots")

// Board is one simulated device: its data directory, its board definition
// (resolved against that directory) and its environment.
type Board struct {
	Dir   string
	Def   boards.Board
	Env   bootenv.Store
	Boots int // boots so far
	// OnBoot, when set, is told which slot each boot picked.
	OnBoot func(boot int, slot string, reset bool)
}

// Provision lays out a fresh simulated device in dir: slot files of
// slotSize bytes (slot A holding factory), an fw_env.config, and a U-Boot
// environment that boots slot A.
func Provision(dir string, def boards.Board, slotSize int64, factory []byte) (*Board, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("simboard: %w", err)
	}
	def = def.WithDefaults().Resolve(dir)
	g, err := def.Group("rootfs")
	if err != nil {
		return nil, fmt.Errorf("simboard: %w", err)
	}
	for i, s := range g.Slots {
		content := []byte(nil)
		if i == 0 {
			content = factory
		}
		if err := writeSlot(s.Device, content, slotSize); err != nil {
			return nil, err
		}
	}
	bl := def.Bootloader
	if bl.FWEnvConfig != "" {
		if err := os.WriteFile(bl.FWEnvConfig, []byte(bl.FWEnvConfigText()), 0o644); err != nil {
			return nil, fmt.Errorf("simboard: %w", err)
		}
	}
	for _, l := range bl.FWEnv {
		f, err := os.OpenFile(l.Device, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("simboard: %w", err)
		}
		err = f.Truncate(l.Offset + l.Size)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("simboard: %w", err)
		}
	}
	b, err := Open(dir, def)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range g.Slots {
		names = append(names, s.Name)
	}
	st := slot.State{Order: names, Left: map[string]int{}}
	for _, n := range names {
		st.Left[n] = bl.Attempts
	}
	env := bootenv.Env{"bootcmd": "run graft_boot", "bootdelay": "0"}
	st.Apply(env)
	if err := b.Env.Save(env); err != nil {
		return nil, fmt.Errorf("simboard: %w", err)
	}
	return b, nil
}

// Open attaches to a provisioned simulated device. def must already be
// resolved against dir.
func Open(dir string, def boards.Board) (*Board, error) {
	env, err := daemon.OpenEnv(def)
	if err != nil {
		return nil, fmt.Errorf("simboard: %w", err)
	}
	return &Board{Dir: dir, Def: def, Env: env}, nil
}

func writeSlot(path string, content []byte, size int64) error {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeDevice != 0 {
		return nil // a device node stands in for a slot: leave it alone
	}
	if int64(len(content)) > size {
		return fmt.Errorf("simboard: image of %d bytes does not fit a %d-byte slot", len(content), size)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("simboard: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		return fmt.Errorf("simboard: %w", err)
	}
	return f.Truncate(size)
}

// Boot is one power-on: the bootloader picks a slot from the environment
// as RAUC's U-Boot script does, saves the decremented counter, and "starts
// the kernel" by writing its command line.
func (b *Board) Boot() (string, error) {
	env, err := b.Env.Load()
	if err != nil {
		return "", fmt.Errorf("simboard: boot: %w", err)
	}
	g, err := b.Def.Group("rootfs")
	if err != nil {
		return "", err
	}
	var names []string
	for _, s := range g.Slots {
		names = append(names, s.Name)
	}
	st, err := slot.ParseState(env, names)
	if err != nil {
		return "", fmt.Errorf("simboard: boot: %w", err)
	}
	chosen, next, reset := st.Select(b.Def.Bootloader.Attempts)
	next.Apply(env)
	if err := b.Env.Save(env); err != nil {
		return "", fmt.Errorf("simboard: boot: %w", err)
	}
	b.Boots++
	if b.OnBoot != nil {
		b.OnBoot(b.Boots, chosen, reset)
	}
	dev := ""
	for _, s := range g.Slots {
		if s.Name == chosen {
			dev = s.Device
		}
	}
	cmdline := fmt.Sprintf("console=null root=%s %s=%s graft.boot=%d", dev, boards.CmdlineSlotParam, chosen, b.Boots)
	if err := atomicfile.WriteFile(b.Def.Cmdline, []byte(cmdline+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("simboard: %w", err)
	}
	return chosen, nil
}

// Booted returns the slot of the current boot, from the command line.
func (b *Board) Booted() (string, error) {
	c, err := os.ReadFile(b.Def.Cmdline)
	if err != nil {
		return "", err
	}
	return slot.BootedSlot(strings.TrimSpace(string(c)))
}

// Run powers the board on and keeps it running: boot, start the agent,
// and when the agent exits with boards.ExitReboot, boot again. It returns
// when ctx ends, the agent exits any other way, or maxBoots is exceeded.
// start runs the agent until it exits and returns its exit code.
func (b *Board) Run(ctx context.Context, maxBoots int, start func(ctx context.Context, slot string) (int, error)) error {
	for {
		if maxBoots > 0 && b.Boots >= maxBoots {
			return fmt.Errorf("%w (%d)", ErrPowerCycles, maxBoots)
		}
		s, err := b.Boot()
		if err != nil {
			return err
		}
		code, err := start(ctx, s)
		if err != nil || ctx.Err() != nil {
			return err
		}
		if code != boards.ExitReboot {
			return fmt.Errorf("simboard: agent exited with status %d", code)
		}
	}
}

// Path returns a path inside the board's directory.
func (b *Board) Path(name string) string { return filepath.Join(b.Dir, name) }

// Machine is the simulated board as the update engine sees it, for tests
// that run the engine in their own process: Reboot runs the bootloader
// step and returns, and the test plays the restarted agent by calling the
// engine's Resume.
type Machine struct {
	Board   *Board
	Reboots int
}

// Booted returns the slot of the current boot; the boot number is its ID.
func (m *Machine) Booted() (string, string, error) {
	s, err := m.Board.Booted()
	return s, strconv.Itoa(m.Board.Boots), err
}

// Reboot boots the board again.
func (m *Machine) Reboot(context.Context) error {
	m.Reboots++
	_, err := m.Board.Boot()
	return err
}

// Mountinfo returns this process's real mount table.
func (m *Machine) Mountinfo() (io.Reader, error) {
	f, err := os.ReadFile("/proc/self/mountinfo")
	return bytes.NewReader(f), err
}
