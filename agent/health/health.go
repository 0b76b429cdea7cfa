package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrFailed wraps the failure of any check.
var ErrFailed = errors.New("health check failed")

// ErrUnknownCheck is returned by Build for a check name it does not know.
var ErrUnknownCheck = errors.New("unknown health check")

// Check is one named probe.
type Check struct {
	Name string
	Run  func(ctx context.Context, slot string) error
}

// Checker runs checks in order under one deadline.
type Checker struct {
	Checks  []Check
	Timeout time.Duration // 0 means no deadline beyond ctx
}

// Check runs every check against the booted slot; the first failure ends
// the run with an error that names the check.
func (c Checker) Check(ctx context.Context, slot string) error {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	for _, ch := range c.Checks {
		if err := ch.Run(ctx, slot); err != nil {
			if errors.Is(err, context.DeadlineExceeded) && c.Timeout > 0 {
				return fmt.Errorf("%w: %s: not passed within %s: %w", ErrFailed, ch.Name, c.Timeout, err)
			}
			return fmt.Errorf("%w: %s: %w", ErrFailed, ch.Name, err)
		}
	}
	return nil
}

// Probes are what the built-in checks use.
type Probes struct {
	WaitConnected func(ctx context.Context) error // broker reachable
	RefreshTUF    func(ctx context.Context) error // repository reachable and metadata valid
	// SlotEnv returns extra environment for exec checks run in a slot,
	// such as GRAFT_SLOT_DEVICE. Optional.
	SlotEnv func(slot string) []string
}

// Build turns config names ("broker", "tuf", "exec:COMMAND") into checks.
func Build(names []string, p Probes) ([]Check, error) {
	var checks []Check
	for _, n := range names {
		switch {
		case n == "broker":
			checks = append(checks, Check{Name: n, Run: func(ctx context.Context, _ string) error { return p.WaitConnected(ctx) }})
		case n == "tuf":
			checks = append(checks, Check{Name: n, Run: func(ctx context.Context, _ string) error { return p.RefreshTUF(ctx) }})
		case strings.HasPrefix(n, "exec:") && len(n) > len("exec:"):
			checks = append(checks, Exec(n, strings.TrimPrefix(n, "exec:"), p.SlotEnv))
		default:
			return nil, fmt.Errorf("%w: %q", ErrUnknownCheck, n)
		}
	}
	return checks, nil
}

// Exec is a check that passes when `sh -c command` exits 0. The command
// sees GRAFT_SLOT (the booted slot) and whatever slotEnv adds.
func Exec(name, command string, slotEnv func(slot string) []string) Check {
	return Check{Name: name, Run: func(ctx context.Context, slot string) error {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
		cmd.Env = append(os.Environ(), "GRAFT_SLOT="+slot)
		if slotEnv != nil {
			cmd.Env = append(cmd.Env, slotEnv(slot)...)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			if msg := strings.TrimSpace(string(out)); msg != "" {
				return fmt.Errorf("%w: %s", err, lastLine(msg))
			}
			return err
		}
		return nil
	}}
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
