package cli_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/cli"
)

// run runs graft-fleet in-process and returns its exit code and output.
func run(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cli.Run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		listing bool // prints the command list instead of one error line
	}{
		{name: "no command", args: nil, listing: true},
		{name: "unknown command", args: []string{"deploy"}},
		{name: "unknown subcommand", args: []string{"repo", "destroy"}},
		{name: "group without subcommand", args: []string{"repo"}, listing: true},
		{name: "unknown flag", args: []string{"repo", "init", "--dir", "x", "--colour"}},
		{name: "bad flag value", args: []string{"repo", "init", "--dir", "x", "--threshold", "root=zero"}},
		{name: "unknown role", args: []string{"repo", "init", "--dir", "x", "--keys", "admin=2"}},
		{name: "missing --dir", args: []string{"repo", "publish"}},
		{name: "simulate missing --repo", args: []string{"simulate", "--devices", "2"}},
		{name: "simulate no devices", args: []string{"simulate", "--repo", "r", "--devices", "0"}},
		{name: "rollout show wants an ID", args: []string{"rollout", "show"}},
		{name: "history wants a device", args: []string{"history"}},
		{name: "add-target wants two args", args: []string{"repo", "add-target", "--dir", "x", "only-name"}},
		{name: "release add missing --image", args: []string{"release", "add", "--repo", "r", "--name", "v2",
			"--version", "2.0.0", "--sequence", "2", "--board", "sim"}},
		{name: "release add missing --board", args: []string{"release", "add", "--repo", "r", "--name", "v2",
			"--version", "2.0.0", "--sequence", "2", "--image", "img"}},
		{name: "release add bad compression", args: []string{"release", "add", "--repo", "r", "--name", "v2",
			"--version", "2.0.0", "--sequence", "2", "--board", "sim", "--image", "img", "--compress", "xz"}},
		{name: "release add bad name", args: []string{"release", "add", "--repo", "r", "--name", "../v2",
			"--version", "2.0.0", "--sequence", "2", "--board", "sim", "--image", "img"}},
		{name: "notify without target", args: []string{"notify", "v2"}},
		{name: "notify device and group", args: []string{"notify", "--device", "d1", "--group", "g", "v2"}},
		{name: "notify wildcard device", args: []string{"notify", "--device", "+", "v2"}},
		{name: "notify without release", args: []string{"notify", "--device", "d1"}},
		{name: "status extra argument", args: []string{"status", "d1"}},
		{name: "status bad --wait", args: []string{"status", "--wait", "soon"}},
		{name: "serve missing --repo", args: []string{"serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t.Context(), tt.args...)
			if code != cli.ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, cli.ExitUsage, stderr)
			}
			if !tt.listing {
				if n := strings.Count(stderr, "\n"); n != 1 || !strings.HasPrefix(stderr, "graft-fleet") {
					t.Fatalf("stderr is %d lines, want one line starting graft-fleet: %q", n, stderr)
				}
			}
			if stdout != "" {
				t.Fatalf("stdout not empty: %q", stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string // substrings of stdout
	}{
		{args: []string{"--help"}, want: []string{"Usage: graft-fleet", "release add", "serve", "status"}},
		{args: []string{"help"}, want: []string{"repo init"}},
		{args: []string{"repo", "--help"}, want: []string{"repo add-target", "repo timestamp"}},
		{args: []string{"release", "add", "--help"}, want: []string{"-sequence", "-compress", "-board"}},
		{args: []string{"notify", "-h"}, want: []string{"-device", "-group", "-manifest"}},
		{args: []string{"status", "--help"}, want: []string{"-follow", "-json", "-wait"}},
		{args: []string{"serve", "--help"}, want: []string{"-mqtt", "-http", "-repo"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t.Context(), tt.args...)
			if code != cli.ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Fatalf("help lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
}
