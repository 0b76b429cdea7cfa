package rig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
