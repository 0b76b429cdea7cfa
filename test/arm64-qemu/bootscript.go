package rig

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// bootCmd is the boot script's source with @ARCH@, @KERNEL@ and @BOOTCMD@
// left to fill in per architecture.
//
//go:embed boot.cmd
var bootCmd string

// ErrNoUBoot is returned for an architecture the rig has no U-Boot for
// (amd64, and anything unknown).
var ErrNoUBoot = errors.New("rig: no U-Boot for this architecture")

// ErrTool is returned when an external tool (mkimage, mkfs.vfat, mcopy,
// sfdisk, debugfs, ...) fails; the error names the command and carries its
// output.
var ErrTool = errors.New("rig: external tool failed")

// The U-Boot environment: two redundant copies of EnvSize bytes, raw on
// the disk at EnvOffsets, in the gap between the partition table and
// partition 1 (U-Boot's redundant format, "crc32 | flags | data"). The
// boot script reads and writes them with "virtio read/write"; the agent
// through the boards' fw_env ("/dev/vda 0x80000 0x4000" and
// "/dev/vda 0xa0000 0x4000"); fw_printenv with the same two lines.
const EnvSize = 0x4000

// EnvOffsets are the byte offsets of copy 1 and copy 2 on the disk.
var EnvOffsets = [2]int64{0x80000, 0xa0000}

// ubootArch describes what differs between the architectures in U-Boot:
// the mkimage architecture, the kernel file in a slot and the command
// that boots it.
type ubootArch struct {
	mkimage string // mkimage -A
	kernel  string // kernel file name in a slot
	boot    string // booti or bootz
	bios    string // Debian's U-Boot for QEMU's virt machine
	qemu    string // qemu-system-* binary
	// cpu: arm64 "max" with QEMU's cheap pointer-authentication algorithm
	// (the architected one makes TCG about 4x slower).
	cpu string
	// machine: armhf's armmp kernel has no LPAE, so PCI must stay below
	// 4 GiB (highmem=off) or it finds no devices.
	machine string
}

func ubootFor(a Arch) (ubootArch, error) {
	switch a {
	case ARM64:
		return ubootArch{mkimage: "arm64", kernel: "Image", boot: "booti",
			bios: "/usr/lib/u-boot/qemu_arm64/u-boot.bin", qemu: "qemu-system-aarch64", cpu: "max,pauth-impdef=on", machine: "virt"}, nil
	case ARMHF:
		return ubootArch{mkimage: "arm", kernel: "zImage", boot: "bootz",
			bios: "/usr/lib/u-boot/qemu_arm/u-boot.bin", qemu: "qemu-system-arm", cpu: "cortex-a15", machine: "virt,highmem=off"}, nil
	}
	return ubootArch{}, fmt.Errorf("%w: %q", ErrNoUBoot, string(a))
}

// KernelFile returns the name the boot script loads the kernel from in a
// slot's file system: "Image" for arm64, "zImage" for armhf, "" for an
// architecture without U-Boot.
func KernelFile(a Arch) string {
	u, err := ubootFor(a)
	if err != nil {
		return ""
	}
	return u.kernel
}

// BootScript returns the U-Boot boot script (the source of boot.scr) for
// a: RAUC's A/B selection over BOOT_ORDER and BOOT_<slot>_LEFT kept in
// the redundant environment at EnvOffsets, then the chosen slot's kernel and initrd.img
// from partition 2 (A) or 3 (B). It prints lines a test can wait for:
//
//	graft-boot: env copy 1 read (flags 4)
//	graft-boot: env copy 2 has a bad CRC; trying copy 1
//	graft-boot: no valid env copy; using defaults
//	graft-boot: saving env copy 2 (flags 5)
//	graft-boot: env copy 2 saved
//	graft-boot: slot B (BOOT_B_LEFT now 0)
//	graft-boot: no slot has attempts left (BOOT_ORDER A B); resetting counters to 3
//	graft-boot: reset
//	graft-boot: slot B did not boot; reset
//
// It returns "" for an architecture without U-Boot.
func BootScript(a Arch) string {
	u, err := ubootFor(a)
	if err != nil {
		return ""
	}
	hex := func(n int64) string { return fmt.Sprintf("%#x", n) }
	return strings.NewReplacer("@ARCH@", string(a), "@KERNEL@", u.kernel, "@BOOTCMD@", u.boot,
		"@ENV_SIZE@", hex(EnvSize), "@ENV_ISIZE@", hex(EnvSize-1), "@ENV_BLKS@", hex(EnvSize/sectorSize),
		"@ENV1_OFF@", hex(EnvOffsets[0]), "@ENV2_OFF@", hex(EnvOffsets[1]),
		"@ENV1_BLK@", hex(EnvOffsets[0]/sectorSize), "@ENV2_BLK@", hex(EnvOffsets[1]/sectorSize)).Replace(bootCmd)
}

// CompileBootScript writes BootScript(a) as a legacy U-Boot script image
// (mkimage -T script) to out, the boot.scr U-Boot's distro boot runs.
func CompileBootScript(ctx context.Context, a Arch, out string) error {
	u, err := ubootFor(a)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "graft-bootscr-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "boot.cmd")
	if err := os.WriteFile(src, []byte(BootScript(a)), 0o644); err != nil {
		return err
	}
	_, err = toolOut(ctx, "mkimage", "-A", u.mkimage, "-O", "linux", "-T", "script", "-C", "none",
		"-n", "graft A/B boot script", "-d", src, out)
	return err
}

// toolOut runs a tool and returns its standard output; a failure is ErrTool
// with the command line and its standard error.
func toolOut(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w: %s", ErrTool, name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
