package cli_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/tools/fleet/cli"
)

// relocatable returns the start of a little-endian ELF64 relocatable:
// what release add checks of a .ko (the agent checks the rest).
func relocatable(tag string) []byte {
	b := make([]byte, 64)
	copy(b, "\x7fELF\x02\x01\x01")
	b[16] = 1 // ET_REL
	return append(b, tag...)
}

func TestReleaseAddLive(t *testing.T) {
	dir := newRepo(t)
	tmp := t.TempDir()
	ko := filepath.Join(tmp, "graft_klp_a.ko")
	os.WriteFile(ko, relocatable("a"), 0o644)
	bundle := &ulp.Bundle{Format: ulp.FormatVersion, Name: "atoi", Arch: ulp.AMD64, BuildID: bytes.Repeat([]byte{7}, 20),
		Soname: "libc.so.6", Code: []byte{0xc3}, Funcs: []ulp.Func{{Symbol: "atoi", Target: 0x1000, Size: 16, CheckLen: 16, Check: make([]byte, 32), New: 0}}}
	raw, err := bundle.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ulpPath := filepath.Join(tmp, "atoi.ulp")
	os.WriteFile(ulpPath, raw, 0o644)
	img, _ := writeImage(t, 64<<10)
	notModule := filepath.Join(tmp, "notes.txt")
	os.WriteFile(notModule, []byte("not a module"), 0o644)

	base := []string{"release", "add", "--repo", dir, "--board", "qemu-virt-amd64", "--json"}
	tests := []struct {
		name     string
		args     []string
		wantCode int
	}{
		{"v2", []string{"--name", "v2", "--version", "2.0.0", "--sequence", "2", "--kernel-patch", ko, "--kernel-release", "6.1.0-50-amd64",
			"--patch-name", "graft_klp_a", "--replace", "--user-patch", ulpPath, "--soname", "libc.so.6", "--image", img}, cli.ExitOK},
		{"v3", []string{"--name", "v3", "--version", "3.0.0", "--sequence", "3", "--kernel-patch", ko, "--kernel-release", "6.1.0-50-amd64",
			"--patch-name", "graft_klp_a", "--module-param", "replace=1", "--module-param", "debug"}, cli.ExitOK},
		{"bad module parameter", []string{"--name", "v4", "--version", "4.0.0", "--sequence", "4", "--kernel-patch", ko, "--kernel-release", "6.1.0-50-amd64",
			"--patch-name", "graft_klp_a", "--module-param", "a=b c"}, cli.ExitFailure},
		{"module parameter without a kernel patch", []string{"--name", "v4", "--version", "4.0.0", "--sequence", "4", "--user-patch", ulpPath,
			"--soname", "libc.so.6", "--module-param", "a=1"}, cli.ExitUsage},
		{"no release", []string{"--name", "v4", "--version", "4.0.0", "--sequence", "4", "--kernel-patch", ko, "--patch-name", "p"}, cli.ExitUsage},
		{"no soname", []string{"--name", "v4", "--version", "4.0.0", "--sequence", "4", "--user-patch", ulpPath}, cli.ExitUsage},
		{"not a module", []string{"--name", "v4", "--version", "4.0.0", "--sequence", "4", "--kernel-patch", notModule,
			"--kernel-release", "r", "--patch-name", "p"}, cli.ExitFailure},
		{"not a bundle", []string{"--name", "v4", "--version", "4.0.0", "--sequence", "4", "--user-patch", notModule, "--soname", "libc.so.6"}, cli.ExitFailure},
	}
	for _, tt := range tests {
		code, _, stderr := run(t.Context(), append(base, tt.args...)...)
		if code != tt.wantCode {
			t.Errorf("%s: exit %d, want %d: %s", tt.name, code, tt.wantCode, stderr)
		}
	}

	c := device(t, dir)
	data, err := c.ReadTarget(t.Context(), "releases/v2/manifest.cbor", manifest.MaxSize)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	kp := m.Component("graft_klp_a")
	up := m.Component("user-libc.so.6")
	if kp == nil || kp.KernelPatch.Release != "6.1.0-50-amd64" || !kp.KernelPatch.Replace || kp.Fallback() != "rootfs" ||
		up == nil || !bytes.Equal(up.UserPatch.Bundles[0].BuildID, bundle.BuildID) || up.Fallback() != "rootfs" || len(m.Images()) != 1 {
		t.Fatalf("manifest components %+v", m.Components)
	}
	mod, err := c.ReadTarget(t.Context(), kp.KernelPatch.Target, 1<<20)
	if sum := sha256.Sum256(mod); err != nil || !bytes.Equal(sum[:], kp.KernelPatch.SHA256) {
		t.Errorf("module target: %v", err)
	}
	data, err = c.ReadTarget(t.Context(), "releases/v3/manifest.cbor", manifest.MaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := manifest.Decode(data); err != nil || len(m.Images()) != 0 || m.Component("graft_klp_a").Fallback() != "" ||
		!slices.Equal(m.Component("graft_klp_a").KernelPatch.Params, []string{"replace=1", "debug"}) {
		t.Errorf("live-only release: %+v, %v", m, err)
	}
	if _, err := c.ReadTarget(t.Context(), "releases/v4/manifest.cbor", manifest.MaxSize); err == nil {
		t.Error("a refused release was published")
	}
}
