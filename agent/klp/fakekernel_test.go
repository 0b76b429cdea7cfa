package klp

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// fakeKernel stands in for the kernel's module loader (System.Modules)
// and keeps the fake sysfs of fakeSys in step, as the kernel would: a
// loaded patch is enabled with its transition done, a module built with
// .replace = true frees every other patch (their modules stay loaded
// until deleted), and a module whose patch is still in sysfs is busy.
type fakeKernel struct {
	t       *testing.T
	sysDir  string
	replace map[string]bool // modules built with .replace = true
	loads   []string        // "name params" of every finit_module
}

var _ Modules = (*fakeKernel)(nil)

// withFakeKernel gives s a fake kernel; its sysfs is s.SysDir.
func withFakeKernel(t *testing.T, s *System) *fakeKernel {
	k := &fakeKernel{t: t, sysDir: s.SysDir, replace: map[string]bool{}}
	s.Modules = k
	return k
}

func (k *fakeKernel) lp(name string) string {
	return filepath.Join(k.sysDir, "kernel", "livepatch", name)
}
func (k *fakeKernel) mod(name string) string { return filepath.Join(k.sysDir, "module", name) }

func (k *fakeKernel) Load(name string, _ []byte, params string) error {
	if _, err := os.Stat(k.mod(name)); err == nil {
		return syscall.EEXIST
	}
	k.loads = append(k.loads, name+" "+params)
	if k.replace[name] {
		ents, _ := os.ReadDir(filepath.Join(k.sysDir, "kernel", "livepatch"))
		for _, e := range ents {
			os.RemoveAll(k.lp(e.Name()))
		}
	}
	for _, d := range []string{k.mod(name), k.lp(name)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	os.WriteFile(filepath.Join(k.lp(name), "enabled"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(k.lp(name), "transition"), []byte("0\n"), 0o644)
	return nil
}

func (k *fakeKernel) Delete(name string) error {
	if _, err := os.Stat(k.lp(name)); err == nil {
		return syscall.EBUSY
	}
	if _, err := os.Stat(k.mod(name)); err != nil {
		return syscall.ENOENT
	}
	return os.RemoveAll(k.mod(name))
}

// enabled lists the patches enabled in the fake sysfs.
func (k *fakeKernel) enabled() []string {
	ents, _ := os.ReadDir(filepath.Join(k.sysDir, "kernel", "livepatch"))
	var out []string
	for _, e := range ents {
		if b, _ := os.ReadFile(filepath.Join(k.lp(e.Name()), "enabled")); string(b) == "1\n" {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

// modules lists the modules loaded.
func (k *fakeKernel) modules() []string {
	ents, _ := os.ReadDir(filepath.Join(k.sysDir, "module"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// reboot empties the fake kernel: nothing loaded.
func (k *fakeKernel) reboot() {
	os.RemoveAll(filepath.Join(k.sysDir, "module"))
	os.RemoveAll(filepath.Join(k.sysDir, "kernel", "livepatch"))
	os.MkdirAll(filepath.Join(k.sysDir, "kernel", "livepatch"), 0o755)
}
