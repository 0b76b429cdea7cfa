package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// ErrUsage marks command-line mistakes: unknown commands or flags,
// missing or malformed arguments. Run exits ExitUsage for them.
var ErrUsage = errors.New("usage")

// usagef returns an error wrapping ErrUsage.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// env is what every command gets: output streams, a logger, a clock.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	now            func() time.Time
}

// command is one leaf subcommand.
type command struct {
	name    string // full name, e.g. "repo init"
	args    string // synopsis after the flags, e.g. "NAME FILE"
	summary string
	// setup declares the flags and returns the function that runs the
	// command with the positional arguments once flags are parsed.
	setup func(fs *flag.FlagSet, e *env) func(ctx context.Context, args []string) error
}

func commands() []command {
	return append([]command{
		repoInitCmd(), repoAddTargetCmd(), repoPublishCmd(), repoTimestampCmd(),
		// "repo root sign" and "repo root merge" before "repo root": the
		// first command whose words start the arguments runs
		repoRootSignCmd(), repoRootMergeCmd(), repoRootCmd(),
		repoKeysCmd(), repoRotateCmd(), repoDelegateCmd(),
		releaseAddCmd(), releaseListCmd(), releaseShowCmd(),
		notifyCmd(),
		statusCmd(),
		devicesCmd(), historyCmd(),
		serveCmd(), simulateCmd(), ingestCmd(),
		caInitCmd(), caIssueCmd(), caRevokeCmd(),
		brokerConfigMosquittoCmd(),
		patchBuildCmd(), patchShowCmd(),
	}, rolloutCmds()...)
}

// Run runs graft-fleet with args (without the program name) and returns
// the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{
		stdout: stdout,
		stderr: stderr,
		log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		now:    time.Now,
	}
	return run(ctx, e, args)
}

func run(ctx context.Context, e *env, args []string) int {
	cmds := commands()
	if len(args) == 0 {
		printUsage(e.stderr, cmds)
		return ExitUsage
	}
	if isHelp(args[0]) || args[0] == "help" {
		printUsage(e.stdout, cmds)
		return ExitOK
	}
	// Find the longest command name the arguments start with.
	var (
		cmd  *command
		rest []string
	)
	for i := range cmds {
		words := strings.Fields(cmds[i].name)
		if len(args) >= len(words) && slicesEqual(args[:len(words)], words) {
			cmd, rest = &cmds[i], args[len(words):]
			break
		}
	}
	if cmd == nil {
		// "graft-fleet repo" or "graft-fleet repo --help": list the group.
		group := groupOf(cmds, args[0])
		if len(group) > 0 && (len(args) == 1 || isHelp(args[1])) {
			w, code := e.stderr, ExitUsage
			if len(args) > 1 {
				w, code = e.stdout, ExitOK
			}
			printUsage(w, group)
			return code
		}
		name := args[0]
		if len(group) > 0 {
			name += " " + args[1]
		}
		fmt.Fprintf(e.stderr, "graft-fleet: unknown command %q (see graft-fleet --help)\n", name)
		return ExitUsage
	}

	fs := flag.NewFlagSet("graft-fleet "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runFn := cmd.setup(fs, e)
	fs.Usage = func() {}
	pos, err := parseInterspersed(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(e.stdout, cmd, fs)
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "graft-fleet %s: %v (see --help)\n", cmd.name, err)
		return ExitUsage
	}
	if err := runFn(ctx, pos); err != nil {
		if errors.Is(err, ErrUsage) {
			fmt.Fprintf(e.stderr, "graft-fleet %s: %s (see --help)\n", cmd.name, oneLine(strings.TrimPrefix(err.Error(), "usage: ")))
			return ExitUsage
		}
		fmt.Fprintf(e.stderr, "graft-fleet %s: %s\n", cmd.name, oneLine(err.Error()))
		return ExitFailure
	}
	return ExitOK
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments ("notify REL --device d1"); "--" ends flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func isHelp(s string) bool { return s == "-h" || s == "-help" || s == "--help" }

func groupOf(cmds []command, word string) []command {
	var out []command
	for _, c := range cmds {
		if first, _, _ := strings.Cut(c.name, " "); first == word && strings.Contains(c.name, " ") {
			out = append(out, c)
		}
	}
	return out
}

func printUsage(w io.Writer, cmds []command) {
	fmt.Fprintln(w, "Usage: graft-fleet COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "graft-fleet publishes releases to a TUF repository, notifies devices over")
	fmt.Fprintln(w, "MQTT, shows their state, and serves a bench broker and repository.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-24s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'graft-fleet COMMAND --help' for a command's flags.")
	fmt.Fprintln(w, "Exit status: 0 success, 1 failure, 2 usage error.")
}

func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: graft-fleet %s [flags] %s\n\n%s\n\nFlags:\n", c.name, c.args, c.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// requireFlag returns a usage error when a required string flag is empty.
func requireFlag(name, value string) error {
	if value == "" {
		return usagef("--%s is required", name)
	}
	return nil
}

// wantArgs returns a usage error unless exactly n positional args are given.
func wantArgs(args []string, n int, synopsis string) error {
	if len(args) != n {
		return usagef("want %s, got %d argument(s)", synopsis, len(args))
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error {
	if s == "" {
		return errors.New("empty value")
	}
	*l = append(*l, s)
	return nil
}

// roleValues is a repeatable role=VALUE flag, parsed by parse.
type roleValues[T any] struct {
	m     map[string]T
	parse func(string) (T, error)
}

func newRoleInts() *roleValues[int] {
	return &roleValues[int]{m: map[string]int{}, parse: func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err == nil && n < 1 {
			err = errors.New("must be at least 1")
		}
		return n, err
	}}
}

func newRoleDurations() *roleValues[time.Duration] {
	return &roleValues[time.Duration]{m: map[string]time.Duration{}, parse: func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		return d, err
	}}
}

var roles = map[string]bool{"root": true, "targets": true, "snapshot": true, "timestamp": true}

func (r *roleValues[T]) String() string {
	if r == nil {
		return ""
	}
	var parts []string
	for k, v := range r.m {
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	return strings.Join(parts, ",")
}

func (r *roleValues[T]) Set(s string) error {
	role, val, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("%q is not role=value", s)
	}
	if !roles[role] {
		return fmt.Errorf("unknown role %q (root, targets, snapshot, timestamp)", role)
	}
	v, err := r.parse(val)
	if err != nil {
		return fmt.Errorf("%s: %w", role, err)
	}
	r.m[role] = v
	return nil
}
