package rig

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/bootenv"
)

// spinKernel returns a 4 KiB kernel image that U-Boot's booti (arm64) or
// bootz (armhf) accepts and that then spins forever: after the
// bootloader has handed over, nothing changes the disk any more, so a
// test can kill QEMU at "Starting kernel" and read a final state.
func spinKernel(t *testing.T, a Arch) []byte {
	b := make([]byte, 4096)
	switch a {
	case ARM64: // Documentation/arch/arm64/booting.rst header
		binary.LittleEndian.PutUint32(b[0:], 0x14000000)  // code0: b .
		binary.LittleEndian.PutUint64(b[8:], 0)           // text_offset
		binary.LittleEndian.PutUint64(b[16:], 4096)       // image_size
		binary.LittleEndian.PutUint64(b[24:], 0xa)        // LE, 4K pages, placement anywhere
		binary.LittleEndian.PutUint32(b[56:], 0x644d5241) // "ARM\x64"
	case ARMHF: // zImage header
		binary.LittleEndian.PutUint32(b[0:], 0xeafffffe) // b .
		binary.LittleEndian.PutUint32(b[0x24:], 0x016f2818)
		binary.LittleEndian.PutUint32(b[0x28:], 0)    // start: position independent
		binary.LittleEndian.PutUint32(b[0x2c:], 4096) // end
		binary.LittleEndian.PutUint32(b[0x30:], 0x04030201)
	default:
		t.Fatalf("no kernel stub for %s", a)
	}
	return b
}

// garbageKernel has no kernel magic: booti/bootz refuse it and the boot
// script resets.
func garbageKernel() []byte { return bytes.Repeat([]byte("not a kernel\n"), 300) }

func TestUBootSelectsSlots(t *testing.T) {
	for _, tool := range []string{"qemu-system-aarch64", "qemu-system-arm", "mkimage", "mcopy", "mkfs.vfat", "mkfs.ext4", "sfdisk", "fw_printenv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian: qemu-system-arm u-boot-qemu u-boot-tools mtools dosfstools e2fsprogs fdisk libubootenv-tool): %v", tool, err)
		}
	}
	for _, arch := range []Arch{ARM64, ARMHF} {
		t.Run(string(arch), func(t *testing.T) {
			t.Parallel()
			testUBoot(t, arch)
		})
	}
}

// step is one power-on of the VM: the env it starts with, the console
// lines it must print in order, and the env left on the disk when the
// spinning kernel of slot A has been reached.
type step struct {
	name  string
	env   map[string]string
	prep  func(t *testing.T, d *Disk) // instead of env, if set
	lines []string                    // regular expressions, in order
	want  map[string]string
}

// newestCopy returns the copy (0 or 1) U-Boot and agent/bootenv read, and
// its flags.
func newestCopy(t *testing.T, d *Disk) (int, byte) {
	t.Helper()
	env, err := d.Env()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		b, err := d.EnvCopy(i)
		if err != nil {
			t.Fatal(err)
		}
		if e, flags, err := bootenv.DecodeUBoot(b, true); err == nil && maps.Equal(e, env) {
			return i, flags
		}
	}
	t.Fatalf("no copy holds %v", env)
	return 0, 0
}

