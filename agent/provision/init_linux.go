package provision

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// MountInit mounts what an init needs: /proc, /sys and /dev (devtmpfs), and
// a tmpfs on /run. A mount already in place is kept.
func MountInit() error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("provision: init: %w", err)
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("provision: init: mount %s: %w", m.dir, err)
		}
	}
	return nil
}
