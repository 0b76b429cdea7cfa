package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/boards"
)

func TestDetectBoard(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rpi := write("rpi", "raspberrypi,4-model-b\x00brcm,bcm2711\x00")
	unknown := write("unknown", "acme,widget\x00")
	debian := write("debian", "ID=debian\nVERSION_ID=12\n")
	ubuntu := write("ubuntu", "ID=ubuntu\nID_LIKE=debian\n")
	alpine := write("alpine", "ID=alpine\n")
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name, compat, osRelease, want string
		err                           error
	}{
		{"device tree wins", rpi, debian, "raspberrypi4-64", nil},
		{"no device tree: os-release", missing, debian, "debian-server", nil},
		{"ID_LIKE", missing, ubuntu, "debian-server", nil},
		{"device tree unknown: os-release", unknown, debian, "debian-server", nil},
		{"nothing matches", unknown, alpine, "", boards.ErrNoMatch},
		{"no device tree, no os-release", missing, missing, "", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := detectBoard(boards.Builtin(), tt.compat, tt.osRelease)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("detectBoard = %s, %v; want %v", b.Name, err, tt.err)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil || b.Name != tt.want {
				t.Fatalf("detectBoard = %s, %v; want %s", b.Name, err, tt.want)
			}
		})
	}
}
