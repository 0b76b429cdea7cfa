package rig

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestArchGOARCH(t *testing.T) {
	tests := []struct {
		arch          Arch
		goarch, goarm string
	}{
		{ARM64, "arm64", ""},
		{ARMHF, "arm", "7"},
		{AMD64, "amd64", ""},
		{Arch("mips"), "", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.arch), func(t *testing.T) {
			goarch, goarm := tt.arch.GOARCH()
			if goarch != tt.goarch || goarm != tt.goarm {
				t.Errorf("GOARCH() = %q, %q; want %q, %q", goarch, goarm, tt.goarch, tt.goarm)
			}
		})
	}
}

func TestCacheDir(t *testing.T) {
	tests := []struct {
		name                string
		rigCache, xdg, home string
		want                string
	}{
		{"explicit", "/srv/rig", "/x", "/h", "/srv/rig"},
		{"xdg", "", "/x", "/h", "/x/graft-rig"},
		{"home", "", "", "/h", "/h/.cache/graft-rig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GRAFT_RIG_CACHE", tt.rigCache)
			t.Setenv("XDG_CACHE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			got, err := CacheDir()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("CacheDir() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReleaseFromDepends(t *testing.T) {
	tests := []struct {
		name string
		arch Arch
		out  string
		want string
	}{
		{"arm64", ARM64, "linux-image-arm64\n  Depends: linux-image-6.1.0-50-arm64\n", "6.1.0-50-arm64"},
		{"armhf qualified", ARMHF, "linux-image-armmp:armhf\n  Depends: linux-image-6.1.0-50-armmp:armhf\n", "6.1.0-50-armmp"},
		{"other deps first", AMD64, "linux-image-amd64\n  Depends: firmware-x\n  Depends: linux-image-6.1.0-49-amd64\n", "6.1.0-49-amd64"},
		{"no image", ARM64, "linux-image-arm64\n  Depends: linux-image-arm64-signed\n", ""},
		{"empty", ARM64, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := releaseFromDepends([]byte(tt.out), tt.arch)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("releaseFromDepends = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func readDepSeed(t testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestModuleDepsClosure(t *testing.T) {
	deps, err := ParseModulesDep(bytes.NewReader(readDepSeed(t)))
	if err != nil {
		t.Fatal(err)
	}
	builtin := map[string]bool{"virtio": true, "virtio_ring": true}
	tests := []struct {
		name    string
		names   []string
		want    []string
		wantErr error
	}{
		{
			name:  "ext4 after its deps",
			names: []string{"ext4"},
			want: []string{
				"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko",
				"kernel/fs/ext4/ext4.ko",
			},
		},
		{
			name:  "shared deps once",
			names: []string{"vfat", "msdos", "vfat"},
			want:  []string{"kernel/fs/fat/fat.ko", "kernel/fs/fat/vfat.ko", "kernel/fs/fat/msdos.ko"},
		},
		{
			name:  "transitive deps first",
			names: []string{"virtio_net"},
			want: []string{
				"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko",
				"kernel/drivers/net/virtio_net.ko",
			},
		},
		{
			name:  "dashes and built-ins",
			names: []string{"virtio-pci", "virtio"},
			want: []string{
				"kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
				"kernel/drivers/virtio/virtio_pci_modern_dev.ko",
				"kernel/drivers/virtio/virtio_pci.ko",
			},
		},
		{name: "unknown", names: []string{"vfat", "no_such_fs"}, wantErr: ErrUnknownModule},
		{name: "cycle", names: []string{"loop_a"}, wantErr: ErrModulesDep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deps.Closure(builtin, tt.names...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Closure error = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Closure = %q\nwant      %q", got, tt.want)
			}
		})
	}
}

func TestParseModulesDepErrors(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"no colon", "kernel/fs/fat/fat.ko\n"},
		{"not a module", "kernel/fs/fat/fat: \n"},
		{"escaping path", "../../etc/x.ko:\n"},
		{"absolute dependency", "kernel/a.ko: /lib/b.ko\n"},
		{"empty name", "kernel/.ko:\n"},
		{"twice", "kernel/a.ko:\nextra/a.ko:\n"},
		{"unclean", "kernel/./a.ko:\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseModulesDep(strings.NewReader(tt.in)); !errors.Is(err, ErrModulesDep) {
				t.Errorf("ParseModulesDep(%q) error = %v, want ErrModulesDep", tt.in, err)
			}
		})
	}
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add(readDepSeed(f))
	f.Add([]byte("a.ko: b.ko\nb.ko: a.ko\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		deps, err := ParseModulesDep(bytes.NewReader(data))
		if err != nil {
			return
		}
		for name, e := range deps {
			if !filepath.IsLocal(e.Path) || ModuleName(e.Path) != name {
				t.Fatalf("entry %q has path %q", name, e.Path)
			}
			order, err := deps.Closure(nil, name)
			if err != nil {
				continue // a cycle or a dependency without its own line
			}
			if len(order) == 0 || order[len(order)-1] != e.Path {
				t.Fatalf("closure of %q = %q does not end with it", name, order)
			}
		}
	})
}

func TestLockFileExcludes(t *testing.T) {
	name := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, name); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: error = %v, want deadline exceeded", err)
	}
	unlock()
	unlock2, err := lockFile(context.Background(), name)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}

