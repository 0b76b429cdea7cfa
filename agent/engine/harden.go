package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/graft-dev/graft/agent/slot"
)

// privateStaging makes sure the staging directory is a real directory
// (not a symlink to somewhere else) with mode 0700, creating it if needed.
func (e *Engine) privateStaging() error {
	dir := e.o.StagingDir
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("staging: %w", err)
	case !fi.IsDir():
		e.log.Warn("staging path is not a directory; replacing it", "path", dir, "mode", fi.Mode().String())
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("staging: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	return nil
}

// guardStaging runs the slot writer's guard on a staging file before a
// download writes into it: a symlink, a hard link or another name for a
// slot found there is removed (the entry only, never what it points to),
// and the download starts again from 0.
func (e *Engine) guardStaging(path string, offset *int64) error {
	if err := e.privateStaging(); err != nil {
		return err
	}
	if filepath.Dir(filepath.Clean(path)) != filepath.Clean(e.o.StagingDir) {
		return fmt.Errorf("%w: staging file %s is outside %s", slot.ErrUnsafeStaging, path, e.o.StagingDir)
	}
	devs := e.slotDevices()
	err := slot.CheckStaging(path, devs)
	if errors.Is(err, slot.ErrUnsafeStaging) {
		e.log.Warn("unsafe staging file removed", "err", err)
		if rerr := os.Remove(path); rerr != nil {
			return fmt.Errorf("%w (and removing it: %w)", err, rerr)
		}
		if offset != nil {
			*offset = 0
		}
		err = slot.CheckStaging(path, devs)
	}
	return err
}

// slotDevices lists the device of every slot of the board.
func (e *Engine) slotDevices() []string {
	var devs []string
	for _, g := range e.o.Board.SlotGroups {
		for _, s := range g.Slots {
			devs = append(devs, s.Device)
		}
	}
	return devs
}
