package rig

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// klpGuestModules are agent/klp's test modules (agent/klp/testdata), as
// its TestGuest reads them from GRAFT_KLP_DIR.
var klpGuestModules = []string{"graft_klp_a", "graft_klp_b", "graft_stall", "graft_klp_stall"}

// klpGuestSteps are agent/klp TestGuest's subtests (its guestSteps): each
// must PASS.
var klpGuestSteps = []string{"bad_input", "kernel_refusal", "load_and_revert", "replace", "stall", "kernel_health"}

// TestKLPARM64 runs agent/klp's TestGuest — refusals before
// finit_module, a refusal by the kernel (bad module_layout CRC), apply
// and revert of graft_klp_a, its atomic replacement by graft_klp_b, a
// stalled transition reversed at its deadline, and a clean taint — in an
// arm64 guest booting the kernel BuildLivepatchKernel built
// (CONFIG_LIVEPATCH=y), with the modules cross-built against its tree.
// It is skipped until `make arm64-livepatch-kernel` has built that
// kernel: `make test` never builds one.
func TestKLPARM64(t *testing.T) {
	lk, err := CachedLivepatchKernel()
	if errors.Is(err, ErrNoLivepatchKernel) {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"qemu-system-aarch64", "make", "aarch64-linux-gnu-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	t.Logf("kernel %s (%s)", lk.Release, lk.Source)
	dir := t.TempDir()
	files := []File{}
	for _, m := range klpGuestModules {
		ko, err := lk.BuildModule(t.Context(), filepath.Join("..", "..", "agent", "klp", "testdata", m))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, File{Path: "/klp/" + m + ".ko", Src: ko})
	}
	res, err := RunGoTest(t.Context(), dir, GoTestSpec{
		Pkg: "../../agent/klp",
		Run: "^TestGuest$",
		RunSpec: RunSpec{
			Arch:    ARM64,
			Kernel:  lk.Kernel,
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
	wants := []string{"--- PASS: TestGuest "}
	for _, s := range klpGuestSteps {
		wants = append(wants, "--- PASS: TestGuest/"+s+" ")
	}
	for _, want := range wants {
		if !strings.Contains(res.Output, want) {
			t.Errorf("guest output lacks %q:\n%s", want, res.Output)
		}
	}
}
