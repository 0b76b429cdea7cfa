package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/tuf/repo"
)

// bootenv set used to write whatever it was given: names with control
// characters, values with newlines (a second variable smuggled into
// fw_printenv's text form), and graft's own boot variables with values
// that stop every later boot-state edit. Now each is refused with one
// line, exit 1, and the environment is left as it was.
func TestBootenvSetValidates(t *testing.T) {
	r := agenttest.NewRepo(t, repo.Options{})
	dev := agenttest.NewDevice(t, r, "env-2", agenttest.DeviceOptions{})
	fw := filepath.Join(dev.Dir, "fw_env.config")
	before, err := dev.Board.Env.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		assign string
		config bool // --config (the board's slots known) rather than --fw-env-config
	}{
		{"control character in a name", "bad\x01name=1", false},
		{"tab in a name", "bad\tname=1", false},
		{"newline in a value", "bootcmd=run a\nBOOT_ORDER=B", false},
		{"carriage return in a value", "x=a\rb", false},
		{"BOOT_ORDER with an unknown slot", "BOOT_ORDER=A Z", true},
		{"BOOT_ORDER with a slot twice", "BOOT_ORDER=A A", false},
		{"BOOT_ORDER with a bad name", "BOOT_ORDER=A $(reset)", false},
		{"BOOT_ORDER with double spaces", "BOOT_ORDER=A  B", false},
		{"counter not a number", "BOOT_A_LEFT=zz", false},
		{"counter out of range", "BOOT_B_LEFT=10", false},
		{"counter of an unknown slot", "BOOT_C_LEFT=1", true},
		{"sequence floor not a number", "GRAFT_SEQ_FLOOR=-1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"bootenv", "set", tt.assign, "--fw-env-config", fw}
			if tt.config {
				args = []string{"bootenv", "set", tt.assign, "--config", dev.Config}
			}
			code, _, e := run(t, args...)
			if code != 1 || strings.Count(strings.TrimSpace(e), "\n") != 0 || e == "" {
				t.Fatalf("exit %d, stderr %q: want exit 1 and one line", code, e)
			}
			after, err := dev.Board.Env.Load()
			if err != nil {
				t.Fatal(err)
			}
			if len(after) != len(before) {
				t.Fatalf("environment changed: %v, was %v", after, before)
			}
			for k, v := range before {
				if after[k] != v {
					t.Fatalf("environment changed: %s=%q, was %q", k, after[k], v)
				}
			}
		})
	}
	// Valid values still go through, graft's and others'.
	if code, _, e := run(t, "bootenv", "set", "BOOT_ORDER=B A", "BOOT_B_LEFT=2", "GRAFT_SEQ_FLOOR=12", "bootdelay=3", "--config", dev.Config); code != 0 {
		t.Fatalf("valid set: exit %d %s", code, e)
	}
}
