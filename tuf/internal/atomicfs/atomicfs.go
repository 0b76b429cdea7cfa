package atomicfs

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile atomically replaces name with data, with permissions perm: a
// power cut leaves either the old content or the new one.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return fmt.Errorf("atomicfs: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("atomicfs: write %s: %w", name, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("atomicfs: chmod %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("atomicfs: sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfs: close %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("atomicfs: %w", err)
	}
	done = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that creations, renames and removals in it
// are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfs: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfs: sync dir %s: %w", dir, err)
	}
	return nil
}
