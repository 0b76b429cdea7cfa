package rig

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootScriptText(t *testing.T) {
	tests := []struct {
		arch   Arch
		kernel string
		boot   string
	}{
		{ARM64, "Image", "booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}"},
		{ARMHF, "zImage", "bootz ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}"},
	}
	for _, tt := range tests {
		t.Run(string(tt.arch), func(t *testing.T) {
			s := BootScript(tt.arch)
			for _, want := range []string{
				// RAUC's variables, defaults and counter arithmetic.
				`test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"`,
				`test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3`,
				`test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3`,
				`for BOOT_SLOT in "${BOOT_ORDER}"; do`,
				`test 0x${BOOT_A_LEFT} -gt 0`,
				`setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1`,
				`setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1`,
				`rauc.slot=${raucslot}`,
				// The redundant environment: both copies read raw from the
				// disk (0x80000 and 0xa0000, 0x20 blocks each), imported
				// past the flags byte, the other copy written back.
				`${devtype} read ${graft_buf1} 0x400 0x20 && ${devtype} read ${graft_buf2} 0x500 0x20`,
				`env import -c ${graft_pa} 0x3fff ${graft_vars}`,
				`env import -c ${graft_pb} 0x3fff ${graft_vars}`,
				`env export -c -s 0x3fff ${graft_wp} ${graft_vars}`,
				`${devtype} write ${graft_wbuf} ${graft_wblk} 0x20`,
				`/dev/vda 0x80000 0x4000`,
				`/dev/vda 0xa0000 0x4000`,
				`setenv graft_vars "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT graft_args"`,
				"load ${devtype} ${devnum}:${bootpart} ${kernel_addr_r} " + tt.kernel,
				tt.boot,
			} {
				if !strings.Contains(s, want) {
					t.Errorf("script lacks %q", want)
				}
			}
			if strings.Contains(s, "@") {
				t.Errorf("script has an unfilled placeholder")
			}
			for _, bad := range []string{"saveenv", "fatwrite"} {
				if strings.Contains(s, bad) {
					t.Errorf("script uses %s (saveenv fails on QEMU 7.2's pflash; fatwrite rewrites a FAT a power cut can tear)", bad)
				}
			}

			out := filepath.Join(t.TempDir(), "boot.scr")
			if err := CompileBootScript(context.Background(), tt.arch, out); err != nil {
				t.Fatal(err)
			}
			info, err := exec.Command("mkimage", "-l", out).CombinedOutput()
			if err != nil {
				t.Fatalf("mkimage -l: %v: %s", err, info)
			}
			if !strings.Contains(string(info), "Script") {
				t.Errorf("mkimage -l does not list a script:\n%s", info)
			}
		})
	}
}

func TestBootScriptNoUBoot(t *testing.T) {
	if s := BootScript(AMD64); s != "" {
		t.Errorf("BootScript(amd64) = %d bytes, want none", len(s))
	}
	err := CompileBootScript(context.Background(), AMD64, filepath.Join(t.TempDir(), "boot.scr"))
	if !errors.Is(err, ErrNoUBoot) {
		t.Errorf("CompileBootScript(amd64) = %v, want ErrNoUBoot", err)
	}
}