func TestPruneKernels(t *testing.T) {
	kdir := t.TempDir()
	for _, r := range []string{"6.1.0-49-arm64", "6.1.0-50-arm64"} {
		if err := os.MkdirAll(filepath.Join(kdir, r, "boot"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stampPath(kdir, r), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pruneKernels(kdir, "6.1.0-50-arm64", t.Logf)
	entries, err := os.ReadDir(kdir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"6.1.0-50-arm64", "6.1.0-50-arm64.ok"}; !slices.Equal(names, want) {
		t.Errorf("after pruning: %q, want %q", names, want)
	}
}

// fetchKernel fetches a real Debian kernel into the shared cache; the first
// run downloads about 60 MB per architecture.
func fetchKernel(t *testing.T, arch Arch) *Kernel {
	t.Helper()
	if testing.Short() {
		t.Skip("downloads a Debian kernel")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := FetchKernel(ctx, arch, t.Logf)
	if err != nil {
		t.Fatalf("FetchKernel(%s): %v", arch, err)
	}
	return k
}

func TestFetchKernel(t *testing.T) {
	tests := []struct {
		arch   Arch
		suffix string
		// isImage checks the boot image's header.
		isImage func(b []byte) bool
	}{
		{ARM64, "-arm64", func(b []byte) bool {
			// arm64 Image header: magic "ARM\x64" at offset 56.
			return len(b) > 64 && string(b[56:60]) == "ARM\x64"
		}},
		{ARMHF, "-armmp", func(b []byte) bool {
			// zImage: magic 0x016f2818 at offset 0x24.
			return len(b) > 0x28 && binary.LittleEndian.Uint32(b[0x24:]) == 0x016f2818
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.arch), func(t *testing.T) {
			k := fetchKernel(t, tt.arch)
			if k.Arch != tt.arch || !strings.HasSuffix(k.Release, tt.suffix) {
				t.Errorf("kernel %s %q, want arch %s and a release ending %q", k.Arch, k.Release, tt.arch, tt.suffix)
			}
			img, err := os.ReadFile(k.Image)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.isImage(img) {
				t.Errorf("%s is not a %s boot image", k.Image, tt.arch)
			}

			// Cached: the same kernel again.
			again := fetchKernel(t, tt.arch)
			if *again != *k {
				t.Errorf("second FetchKernel = %+v, want %+v", again, k)
			}

			mods, err := k.ModuleClosure("virtio_blk", "vfat", "ext4")
			if err != nil {
				t.Fatal(err)
			}
			checkLoadOrder(t, k, mods)
			names := make([]string, len(mods))
			for i, m := range mods {
				names[i] = ModuleName(m)
			}
			t.Logf("closure(virtio_blk, vfat, ext4) = %v", names)
			for _, want := range []string{"virtio_blk", "fat", "vfat", "jbd2", "mbcache", "ext4"} {
				if !slices.Contains(names, want) {
					t.Errorf("closure lacks %s: %v", want, names)
				}
			}
			if slices.Contains(names, "virtio") {
				t.Errorf("closure holds virtio, which Debian builds in: %v", names)
			}

			if _, err := k.ModuleClosure("ext4", "graft_no_such_module"); !errors.Is(err, ErrUnknownModule) {
				t.Errorf("unknown module: error = %v, want ErrUnknownModule", err)
			}
		})
	}
}

// checkLoadOrder asserts that mods are distinct existing files and that
// each one's dependencies, as depmod wrote them, come before it.
func checkLoadOrder(t *testing.T, k *Kernel, mods []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(k.moduleDir(), "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deps, err := ParseModulesDep(f)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		if !filepath.IsAbs(m) {
			t.Errorf("%s is not absolute", m)
		}
		if _, err := os.Stat(m); err != nil {
			t.Error(err)
		}
		if _, dup := pos[ModuleName(m)]; dup {
			t.Errorf("%s listed twice", m)
		}
		pos[ModuleName(m)] = i
	}
	for i, m := range mods {
		for _, d := range deps[ModuleName(m)].Deps {
			j, ok := pos[ModuleName(d)]
			if !ok || j > i {
				t.Errorf("%s needs %s, which is not loaded before it", ModuleName(m), ModuleName(d))
			}
		}
	}
}