// tearNewest saves older, then newer, then tears the copy newer went to
// (its first bytes new, the rest the bytes it held before, as a power cut
// in the middle of the write leaves it).
func tearNewest(older, newer map[string]string) func(*testing.T, *Disk) {
	return func(t *testing.T, d *Disk) {
		if err := d.SetEnv(older); err != nil {
			t.Fatal(err)
		}
		if err := d.SetEnv(older); err != nil { // both copies hold older now
			t.Fatal(err)
		}
		before, err := d.EnvCopy(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.SetEnv(newer); err != nil {
			t.Fatal(err)
		}
		i, _ := newestCopy(t, d)
		torn, err := d.EnvCopy(i)
		if err != nil {
			t.Fatal(err)
		}
		copy(torn[12:], before[12:])
		if err := d.WriteEnvCopy(i, torn); err != nil {
			t.Fatal(err)
		}
	}
}

func testUBoot(t *testing.T, arch Arch) {
	ctx := context.Background()
	spec := DiskSpec{
		Arch:     arch,
		SlotSize: 4 << 20, DataSize: 4 << 20,
		SlotA: buildTestSlot(t, arch, spinKernel(t, arch)),
		SlotB: buildTestSlot(t, arch, garbageKernel()),
	}
	d, err := BuildDisk(ctx, spec, filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	const banner = `^U-Boot 20\d\d\.`
	const read, save = `^graft-boot: env copy [12] read \(flags [0-9a-f]+\)$`, `^graft-boot: env copy [12] saved$`
	steps := []step{{
		name: "default env boots A",
		env:  DefaultEnv(),
		lines: []string{banner, read, save,
			`^graft-boot: slot A \(BOOT_A_LEFT now 2\)$`,
			`^graft-boot: bootargs console=ttyAMA0 panic=1 rauc.slot=A root=/dev/vda2 graft.ip=eth0,10.0.2.15/24 quiet$`,
			`Starting kernel`},
		want: map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
	}, {
		// graft's try-once: B installed and marked to try once. Its kernel
		// does not start, the script resets, B has no attempt left and A
		// boots. The second power-on is also the brief's "B A with
		// BOOT_B_LEFT=0 picks A".
		name: "try once falls back to A",
		env:  map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1", "graft_args": "loglevel=7"},
		lines: []string{banner, read, save,
			`^graft-boot: slot B \(BOOT_B_LEFT now 0\)$`,
			`rauc.slot=B root=/dev/vda3 graft.ip=eth0,10.0.2.15/24 loglevel=7$`,
			`^graft-boot: slot B did not boot; reset$`,
			banner, read, save,
			`^graft-boot: slot A \(BOOT_A_LEFT now 2\)$`,
			`Starting kernel`},
		want: map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0", "graft_args": "loglevel=7"},
	}, {
		name: "no attempts left resets counters",
		env:  map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"},
		lines: []string{banner,
			`^graft-boot: no slot has attempts left \(BOOT_ORDER A B\); resetting counters to 3$`,
			save,
			`^graft-boot: reset$`,
			banner, read, save,
			`^graft-boot: slot A \(BOOT_A_LEFT now 2\)$`,
			`Starting kernel`},
		want: map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
	}, {
		// A power cut while the newer copy was written (A committed, the
		// try of B being armed): env import -c refuses its CRC without
		// touching a variable, and the older copy boots A.
		name: "torn newer copy boots the older one",
		prep: tearNewest(map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
			map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1"}),
		lines: []string{banner,
			`^graft-boot: env copy [12] has a bad CRC; trying copy [12]$`, read, save,
			`^graft-boot: slot A \(BOOT_A_LEFT now 2\)$`,
			`Starting kernel`},
		want: map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
	}, {
		// Both copies bad (a blank or wiped disk): the defaults.
		name: "no valid copy boots the defaults",
		prep: func(t *testing.T, d *Disk) {
			for i := range 2 {
				if err := d.WriteEnvCopy(i, bytes.Repeat([]byte{0xa5}, EnvSize)); err != nil {
					t.Fatal(err)
				}
			}
		},
		lines: []string{banner,
			`^graft-boot: env copy [12] has a bad CRC; trying copy [12]$`,
			`^graft-boot: env copy [12] has a bad CRC$`,
			`^graft-boot: no valid env copy; using defaults$`, save,
			`^graft-boot: slot A \(BOOT_A_LEFT now 2\)$`,
			`Starting kernel`},
		want: map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "3"},
	}}
	for _, s := range steps {
		if s.prep != nil {
			s.prep(t, d)
		} else if err := d.SetEnv(s.env); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		runToKernel(t, arch, d, s)
		t.Logf("%s: %s: %v from QEMU start to the stub kernel", arch, s.name, time.Since(start).Round(10*time.Millisecond))

		// U-Boot wrote a copy that agent/bootenv reads as the newest.
		got, err := d.Env()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !maps.Equal(got, s.want) {
			t.Errorf("%s: env after U-Boot %v, want %v", s.name, got, s.want)
		}
		// The copy U-Boot wrote holds the very bytes graft's encoder
		// writes for the same variables and counter (sorted, 0x00
		// padding, CRC32 over the data after the flags byte).
		i, flags := newestCopy(t, d)
		raw, err := d.EnvCopy(i)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := bootenv.EncodeUBoot(s.want, EnvSize, true, flags)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, enc) {
			t.Errorf("%s: U-Boot's copy %d differs from bootenv.EncodeUBoot's", s.name, i+1)
		}
		if got := fwPrintenv(t, d); !maps.Equal(got, s.want) {
			t.Errorf("%s: fw_printenv on the disk = %v, want %v", s.name, got, s.want)
		}
	}
}

// runToKernel boots d until the lines of s appeared in order, then
// kills QEMU and waits for it.
func runToKernel(t *testing.T, arch Arch, d *Disk, s step) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var console bytes.Buffer // written by the console reader, read after Wait
	vm, err := StartVM(ctx, VMOptions{Arch: arch, Disk: d.Path, Memory: 256, Console: &console})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Kill() })
	for _, re := range s.lines {
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(re)); err != nil {
			vm.Kill()
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := vm.Wait(); !errors.As(err, &exit) {
		t.Errorf("Wait after Kill = %v, want an *exec.ExitError", err)
	}
	if err := vm.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	if lines := vm.Lines(); !strings.Contains(console.String(), lines[len(lines)-1]) {
		t.Errorf("Console copy lacks the last line %q", lines[len(lines)-1])
	}
}

func TestWaitForQEMUExit(t *testing.T) {
	// A disk path QEMU cannot open: it exits at once, and WaitFor says so.
	vm, err := StartVM(context.Background(), VMOptions{Arch: ARM64, Disk: filepath.Join(t.TempDir(), "missing.img")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Kill() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := vm.WaitFor(ctx, regexp.MustCompile("never")); !errors.Is(err, ErrVMExited) {
		t.Errorf("WaitFor = %v, want ErrVMExited", err)
	}
	if err := vm.Wait(); err == nil {
		t.Error("Wait = nil for a QEMU that could not open its disk")
	}
}

func TestStartVMNoUBoot(t *testing.T) {
	if _, err := StartVM(context.Background(), VMOptions{Arch: AMD64, Disk: os.DevNull}); !errors.Is(err, ErrNoUBoot) {
		t.Errorf("StartVM(amd64) = %v, want ErrNoUBoot", err)
	}
}
