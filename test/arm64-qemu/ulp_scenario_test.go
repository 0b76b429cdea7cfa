package rig

import (
	"context"
	"io/fs"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// TestUserspaceLivePatchGuests runs agent/userpatch's own tests — apply
// and revert on the test library, on Debian's glibc atoi and OpenSSL's
// OpenSSL_version in live processes, the refused bundles, thread churn,
// processes dying mid-apply, the manager, and the apply/revert stress —
// inside emulated arm64 and armv7 guests: Debian kernels, Debian's arm64
// and armhf libc6/libssl3, programs built with the cross compilers and
// bundles built by graft-fleet's patch builder against the guest's exact
// libraries. ptrace does not work under qemu-user, hence system guests.
func TestUserspaceLivePatchGuests(t *testing.T) {
	for _, arch := range []Arch{ARM64, ARMHF} {
		t.Run(string(arch), func(t *testing.T) {
			m, err := runMachineFor(arch)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := exec.LookPath(m.qemu); err != nil {
				t.Skipf("%s not installed", m.qemu)
			}
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
			defer cancel()
			dir := t.TempDir()
			logf := func(f string, a ...any) { t.Logf(f, a...) }
			ul, err := FetchUserland(ctx, arch, logf)
			if err != nil {
				t.Fatal(err)
			}
			libc, err := ul.Lib("libc.so.6")
			if err != nil {
				t.Fatal(err)
			}
			crypto, err := ul.Lib("libcrypto.so.3")
			if err != nil {
				t.Fatal(err)
			}
			goarch, _ := arch.GOARCH()
			fixDir := filepath.Join(dir, "ulp")
			if _, err := userpatchtest.Build(ctx, goarch, fixDir, userpatchtest.Libs{Libc: libc, Libcrypto: crypto}); err != nil {
				t.Fatal(err)
			}
			files, err := ul.Files()
			if err != nil {
				t.Fatal(err)
			}
			err = filepath.WalkDir(fixDir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(fixDir, p)
				switch {
				case d.IsDir() && (rel == "obj" || rel == "other-arch" || filepath.Base(rel) == "obj"):
					return filepath.SkipDir // build leftovers
				case !d.IsDir():
					files = append(files, File{Path: "ulp/" + filepath.ToSlash(rel), Src: p})
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := RunGoTest(ctx, dir, GoTestSpec{
				Pkg: "github.com/graft-dev/graft/agent/userpatch",
				RunSpec: RunSpec{
					Arch:    arch,
					Files:   files,
					Env:     []string{"GRAFT_ULP_FIXTURES=/ulp", "GRAFT_ULP_CYCLES=200", "TMPDIR=/tmp"},
					Timeout: 10 * time.Minute,
					Logf:    logf,
				},
			})
			if res != nil {
				for _, l := range res.TestLines() {
					t.Log(l)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s guest: userpatch tests passed in %v", arch, res.Elapsed)
		})
	}
}
