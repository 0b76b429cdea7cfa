package slot_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/graft-dev/graft/agent/slot"
)

func TestCheckStaging(t *testing.T) {
	dir := t.TempDir()
	slotA := filepath.Join(dir, "slot-a.img")
	if err := os.WriteFile(slotA, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, fn func(p string) error) string {
		p := filepath.Join(dir, name)
		if err := fn(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := mk("plain", func(p string) error { return os.WriteFile(p, []byte("x"), 0o600) })
	symlink := mk("symlink", func(p string) error { return os.Symlink(slotA, p) })
	dangling := mk("dangling", func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) })
	hardlink := mk("hardlink", func(p string) error { return os.Link(slotA, p) })
	fifo := mk("fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) })
	subdir := mk("subdir", func(p string) error { return os.Mkdir(p, 0o700) })
	devs := []string{slotA, filepath.Join(dir, "slot-b.img")}
	tests := []struct {
		name string
		path string
		err  error
	}{
		{"missing", filepath.Join(dir, "missing"), nil},
		{"plain file", plain, nil},
		{"symlink to a slot", symlink, slot.ErrUnsafeStaging},
		{"dangling symlink", dangling, slot.ErrUnsafeStaging},
		{"hard link to a slot", hardlink, slot.ErrUnsafeStaging},
		{"fifo", fifo, slot.ErrUnsafeStaging},
		{"directory", subdir, slot.ErrUnsafeStaging},
		{"the slot itself", slotA, slot.ErrUnsafeStaging},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := slot.CheckStaging(tt.path, devs)
			if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("CheckStaging(%s) = %v, want %v", tt.name, err, tt.err)
			}
		})
	}
}
