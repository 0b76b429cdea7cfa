package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/console"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/boards"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed or refused
	exitUsage = 2 // bad command line
)

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage")

type env struct {
	stdout, stderr io.Writer
}

type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

func commands() []command {
	return []command{
		{"init", "--root ROOT_FILE [--config FILE] [--json]", "first-time setup: store the trusted TUF root in data_dir/tuf and create the board's missing files (the sim board's slots, environment, command line)", cmdInit},
		{"run", "--config FILE", "run the agent daemon", cmdRun},
		{"status", "[--config FILE] [--json]", "what is installed, booted and in flight", cmdStatus},
		{"install", "--offline DIR [--release NAME] [--config FILE] [--reboot]", "install a release from a TUF repository on a directory or USB stick", cmdInstall},
		{"mark-good", "[--config FILE]", "mark the booted slot good (commits an update waiting for its health checks)", cmdMarkGood},
		{"slots", "[--config FILE] [--json]", "the board's slots and the bootloader's view of them", cmdSlots},
		{"bootenv", "get NAME... | set NAME=VALUE... (--fw-env-config FILE | --grubenv FILE | --config FILE)", "read or change the bootloader environment", cmdBootenv},
		{"tuf", "init ROOT_FILE | refresh | download TARGET... [flags]", "the TUF client on its own, for debugging trust", cmdTUF},
		{"patches", "[--config FILE] [--json]", "the userspace live patches applied and the processes carrying them", cmdPatches},
		{"revert", "PATCH [--config FILE] [--json]", "revert a userspace live patch in every process (through the daemon when it runs)", cmdRevert},
		{"provision", provisionArgs, "provisioning mode: answer a graft-flash station on the serial console (docs/flash.md)", cmdProvision},
		{"version", "", "print the agent version", cmdVersion},
	}
}

const defaultConfig = "/etc/graft/agent.conf"

// Run runs the graft-agent command line and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := env{stdout: stdout, stderr: stderr}
	if len(args) == 0 && os.Getpid() == 1 {
		args = initArgs() // the provisioning initramfs's /init
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, daemon.ErrExitForReboot):
			return boards.ExitReboot
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "graft-agent %s: %v\n", c.name, err)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "graft-agent %s: %v\n", c.name, err)
			return exitFail
		}
	}
	fmt.Fprintf(stderr, "graft-agent: unknown command %q (see graft-agent --help)\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "graft-agent %s — live patches and A/B updates for this device\n\nUsage:\n", daemon.Version())
	for _, c := range commands() {
		fmt.Fprintf(w, "  graft-agent %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nThe config file defaults to %s. Exit status: 0 ok, 1 failed or refused, 2 bad usage.\n", defaultConfig)
}

// flags returns a FlagSet that reports errors as usage errors.
func flags(e env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: graft-agent %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags wherever they stand among the arguments
// (`tuf init ROOT --metadata-dir DIR` as well as the other way round);
// after "--" everything is an argument. fs.Args() then holds the
// positional arguments in order.
func parse(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

func logger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdVersion(_ context.Context, e env, args []string) error {
	fs := flags(e, "version", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, daemon.Version())
	return nil
}

func cmdRun(ctx context.Context, e env, args []string) error {
	fs := flags(e, "run", "--config FILE")
	cfgPath := fs.String("config", defaultConfig, "agent config `file`")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := logger(e.stderr, cfg.LogLevel)
	var hooks daemon.Hooks
	if cfg.Console.TTY != "" {
		ring := console.NewRing(512)
		log = slog.New(ring.Handler(log.Handler()))
		actions := make(chan daemon.Action)
		hooks.Actions = actions
		stop, err := startConsole(ctx, *cfgPath, cfg, ring, log, actions)
		if err != nil {
			return err
		}
		defer stop()
	}
	return daemon.Run(ctx, cfg, log, hooks)
}

func cmdInit(_ context.Context, e env, args []string) error {
	fs := flags(e, "init", "--root ROOT_FILE [--config FILE] [--json]")
	cfgPath := fs.String("config", defaultConfig, "agent config `file`")
	rootPath := fs.String("root", "", "the fleet's TUF root.json (`file`), as graft-fleet repo init wrote it")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rootPath == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: graft-agent init --root ROOT_FILE [--config FILE]", errUsage)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	root, err := os.ReadFile(*rootPath)
	if err != nil {
		return err
	}
	done, err := daemon.Provision(cfg, root)
	if *asJSON {
		if done == nil {
			done = []string{}
		}
		if perr := printJSON(e.stdout, map[string]any{"data_dir": cfg.DataDir, "created": done}); perr != nil && err == nil {
			err = perr
		}
		return err
	}
	for _, d := range done {
		fmt.Fprintf(e.stdout, "created %s\n", d)
	}
	if err == nil {
		fmt.Fprintf(e.stdout, "%s is ready: graft-agent run --config %s\n", cfg.DataDir, *cfgPath)
	}
	return err
}

func splitAssign(s string) (string, string, bool) {
	name, value, ok := strings.Cut(s, "=")
	return name, value, ok && name != ""
}
