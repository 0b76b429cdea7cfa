package rig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// BuildGoTest compiles the tests of package pkg (an import path or a
// directory) into a static test binary for arch, to run in a guest.
func BuildGoTest(ctx context.Context, arch Arch, pkg, out string) error {
	goarch, goarm := arch.GOARCH()
	if goarch == "" {
		return fmt.Errorf("%w: %q", ErrUnknownArch, string(arch))
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rig: go test -c %s for %s: %w: %s", pkg, arch, err, lastLines(string(b), 10))
	}
	return nil
}

// GoTestSpec is a Go package's tests run as an emulated guest's only job.
type GoTestSpec struct {
	RunSpec        // Arch, Kernel, Files, Env, Timeout, … (Argv is set by RunGoTest)
	Pkg     string // package (import path or directory) whose tests run
	Run     string // -test.run pattern; "" runs them all
}

// RunGoTest builds spec.Pkg's test binary for spec.Arch, runs it in a
// guest with -test.v, and returns the guest's output. An error wraps
// ErrGoTestFailed (with the output) unless the binary exited 0 and printed
// PASS; the result comes back either way once the guest ran.
func RunGoTest(ctx context.Context, dir string, spec GoTestSpec) (*RunResult, error) {
	bin := filepath.Join(dir, "pkg.test")
	if err := BuildGoTest(ctx, spec.Arch, spec.Pkg, bin); err != nil {
		return nil, err
	}
	rs := spec.RunSpec
	rs.Files = append(slices.Clone(rs.Files), File{Path: "/bin/pkg.test", Src: bin, Mode: 0o755})
	rs.Argv = []string{"/bin/pkg.test", "-test.v", "-test.count=1"}
	if spec.Run != "" {
		rs.Argv = append(rs.Argv, "-test.run", spec.Run)
	}
	res, err := RunGuest(ctx, filepath.Join(dir, "guest"), rs)
	if err != nil {
		return res, err
	}
	if res.ExitCode != 0 || !strings.Contains(res.Output, "\nPASS\n") {
		return res, fmt.Errorf("%w: %s in the %s guest exited %d:\n%s", ErrGoTestFailed, spec.Pkg, spec.Arch, res.ExitCode, res.Output)
	}
	return res, nil
}

// ErrGoTestFailed: the tests RunGoTest ran in a guest failed.
var ErrGoTestFailed = errors.New("rig: tests failed in the guest")

// TestLines returns the lines of a guest's output that a Go test printed
// about itself: its log lines (file.go:N:) and its verdicts (--- ...).
func (r *RunResult) TestLines() []string {
	var out []string
	for _, l := range strings.Split(r.Output, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "--- ") || strings.Contains(l, "_test.go:") {
			out = append(out, l)
		}
	}
	return out
}
