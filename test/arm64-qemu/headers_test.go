package rig

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestHeaderDepends(t *testing.T) {
	// apt-cache depends linux-headers-6.1.0-50-amd64:amd64 with a
	// multi-architecture private state: the Architecture: all package
	// shows up as a virtual name first.
	out := []byte(`linux-headers-6.1.0-50-amd64:amd64
  Depends: <linux-headers-6.1.0-50-common:amd64>
    linux-headers-6.1.0-50-common
  Depends: linux-kbuild-6.1:amd64
    linux-kbuild-6.1:armhf
    linux-kbuild-6.1
  Depends: linux-compiler-gcc-12-x86:amd64
`)
	got := headerDepends(out)
	want := []string{"linux-headers-6.1.0-50-common", "linux-kbuild-6.1"}
	if !slices.Equal(got, want) {
		t.Errorf("headerDepends = %q, want %q", got, want)
	}
}

func TestRelocateHeaders(t *testing.T) {
	root := t.TempDir()
	const rel = "6.1.0-50-amd64"
	mk := filepath.Join(root, "usr", "src", "linux-headers-"+rel, "Makefile")
	if err := os.MkdirAll(filepath.Dir(mk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mk, []byte("include /usr/src/linux-headers-6.1.0-50-common/Makefile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := relocateHeaders(root, "/cache/h/"+rel, rel); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(mk)
	if want := "include /cache/h/" + rel + "/usr/src/linux-headers-6.1.0-50-common/Makefile\n"; string(b) != want {
		t.Errorf("Makefile = %q, want %q", b, want)
	}
	// A tree without the include is not what the rig knows how to use.
	if err := relocateHeaders(root, "/elsewhere", rel); !errors.Is(err, ErrNoHeaders) {
		t.Errorf("second relocate = %v, want ErrNoHeaders", err)
	}
}

func TestHashSources(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Kbuild"), []byte("obj-m := m.o\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "m.c"), []byte("int x;\n"), 0o644)
	h1, files, err := hashSources(dir, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Errorf("files = %d, want 2", len(files))
	}
	h2, _, _ := hashSources(dir, "r2")
	os.WriteFile(filepath.Join(dir, "m.c"), []byte("int y;\n"), 0o644)
	h3, _, _ := hashSources(dir, "r1")
	if h1 == h2 || h1 == h3 {
		t.Errorf("hash ignores the release or the sources: %s %s %s", h1, h2, h3)
	}
	if _, _, err := hashSources(t.TempDir(), "r1"); !errors.Is(err, ErrModuleBuild) {
		t.Errorf("empty dir: %v, want ErrModuleBuild", err)
	}
}
