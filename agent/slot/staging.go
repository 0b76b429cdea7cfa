package slot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrUnsafeStaging: a staging path is not a plain file of the agent's own
// (a symlink, a hard link, a device, or another name for a slot), so a
// download into it could write somewhere else.
var ErrUnsafeStaging = errors.New("slot: unsafe staging file")

// CheckStaging extends the writer's guard to a download's staging file:
// path must be missing, or a regular file that is not a symlink, has no
// other hard link, and is none of the slot devices (compared as
// CheckWritable compares: resolved path, device number, device and inode).
// The check reads the entry itself, never what a symlink points to.
func CheckStaging(path string, slotDevs []string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("slot: staging file: %w", err)
	}
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symlink", ErrUnsafeStaging, path)
	case !m.IsRegular():
		return fmt.Errorf("%w: %s is %v, not a regular file", ErrUnsafeStaging, path, m.Type())
	}
	if ids, ok := statIDs(fi); !ok || ids.nlink > 1 {
		return fmt.Errorf("%w: %s has %d hard links (or this system cannot tell)", ErrUnsafeStaging, path, ids.nlink)
	}
	staged, err := identify(path)
	if err != nil {
		return fmt.Errorf("slot: staging file: %w", err)
	}
	for _, d := range slotDevs {
		o, err := identify(d)
		if err != nil {
			continue // a slot that does not exist is no file this could be
		}
		if staged.same(o) {
			return fmt.Errorf("%w: %s is slot device %s", ErrUnsafeStaging, path, d)
		}
	}
	return nil
}
