package rig

import (
	"context"
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const aptShowSeed = `Package: libc6
Source: glibc
Version: 2.36-9+deb12u14
Architecture: arm64
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: libssl3
Version: 3.0.20-1~deb12u2
Architecture: armhf
`

func TestParseAptShow(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []AptRecord
		wantErr error
	}{
		{"two stanzas", aptShowSeed, []AptRecord{
			{"libc6", "2.36-9+deb12u14", "arm64"},
			{"libssl3", "3.0.20-1~deb12u2", "armhf"},
		}, nil},
		{"empty", "", nil, nil},
		{"blank lines only", "\n\n", nil, nil},
		{"no version", "Package: libc6\nArchitecture: arm64\n", nil, ErrAptShow},
		{"no field name", "Package libc6\n", nil, ErrAptShow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAptShow([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseAptShow = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("record %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func FuzzParseAptShow(f *testing.F) {
	f.Add([]byte(aptShowSeed))
	f.Add([]byte("Package: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ParseAptShow(data)
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.Package == "" || r.Version == "" {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

func TestUserlandStamp(t *testing.T) {
	v := map[string]string{"libc6": "2.36-9+deb12u14", "libgcc-s1": "12.2.0-14+deb12u1", "libssl3": "3.0.20-1~deb12u2"}
	text := formatUserlandStamp(v)
	got, err := parseUserlandStamp([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for p, ver := range v {
		if got[p] != ver {
			t.Errorf("%s = %q after a round trip, want %q", p, got[p], ver)
		}
	}
	if userlandKey(text) == userlandKey(strings.Replace(text, "deb12u2", "deb12u3", 1)) {
		t.Error("a new version keeps the same directory")
	}
	if _, err := parseUserlandStamp([]byte("libc6 2.36\n")); !errors.Is(err, ErrNoUserland) {
		t.Errorf("incomplete stamp: error = %v, want ErrNoUserland", err)
	}
}

// TestUserlandLib lays out a tree the way libc6 and libssl3 do, with an
// absolute link that must resolve inside the tree, not on the host.
func TestUserlandLib(t *testing.T) {
	root := t.TempDir()
	write := func(p, data string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(p, target string) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	write("lib/x86_64-linux-gnu/libc.so.6", "libc")
	write("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "ld")
	link("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	write("usr/lib/x86_64-linux-gnu/libcrypto.so.3", "crypto")
	link("usr/lib/x86_64-linux-gnu/libcrypto.so", "libcrypto.so.3")
	link("usr/lib/x86_64-linux-gnu/libloop.so", "libloop.so")
	write("usr/share/doc/libc6/copyright", "doc")
	u := &Userland{Arch: AMD64, Root: root}

	tests := []struct {
		soname, want string
	}{
		{"libc.so.6", "lib/x86_64-linux-gnu/libc.so.6"},
		{"libcrypto.so.3", "usr/lib/x86_64-linux-gnu/libcrypto.so.3"},
		{"libcrypto.so", "usr/lib/x86_64-linux-gnu/libcrypto.so.3"},
		{"ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
	}
	for _, tt := range tests {
		got, err := u.Lib(tt.soname)
		if err != nil || got != filepath.Join(root, tt.want) {
			t.Errorf("Lib(%q) = %q, %v; want %q", tt.soname, got, err, filepath.Join(root, tt.want))
		}
	}
	for _, bad := range []string{"libz.so.1", "libloop.so", "../lib64/ld-linux-x86-64.so.2", ""} {
		if _, err := u.Lib(bad); !errors.Is(err, ErrNoLib) {
			t.Errorf("Lib(%q) error = %v, want ErrNoLib", bad, err)
		}
	}

	files, err := u.Files()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]File{}
	for _, f := range files {
		got[f.Path] = f
	}
	if f := got["lib64/ld-linux-x86-64.so.2"]; f.Mode&fs.ModeSymlink == 0 || string(f.Data) != "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" {
		t.Errorf("loader link = %+v, want a link to /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", f)
	}
	if f := got["lib/x86_64-linux-gnu/libc.so.6"]; f.Src != filepath.Join(root, "lib/x86_64-linux-gnu/libc.so.6") || f.Mode != 0o644 {
		t.Errorf("libc = %+v, want its host file with mode 0644", f)
	}
	if _, ok := got["usr/share/doc/libc6/copyright"]; ok {
		t.Error("Files holds documentation")
	}
	if len(got) != 6 {
		t.Errorf("Files = %d entries, want 6: %+v", len(got), files)
	}
}

// TestFetchUserland fetches Debian's real userland for each architecture:
// the libraries are there, built for the architecture, and a second call
// returns the cached tree.
func TestFetchUserland(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads Debian packages")
	}
	tests := []struct {
		arch    Arch
		machine elf.Machine
		loader  string
	}{
		{ARM64, elf.EM_AARCH64, "lib/ld-linux-aarch64.so.1"},
		{ARMHF, elf.EM_ARM, "lib/ld-linux-armhf.so.3"},
		{AMD64, elf.EM_X86_64, "lib64/ld-linux-x86-64.so.2"},
	}
	for _, tt := range tests {
		t.Run(string(tt.arch), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			u, err := FetchUserland(ctx, tt.arch, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range UserlandPackages {
				if u.Packages[p] == "" {
					t.Errorf("no version for %s: %v", p, u.Packages)
				}
			}
			for _, so := range []string{"libc.so.6", "libcrypto.so.3", "libssl.so.3", "libgcc_s.so.1"} {
				p, err := u.Lib(so)
				if err != nil {
					t.Fatal(err)
				}
				f, err := elf.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				if f.Machine != tt.machine {
					t.Errorf("%s is %v, want %v", so, f.Machine, tt.machine)
				}
				f.Close()
			}
			files, err := u.Files()
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, f := range files {
				found = found || f.Path == tt.loader
			}
			if !found {
				t.Errorf("Files lacks the loader %s", tt.loader)
			}
			again, err := FetchUserland(ctx, tt.arch, t.Logf)
			if err != nil || again.Root != u.Root {
				t.Errorf("second FetchUserland = %+v, %v; want root %s", again, err, u.Root)
			}
		})
	}
}
