package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/tuf"
)

// Provision prepares a device for its first `graft-agent run` (the
// `graft-agent init` command): it stores the trusted TUF root in
// data_dir/tuf (refusing a different root already there), and creates
// the board's files that live in the data directory and do not exist yet
// (ProvisionBoardFiles: the simulated board's slots, environment and
// command line). It is idempotent and returns one line per file it
// created.
func Provision(cfg *config.Config, root []byte) ([]string, error) {
	b, err := LoadBoard(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	var done []string
	p := filepath.Join(tufDir(cfg.DataDir), "root.json")
	_, statErr := os.Stat(p)
	if err := tuf.Init(tufDir(cfg.DataDir), root); err != nil {
		return nil, err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		done = append(done, "trusted TUF root "+p)
	}
	files, err := ProvisionBoardFiles(b, cfg.DataDir)
	return append(done, files...), err
}

// ProvisionBoardFiles creates the files of a resolved board that lie in
// dir and are missing: empty slot files, the fw_env.config, a U-Boot
// environment in which every slot has its attempts and the first slot
// boots first, and a kernel command line naming the first slot as
// booted. Files outside dir (block devices, /proc/cmdline) are never
// touched, nor are existing files.
func ProvisionBoardFiles(b boards.Board, dir string) ([]string, error) {
	inDir := func(p string) bool {
		rel, err := filepath.Rel(dir, p)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
	}
	missing := func(p string) bool {
		_, err := os.Stat(p)
		return inDir(p) && errors.Is(err, fs.ErrNotExist)
	}
	var done []string
	create := func(what, p string, data []byte) error {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, data, 0o600); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		done = append(done, what+" "+p)
		return nil
	}
	for _, g := range b.SlotGroups {
		for _, s := range g.Slots {
			if missing(s.Device) {
				if err := create(fmt.Sprintf("slot %s.%s (empty)", g.Name, s.Name), s.Device, nil); err != nil {
					return done, err
				}
			}
		}
	}
	bl := b.Bootloader
	if bl.Kind == boards.BootloaderUBoot && len(bl.FWEnv) > 0 {
		if missing(bl.FWEnvConfig) {
			if err := create("fw_env.config", bl.FWEnvConfig, []byte(bl.FWEnvConfigText())); err != nil {
				return done, err
			}
		}
		fresh := false
		for _, l := range bl.FWEnv {
			if !missing(l.Device) {
				continue
			}
			if err := create("U-Boot environment file", l.Device, make([]byte, l.Offset+l.Size)); err != nil {
				return done, err
			}
			fresh = true
		}
		if fresh {
			if err := initialEnv(b); err != nil {
				return done, err
			}
		}
	}
	if names := b.SlotNames(); len(names) > 0 && missing(b.Cmdline) {
		line := fmt.Sprintf("%s=%s\n", boards.CmdlineSlotParam, names[0])
		if err := create("kernel command line (booted slot "+names[0]+")", b.Cmdline, []byte(line)); err != nil {
			return done, err
		}
	}
	return done, nil
}

// initialEnv saves the boot state of a new board: every slot with its
// attempts, in board order.
func initialEnv(b boards.Board) error {
	store, err := OpenEnv(b)
	if err != nil {
		return err
	}
	names := b.SlotNames()
	st := slot.State{Order: names, Left: map[string]int{}}
	for _, n := range names {
		st.Left[n] = b.Bootloader.Attempts
	}
	env := bootenv.Env{}
	st.Apply(env)
	return store.Save(env)
}
