package rig

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUnmetConfig(t *testing.T) {
	config := "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"-x\"\nCONFIG_M=m\n"
	tests := []struct {
		name     string
		fragment string
		want     []string
	}{
		{"all met", "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"-x\"\n# CONFIG_Z is not set\n", nil},
		{"missing symbol", "CONFIG_LIVEPATCH=y\n", []string{"CONFIG_LIVEPATCH=y"}},
		{"other value", "CONFIG_M=y\nCONFIG_S=\"-y\"\n", []string{"CONFIG_M=y", "CONFIG_S=\"-y\""}},
		{"set but wanted off", "# CONFIG_A is not set\n", []string{"# CONFIG_A is not set"}},
		{"comments and blanks ignored", "# a comment\n\n  CONFIG_A=y  \n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := UnmetConfig([]byte(tt.fragment), []byte(config)); !slices.Equal(got, tt.want) {
				t.Errorf("UnmetConfig = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzUnmetConfig(f *testing.F) {
	f.Add([]byte(klpConfigFragment), []byte("CONFIG_LIVEPATCH=y\n"))
	f.Add([]byte("# CONFIG_X is not set\n"), []byte("CONFIG_X=m\n"))
	f.Fuzz(func(t *testing.T, fragment, config []byte) {
		unmet := UnmetConfig(fragment, config)
		for _, l := range unmet {
			if !strings.Contains(string(fragment), l) {
				t.Errorf("unmet line %q is not in the fragment", l)
			}
		}
	})
}

func TestKLPConfigFragmentWantsLivepatch(t *testing.T) {
	for _, want := range []string{"CONFIG_LIVEPATCH=y", "CONFIG_MODULE_UNLOAD=y", "CONFIG_BASIC_MODVERSIONS=y", "CONFIG_KALLSYMS_ALL=y", "CONFIG_DYNAMIC_FTRACE=y"} {
		if !slices.Contains(strings.Split(klpConfigFragment, "\n"), want) {
			t.Errorf("fragment lacks %s", want)
		}
	}
}

func TestSourceFromDepends(t *testing.T) {
	tests := []struct {
		name, out, want string
		ok              bool
	}{
		{"backports", "linux-source\n  Depends: linux-source-7.3\n", "linux-source-7.3", true},
		{"skips old and others", "linux-source\n  Depends: binutils\n  Depends: linux-source-6.12\n  Depends: linux-source-7.10\n", "linux-source-7.10", true},
		{"none", "linux-source\n  Depends: linux-source-6.1\n", "", false},
		{"malformed", "linux-source\n  Depends: linux-source-7.x\n  Depends: linux-source-\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sourceFromDepends([]byte(tt.out))
			if got != tt.want || ok != tt.ok {
				t.Errorf("sourceFromDepends = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCandidateVersion(t *testing.T) {
	tests := []struct {
		name, out, want string
		ok              bool
	}{
		{"candidate", "linux-source-7.3:\n  Installed: (none)\n  Candidate: 7.3.4-1~bpo13+1\n  Version table:\n", "7.3.4-1~bpo13+1", true},
		{"none", "linux-source-7.3:\n  Installed: (none)\n  Candidate: (none)\n", "", false},
		{"missing", "N: Unable to locate package linux-source-7.3\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := candidateVersion([]byte(tt.out))
			if got != tt.want || ok != tt.ok {
				t.Errorf("candidateVersion = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCachedLivepatchKernelEmpty(t *testing.T) {
	t.Setenv("GRAFT_RIG_CACHE", t.TempDir())
	if _, err := CachedLivepatchKernel(); !errors.Is(err, ErrNoLivepatchKernel) {
		t.Fatalf("CachedLivepatchKernel = %v, want ErrNoLivepatchKernel", err)
	}
}

func TestCachedLivepatchKernelStamp(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("GRAFT_RIG_CACHE", cache)
	dir := filepath.Join(cache, "klp-kernel")
	vdir := filepath.Join(dir, "7.3.4-1")
	img := filepath.Join(vdir, "root", "boot", "vmlinuz-7.3.4-graft-klp")
	if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vdir+".ok", []byte("linux-source-7.3=7.3.4-1\n7.3.4-graft-klp\n"+klpConfigHash()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Stamped, but the Image is gone: not a kernel.
	if _, err := CachedLivepatchKernel(); !errors.Is(err, ErrNoLivepatchKernel) {
		t.Fatalf("CachedLivepatchKernel without Image = %v, want ErrNoLivepatchKernel", err)
	}
	if err := os.WriteFile(img, []byte("Image"), 0o644); err != nil {
		t.Fatal(err)
	}
	lk, err := CachedLivepatchKernel()
	if err != nil {
		t.Fatal(err)
	}
	// Built with another configuration fragment: stale.
	if err := os.WriteFile(vdir+".ok", []byte("linux-source-7.3=7.3.4-1\n7.3.4-graft-klp\n0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CachedLivepatchKernel(); !errors.Is(err, ErrNoLivepatchKernel) {
		t.Errorf("CachedLivepatchKernel with another config = %v, want ErrNoLivepatchKernel", err)
	}
	if lk.Release != "7.3.4-graft-klp" || lk.Arch != ARM64 || lk.Image != img ||
		lk.Tree != filepath.Join(vdir, "linux-source-7.3") || lk.Source != "linux-source-7.3=7.3.4-1" {
		t.Errorf("CachedLivepatchKernel = %+v %+v", lk, lk.Kernel)
	}
}

// TestBuildLivepatchKernel builds the arm64 livepatch kernel into the
// cache (about 13 minutes the first time): `make arm64-livepatch-kernel`
// runs it with GRAFT_BUILD_KLP_KERNEL=1. Without that it is skipped, so
// `make test` never builds a kernel.
func TestBuildLivepatchKernel(t *testing.T) {
	if os.Getenv("GRAFT_BUILD_KLP_KERNEL") != "1" {
		t.Skip("builds a kernel: set GRAFT_BUILD_KLP_KERNEL=1 (make arm64-livepatch-kernel)")
	}
	for _, tool := range []string{"make", "aarch64-linux-gnu-gcc", "bison", "flex", "bc", "depmod", "dpkg-deb", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (cross/debian-deps.sh; bison, flex and libelf-dev build the kernel)", tool)
		}
	}
	start := time.Now()
	lk, err := BuildLivepatchKernel(t.Context(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("livepatch kernel %s from %s: %s (%v)", lk.Release, lk.Source, lk.Image, time.Since(start).Round(time.Second))
	cfg, err := os.ReadFile(filepath.Join(lk.Tree, ".config"))
	if err != nil {
		t.Fatal(err)
	}
	if unmet := UnmetConfig([]byte("CONFIG_LIVEPATCH=y\n"), cfg); len(unmet) > 0 {
		t.Errorf(".config lacks %q", unmet)
	}
	// Everything DefaultModules names is built in.
	if mods, err := lk.ModuleClosure(DefaultModules(ARM64)...); err != nil || len(mods) != 0 {
		t.Errorf("ModuleClosure(DefaultModules) = %q, %v; want none (built in)", mods, err)
	}
	if got, err := CachedLivepatchKernel(); err != nil || got.Release != lk.Release {
		t.Errorf("CachedLivepatchKernel = %+v, %v", got, err)
	}
}

func FuzzSourceFromDepends(f *testing.F) {
	f.Add([]byte("linux-source\n  Depends: linux-source-7.3\n"))
	f.Add([]byte("  Depends: linux-source-6.1\n  Depends: linux-source-12.0\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		pkg, ok := sourceFromDepends(out)
		if !ok {
			return
		}
		if !strings.HasPrefix(pkg, "linux-source-") || strings.ContainsAny(pkg, " /\n") || !strings.Contains(string(out), pkg) {
			t.Errorf("sourceFromDepends = %q", pkg)
		}
	})
}

func FuzzCandidateVersion(f *testing.F) {
	f.Add([]byte("  Candidate: 7.3.4-1~bpo13+1\n"))
	f.Add([]byte("  Candidate: (none)\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		v, ok := candidateVersion(out)
		if !ok {
			return
		}
		if v == "" || strings.ContainsAny(v, " /\n") || !strings.Contains(string(out), v) {
			t.Errorf("candidateVersion = %q", v)
		}
	})
}
