package klp

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/manifest"
)

// component returns a kernel patch component for module, written to a
// file as the engine hands it over.
func component(t *testing.T, module []byte, name, release string) (*manifest.Component, map[string]string) {
	t.Helper()
	sum := sha256.Sum256(module)
	path := filepath.Join(t.TempDir(), name+".ko")
	if err := os.WriteFile(path, module, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &manifest.Component{Kind: manifest.KindKernelPatch, Name: "kpatch-" + name, KernelPatch: &manifest.KernelPatch{
		Target: "releases/v2/" + name + ".ko", SHA256: sum[:], Release: release, Name: name,
	}}
	return c, map[string]string{c.KernelPatch.Target: path}
}

func TestApplierCheck(t *testing.T) {
	const running = "6.1.0-50-amd64"
	live := synthModule(modinfo("livepatch=Y", "name=graft_klp_x", "vermagic="+testVermagic))
	c, _ := component(t, live, "graft_klp_x", running)
	other, _ := component(t, live, "graft_klp_x", "6.1.0-49-amd64")
	tests := []struct {
		name      string
		livepatch bool
		c         *manifest.Component
		wantErr   error
	}{
		{"applies", true, c, nil},
		{"no livepatch support", false, c, ErrUnsupported},
		{"another kernel", true, other, ErrWrongKernel},
		{"not a kernel patch", true, &manifest.Component{Kind: manifest.KindImage, Name: "rootfs"}, ErrComponent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewApplier(t.TempDir(), fakeSys(t, tt.livepatch, running, ""), 0, nil)
			if err := a.Check(t.Context(), tt.c); !errors.Is(err, tt.wantErr) {
				t.Errorf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestApplierRefusesBeforeLoading: bad input is refused before
// finit_module (on the host it would fail with EPERM, a different error),
// and leaves nothing behind.
func TestApplierRefusesBeforeLoading(t *testing.T) {
	const running = "6.1.0-50-amd64"
	otherMagic := "6.1.0-49-amd64 SMP preempt mod_unload modversions "
	tests := []struct {
		name    string
		module  []byte
		release string
		wantErr error
	}{
		{"text file", []byte("graft_klp_x livepatch=Y\n"), running, ErrNotModule},
		{"module without livepatch=Y", synthModule(modinfo("name=graft_klp_x", "vermagic="+testVermagic)), running, ErrNotLivepatch},
		{"module for another kernel", synthModule(modinfo("livepatch=Y", "name=graft_klp_x", "vermagic="+otherMagic)), running, ErrWrongKernel},
		{"component for another kernel", synthModule(modinfo("livepatch=Y", "name=graft_klp_x", "vermagic="+testVermagic)), "6.1.0-49-amd64", ErrWrongKernel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a := NewApplier(dir, fakeSys(t, true, running, ""), 0, nil)
			c, files := component(t, tt.module, "graft_klp_x", tt.release)
			if _, err := a.Apply(t.Context(), c, files); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Apply = %v, want %v", err, tt.wantErr)
			}
			if st, err := a.State(); err != nil || len(st) != 0 {
				t.Errorf("State = %v, %v; want nothing kept", st, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "graft_klp_x.ko")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("module copy left behind: %v", err)
			}
		})
	}
	t.Run("bytes differ from the manifest", func(t *testing.T) {
		a := NewApplier(t.TempDir(), fakeSys(t, true, running, ""), 0, nil)
		c, files := component(t, []byte("x"), "graft_klp_x", running)
		c.KernelPatch.SHA256 = make([]byte, 32)
		if _, err := a.Apply(t.Context(), c, files); !errors.Is(err, ErrComponent) {
			t.Errorf("Apply = %v, want ErrComponent", err)
		}
	})
}

// TestApplierRestoreAndRevert covers what needs no real kernel: patches
// kept for another kernel are dropped at start, a kept patch still
// enabled stays, and reverting a patch that is not loaded forgets it.
func TestApplierRestoreAndRevert(t *testing.T) {
	const running = "6.1.0-50-amd64"
	s := fakeSys(t, true, running, "")
	dir := t.TempDir()
	a := NewApplier(dir, s, 0, nil)
	mod := synthModule(modinfo("livepatch=Y", "name=graft_klp_x", "vermagic="+testVermagic))
	sum := sha256.Sum256(mod)
	for _, name := range []string{"graft_klp_old", "graft_klp_x"} {
		if err := os.WriteFile(filepath.Join(dir, name+".ko"), mod, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// graft_klp_x is enabled (the agent restarted within one boot).
	p := filepath.Join(s.SysDir, "kernel", "livepatch", "graft_klp_x")
	os.MkdirAll(p, 0o755)
	os.WriteFile(filepath.Join(p, "enabled"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(p, "transition"), []byte("0\n"), 0o644)
	if err := a.save([]Active{
		{Name: "graft_klp_old", Component: "old", Release: "6.1.0-47-amd64", SHA256: sum[:]},
		{Name: "graft_klp_x", Component: "x", Release: running, SHA256: sum[:]},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := a.Restore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Dropped == "" || got[0].Reloaded || got[1].Dropped != "" || got[1].Reloaded {
		t.Fatalf("Restore = %+v; want old dropped, x kept as it is", got)
	}
	if st, _ := a.State(); len(st) != 1 || st[0].Name != "graft_klp_x" {
		t.Errorf("State after Restore = %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "graft_klp_old.ko")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dropped module copy kept: %v", err)
	}
	list, err := a.List()
	if err != nil || len(list) != 1 || list[0].Component != "x" || !list[0].Enabled {
		t.Errorf("List = %+v, %v", list, err)
	}
	// Idempotent Apply: enabled from the kept bytes.
	c, files := component(t, mod, "graft_klp_x", running)
	if _, err := a.Apply(t.Context(), c, files); err != nil {
		t.Errorf("Apply of an enabled patch = %v, want nil", err)
	}
	// Not loaded: Revert only forgets it.
	os.RemoveAll(p)
	if err := a.Revert(t.Context(), c); err != nil {
		t.Fatalf("Revert = %v", err)
	}
	if st, _ := a.State(); len(st) != 0 {
		t.Errorf("State after Revert = %+v", st)
	}
}
