package slot

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A fake /sys/dev/block: 179:0 is a disk, 179:2 its partition, 7:0 a
// whole loop device.
func TestDiskOf(t *testing.T) {
	root := t.TempDir()
	disk := filepath.Join(root, "devices", "mmc", "mmcblk0")
	part := filepath.Join(disk, "mmcblk0p2")
	loop := filepath.Join(root, "devices", "virtual", "loop0")
	for _, d := range []string{part, loop, filepath.Join(root, "dev", "block")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(disk, "dev"), "179:0\n")
	write(filepath.Join(part, "dev"), "179:2\n")
	write(filepath.Join(part, "partition"), "2\n")
	write(filepath.Join(loop, "dev"), "7:0\n")
	devBlock := filepath.Join(root, "dev", "block")
	for name, target := range map[string]string{"179:0": disk, "179:2": part, "7:0": loop} {
		if err := os.Symlink(target, filepath.Join(devBlock, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dev  uint64
		want uint64
	}{
		{makeDev(179, 2), makeDev(179, 0)},
		{makeDev(179, 0), 0},
		{makeDev(7, 0), 0},
		{makeDev(8, 1), 0}, // unknown to sysfs
	}
	for _, tt := range tests {
		if got := diskOf(devBlock, tt.dev); got != tt.want {
			maj, mnr := splitDev(tt.dev)
			t.Errorf("diskOf(%d:%d) = %d, want %d", maj, mnr, got, tt.want)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "mountinfo-rpi4.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parseMountinfo(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 9 {
		t.Fatalf("got %d mounts, want 9", len(ms))
	}
	want0 := mount{ID: 21, Parent: 1, Dev: makeDev(179, 2), Root: "/", MountPoint: "/", FSType: "ext4", Source: "/dev/mmcblk0p2"}
	if !reflect.DeepEqual(ms[0], want0) {
		t.Errorf("line 1 = %+v, want %+v", ms[0], want0)
	}
	if ms[7].Root != "/graft" || ms[8].MountPoint != "/media/usb stick" {
		t.Errorf("root %q, escaped mount point %q", ms[7].Root, ms[8].MountPoint)
	}
	for _, bad := range []string{
		"21 1 179:2 / / rw - ext4",            // no source
		"21 1 179:2 / / rw ext4 /dev/root rw", // no separator
		"x 1 179:2 / / rw - ext4 /dev/root rw",
		"21 1 1792 / / rw - ext4 /dev/root rw",
		"21 1 179:-2 / / rw - ext4 /dev/root rw",
	} {
		if _, err := parseMountinfo(strings.NewReader(bad)); !errors.Is(err, ErrMountinfo) {
			t.Errorf("%q: err = %v, want ErrMountinfo", bad, err)
		}
	}
}

func FuzzMountinfo(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "mountinfo-rpi4.txt")); err == nil {
		f.Add(string(b))
	}
	f.Add(`1 2 3:4 /a\040b /m\134x opt - t s o`)
	f.Add("1 2 3:4 / / a b c - d")
	f.Fuzz(func(t *testing.T, text string) {
		ms, err := parseMountinfo(strings.NewReader(text))
		if err != nil {
			if !errors.Is(err, ErrMountinfo) {
				t.Fatalf("error %v does not wrap ErrMountinfo", err)
			}
			return
		}
		for _, m := range ms {
			maj, mnr := splitDev(m.Dev)
			if makeDev(maj, mnr) != m.Dev {
				t.Fatalf("device number does not round trip: %d", m.Dev)
			}
		}
	})
}
