package klp

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	rig "github.com/graft-dev/graft/test/arm64-qemu"
)

// The test modules, built from testdata/<name>/ (see each source).
const (
	modA         = "graft_klp_a"     // live patch of cmdline_proc_show, marker A
	modB         = "graft_klp_b"     // cumulative (.replace = true), marker B
	modStall     = "graft_stall"     // plain module: a kthread parked in graft_stall_sleep
	modStallLive = "graft_klp_stall" // live patch of graft_stall_sleep: never completes
)

var testModules = []string{modA, modB, modStall, modStallLive}

const (
	markerA = "graft-klp-a: /proc/cmdline is live patched"
	markerB = "graft-klp-b: /proc/cmdline is live patched (cumulative)"
)

// buildTestModules builds the test modules for Debian's current amd64
// kernel against its linux-headers (both cached by the rig) and returns
// the kernel and the .ko paths by module name.
func buildTestModules(t *testing.T) (*rig.Kernel, map[string]string) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("the test modules are built natively for amd64")
	}
	for _, tool := range []string{"make", "gcc-12", "dpkg-deb", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	k, err := rig.FetchKernel(t.Context(), rig.AMD64, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	kos := map[string]string{}
	for _, m := range testModules {
		ko, err := rig.BuildModule(t.Context(), k, filepath.Join("testdata", m))
		if err != nil {
			t.Fatal(err)
		}
		kos[m] = ko
	}
	return k, kos
}

// TestParseBuiltModules reads the real modules built by kbuild.
func TestParseBuiltModules(t *testing.T) {
	k, kos := buildTestModules(t)
	for _, m := range testModules {
		t.Run(m, func(t *testing.T) {
			b, err := os.ReadFile(kos[m])
			if err != nil {
				t.Fatal(err)
			}
			inf, err := ParseModule(b)
			if err != nil {
				t.Fatal(err)
			}
			wantLive := m != modStall
			if inf.Name != m || inf.Release != k.Release || inf.Livepatch != wantLive || inf.License != "GPL" ||
				!strings.HasPrefix(inf.Vermagic, k.Release+" SMP ") {
				t.Errorf("ParseModule = %+v; want name %s, release %s, livepatch %v, GPL", inf, m, k.Release, wantLive)
			}
			s := fakeSys(t, true, k.Release, "")
			err = s.Check(inf, k.Release)
			if wantLive && err != nil {
				t.Errorf("Check = %v, want nil", err)
			}
			if !wantLive && !errors.Is(err, ErrNotLivepatch) {
				t.Errorf("Check = %v, want ErrNotLivepatch", err)
			}
			// The same module with its vermagic rewritten for another
			// release of the same length.
			other := otherRelease(t, b, k.Release)
			inf2, err := ParseModule(other)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Check(inf2, ""); !errors.Is(err, ErrWrongKernel) && wantLive {
				t.Errorf("Check(other release) = %v, want ErrWrongKernel", err)
			}
		})
	}
}

// otherRelease returns a copy of module with release's "-NN-" ABI number
// in its vermagic replaced by another of the same length.
func otherRelease(t *testing.T, module []byte, release string) []byte {
	t.Helper()
	other := []byte(release)
	i := bytes.IndexByte(other, '-')
	if i < 0 || i+1 >= len(other) {
		t.Fatalf("release %q has no ABI number", release)
	}
	if other[i+1] == '9' {
		other[i+1] = '8'
	} else {
		other[i+1]++
	}
	out := bytes.Replace(module, []byte("vermagic="+release), append([]byte("vermagic="), other...), 1)
	if bytes.Equal(out, module) {
		t.Fatal("module has no vermagic to rewrite")
	}
	return out
}

// TestKLPInQEMU runs TestGuest (guest_test.go) inside Debian's amd64
// kernel under QEMU, with the test modules as files, and asserts that
// every step passed.
func TestKLPInQEMU(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	k, kos := buildTestModules(t)
	dir := t.TempDir()
	files := []rig.File{}
	for _, m := range testModules {
		files = append(files, rig.File{Path: "/klp/" + m + ".ko", Src: kos[m]})
	}
	res, err := rig.RunGoTest(t.Context(), dir, rig.GoTestSpec{
		Pkg: ".",
		Run: "^TestGuest$",
		RunSpec: rig.RunSpec{
			Arch:    rig.AMD64,
			Kernel:  k,
			Files:   files,
			Env:     []string{"GRAFT_KLP_GUEST=1", "GRAFT_KLP_DIR=/klp"},
			Timeout: 4 * time.Minute,
		},
	})
	if res != nil {
		for _, l := range res.TestLines() {
			t.Log(l)
		}
		t.Logf("guest run took %v", res.Elapsed.Round(time.Millisecond))
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range append([]string{"--- PASS: TestGuest "}, guestSteps...) {
		if want != "--- PASS: TestGuest " {
			want = "--- PASS: TestGuest/" + want + " "
		}
		if !strings.Contains(res.Output, want) {
			t.Errorf("guest output lacks %q:\n%s", want, res.Output)
		}
	}
}
