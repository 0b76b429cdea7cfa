package bootenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile takes an exclusive flock on path (created if missing, as
// libubootenv does) and returns the function that releases it. An empty
// path takes no lock. The file is opened read-only: flock does not need
// write access, so a lock file that root's fw_setenv created still works
// for an unprivileged process.
func lockFile(path string) (unlock func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o666)
	if errors.Is(err, fs.ErrNotExist) {
		// A minimal system (an initramfs) may have no /var/lock yet.
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o666)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bootenv: lock: %w", err)
	}
	fd := int(f.Fd())
	for {
		err = syscall.Flock(fd, syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("bootenv: lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(fd, syscall.LOCK_UN)
		f.Close()
	}, nil
}
