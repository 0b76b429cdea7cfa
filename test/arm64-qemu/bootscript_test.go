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
				// The environment file: read, written back, 0x4000 bytes.
				`env import -c ${loadaddr} 0x4000 ${graft_vars}`,
				`env export -c -s 0x4000 ${loadaddr} ${graft_vars}`,
				`fatwrite ${devtype} ${devnum}:1 ${loadaddr} uboot.env 0x4000`,
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
			if strings.Contains(s, "saveenv") {
				t.Errorf("script uses saveenv, which fails on QEMU 7.2's pflash")
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
