package slot_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/agent/slot"
)

// mountLine renders one mountinfo line for the device number of path (a
// block device's rdev, a file system's dev otherwise).
func mountLine(t *testing.T, path, mountPoint, source string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	dev := uint64(st.Dev)
	if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
		dev = uint64(st.Rdev)
	}
	mp := strings.ReplaceAll(mountPoint, " ", `\040`)
	return fmt.Sprintf("99 1 %d:%d / %s rw,relatime shared:9 - ext4 %s rw\n", unix.Major(dev), unix.Minor(dev), mp, source)
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// anyBlockDevice finds a block device node to stat (no access needed).
func anyBlockDevice(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/dev/loop0", "/dev/loop1", "/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/mmcblk0"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0 {
			return p
		}
	}
	t.Skip("no block device node in /dev")
	return ""
}

func TestCheckWritableFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "slot-a.img")
	b := filepath.Join(dir, "slot-b.img")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte("slot"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	linkA := filepath.Join(dir, "current")
	if err := os.Symlink("slot-a.img", linkA); err != nil {
		t.Fatal(err)
	}
	hardA := filepath.Join(dir, "hard-a")
	if err := os.Link(a, hardA); err != nil {
		t.Fatal(err)
	}
	linkB := filepath.Join(dir, "other")
	if err := os.Symlink(b, linkB); err != nil {
		t.Fatal(err)
	}
	spaced := filepath.Join(dir, "slot b copy.img")
	if err := os.WriteFile(spaced, []byte("slot"), 0o600); err != nil {
		t.Fatal(err)
	}
	rpi := readTestdata(t, "mountinfo-rpi4.txt")

	tests := []struct {
		name      string
		dev       string
		booted    string
		mountinfo string
		wantErr   error
	}{
		{"inactive slot is writable", b, a, rpi, nil},
		{"inactive slot through a symlink", linkB, a, rpi, nil},
		{"booted slot", a, a, rpi, slot.ErrActiveSlot},
		{"symlink to booted slot", linkA, a, rpi, slot.ErrActiveSlot},
		{"booted slot given as symlink", a, linkA, rpi, slot.ErrActiveSlot},
		{"hard link to booted slot", hardA, a, rpi, slot.ErrActiveSlot},
		{"booted unknown", b, "", rpi, slot.ErrActiveSlot},
		{"booted missing", b, filepath.Join(dir, "gone"), rpi, fs.ErrNotExist},
		{"target missing", filepath.Join(dir, "gone"), a, rpi, fs.ErrNotExist},
		{"target is a directory", dir, a, rpi, slot.ErrTarget},
		{"file bind-mounted", b, a, rpi + mountLine(t, b, b, "/dev/vda"), slot.ErrMounted},
		{"file bind-mounted, escaped path", spaced, a, mountLine(t, spaced, spaced, "/dev/vda"), slot.ErrMounted},
		{"file as mount source via symlink", b, a, mountLine(t, b, "/mnt", linkB), slot.ErrMounted},
		{"malformed mountinfo", b, a, "1 2 3\n", slot.ErrMountinfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := slot.CheckWritable(tt.dev, tt.booted, strings.NewReader(tt.mountinfo))
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestCheckWritableBlockDevices(t *testing.T) {
	blk := anyBlockDevice(t)
	dir := t.TempDir()
	link := filepath.Join(dir, "by-partlabel-b")
	if err := os.Symlink(blk, link); err != nil {
		t.Fatal(err)
	}
	booted := filepath.Join(dir, "slot-a.img")
	if err := os.WriteFile(booted, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rpi := readTestdata(t, "mountinfo-rpi4.txt")
	asRoot := mountLine(t, blk, "/", "/dev/root")
	tests := []struct {
		name      string
		dev       string
		booted    string
		mountinfo string
		wantErr   error
	}{
		{"not mounted", blk, booted, rpi, nil},
		{"mounted as / under another name", blk, booted, rpi + asRoot, slot.ErrMounted},
		{"symlink to a device mounted as /", link, booted, asRoot, slot.ErrMounted},
		{"mounted anywhere", link, booted, mountLine(t, blk, "/media/x y", "none"), slot.ErrMounted},
		{"symlink to the booted device", link, blk, rpi, slot.ErrActiveSlot},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := slot.CheckWritable(tt.dev, tt.booted, strings.NewReader(tt.mountinfo))
			if tt.wantErr == nil && err != nil || !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// Real mounts, read from the kernel's own /proc/self/mountinfo.
func TestCheckWritableRealMounts(t *testing.T) {
	dev, mnt := mountedLoop(t)
	booted := filepath.Join(t.TempDir(), "a.img")
	os.WriteFile(booted, nil, 0o600)
	check := func(target string) error {
		mi, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		defer mi.Close()
		return slot.CheckWritable(target, booted, mi)
	}
	if err := check(dev); !errors.Is(err, slot.ErrMounted) {
		t.Fatalf("mounted loop device: err = %v, want ErrMounted", err)
	}
	// The file behind the mounted loop device is refused too.
	backing := strings.TrimSpace(readFile(t, filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")))
	if err := check(backing); !errors.Is(err, slot.ErrMounted) {
		t.Fatalf("backing file of a mounted loop device: err = %v, want ErrMounted", err)
	}
	// A file inside the mounted file system is just a file.
	inner := filepath.Join(mnt, "slot-b.img")
	os.WriteFile(inner, nil, 0o600)
	if err := check(inner); err != nil {
		t.Fatalf("file on a mounted fs: %v", err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A whole disk whose partition is booted or mounted must be refused.
func TestCheckWritableWholeDisk(t *testing.T) {
	requireRoot(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	disk := make([]byte, 8<<20)
	// One MBR partition: type 0x83, from sector 2048 to the end.
	entry := disk[0x1BE:]
	entry[4] = 0x83
	binary.LittleEndian.PutUint32(entry[8:], 2048)
	binary.LittleEndian.PutUint32(entry[12:], uint32(len(disk)/512-2048))
	disk[510], disk[511] = 0x55, 0xAA
	if err := os.WriteFile(img, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", img).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	part := dev + "p1"
	for range 50 { // udev-less systems create the node right away; wait a little otherwise
		if _, err := os.Stat(part); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(part); err != nil {
		t.Skipf("no partition node: %v", err)
	}
	other := filepath.Join(t.TempDir(), "x")
	os.WriteFile(other, nil, 0o600)

	if err := slot.CheckWritable(dev, part, strings.NewReader("")); !errors.Is(err, slot.ErrActiveSlot) {
		t.Fatalf("disk of the booted partition: err = %v, want ErrActiveSlot", err)
	}
	if err := slot.CheckWritable(dev, other, strings.NewReader(mountLine(t, part, "/", "/dev/root"))); !errors.Is(err, slot.ErrMounted) {
		t.Fatalf("disk of a mounted partition: err = %v, want ErrMounted", err)
	}
	if err := slot.CheckWritable(part, other, strings.NewReader("")); err != nil {
		t.Fatalf("unmounted partition: %v", err)
	}
}
