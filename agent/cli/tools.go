package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/graft-dev/graft/agent/config"

	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/tuf"
)

func cmdBootenv(_ context.Context, e env, args []string) error {
	const use = "get NAME... | set NAME=VALUE... (--fw-env-config FILE | --grubenv FILE | --config FILE)"
	if len(args) == 0 || (args[0] != "get" && args[0] != "set") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(e.stdout, "Usage: graft-agent bootenv %s\n", use)
			return nil
		}
		return fmt.Errorf("%w: graft-agent bootenv %s", errUsage, use)
	}
	op := args[0]
	fs := flags(e, "bootenv "+op, use)
	fwcfg := fs.String("fw-env-config", "", "U-Boot environment described by an fw_env.config `file`")
	grubenv := fs.String("grubenv", "", "GRUB environment block `file`")
	cfgPath := fs.String("config", "", "use the bootloader of the board in this agent config `file`")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: bootenv %s needs at least one variable", errUsage, op)
	}
	var store bootenv.Store
	var slots []string // the board's slots, when known: BOOT_ORDER is checked against them
	switch {
	case *fwcfg != "" && *grubenv == "" && *cfgPath == "":
		u, err := bootenv.OpenUBoot(*fwcfg)
		if err != nil {
			return err
		}
		store = u
	case *grubenv != "" && *fwcfg == "" && *cfgPath == "":
		store = bootenv.OpenGrub(*grubenv)
	case *cfgPath != "" && *fwcfg == "" && *grubenv == "":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		b, err := daemon.LoadBoard(cfg)
		if err != nil {
			return err
		}
		slots = b.SlotNames()
		if store, err = daemon.OpenEnv(b); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: give exactly one of --fw-env-config, --grubenv, --config", errUsage)
	}
	if op == "get" {
		env, err := store.Load()
		if err != nil {
			return err
		}
		for _, name := range fs.Args() {
			v, ok := env[name]
			if !ok {
				return fmt.Errorf("%s: not set", name)
			}
			fmt.Fprintf(e.stdout, "%s=%s\n", name, v)
		}
		return nil
	}
	type assign struct{ name, value string }
	var set []assign
	for _, a := range fs.Args() {
		name, value, ok := splitAssign(a)
		if !ok {
			return fmt.Errorf("%w: %q is not NAME=VALUE", errUsage, a)
		}
		if err := bootenv.CheckAssign(name, value); err != nil {
			return err
		}
		if err := slot.CheckVar(name, value, slots); err != nil {
			return err
		}
		set = append(set, assign{name, value})
	}
	return bootenv.Update(store, func(env bootenv.Env) error {
		for _, a := range set {
			if a.value == "" {
				delete(env, a.name)
			} else {
				env[a.name] = a.value
			}
		}
		return nil
	})
}

// tufUsage is each tuf subcommand's own usage line.
var tufUsage = map[string]string{
	"init":     "ROOT_FILE --metadata-dir DIR",
	"refresh":  "--metadata-dir DIR --metadata-url URL [--time RFC3339] [--json]",
	"download": "TARGET... --metadata-dir DIR --metadata-url URL --targets-url URL [--target-dir DIR] [--time RFC3339]",
}

func cmdTUF(ctx context.Context, e env, args []string) error {
	const use = "init ROOT_FILE | refresh | download TARGET...  (graft-agent tuf OP --help for each)"
	if len(args) == 0 || tufUsage[args[0]] == "" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(e.stdout, "Usage: graft-agent tuf %s\n", use)
			return nil
		}
		return fmt.Errorf("%w: graft-agent tuf %s", errUsage, use)
	}
	op := args[0]
	fs := flags(e, "tuf "+op, tufUsage[op])
	cfg := tuf.Config{MinTime: daemon.BuildTime()}
	fs.StringVar(&cfg.MetadataDir, "metadata-dir", "", "trusted metadata `dir` (root.json and the cache)")
	var at, targetDir string
	var asJSON bool
	if op != "init" {
		fs.StringVar(&cfg.MetadataURL, "metadata-url", "", "repository metadata `URL` or directory")
		fs.StringVar(&at, "time", "", "check expiry as of this `RFC3339` time instead of the clock and the time floor (the floor is not raised)")
	}
	if op == "refresh" {
		fs.BoolVar(&asJSON, "json", false, "print the trusted versions and times as JSON")
	}
	if op == "download" {
		fs.StringVar(&cfg.TargetsURL, "targets-url", "", "repository targets `URL` or directory")
		fs.StringVar(&targetDir, "target-dir", ".", "where downloaded targets go")
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cfg.TargetDir = targetDir
	if cfg.TargetDir == "" {
		cfg.TargetDir = cfg.MetadataDir // refresh: never written
	}
	if cfg.MetadataDir == "" {
		return fmt.Errorf("%w: --metadata-dir is required", errUsage)
	}
	if at != "" {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			return fmt.Errorf("%w: --time: %v", errUsage, err)
		}
		cfg.At = t
	}
	switch op {
	case "init":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: tuf init takes one ROOT_FILE", errUsage)
		}
		root, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		if err := tuf.Init(cfg.MetadataDir, root); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "trusted root stored in %s\n", cfg.MetadataDir)
		return nil
	case "refresh":
		if fs.NArg() != 0 {
			return fmt.Errorf("%w: tuf refresh takes no arguments", errUsage)
		}
		c, err := tuf.New(cfg)
		if err != nil {
			return err
		}
		if err := c.Refresh(ctx); err != nil {
			return err
		}
		tc := c.Time()
		if asJSON {
			return json.NewEncoder(e.stdout).Encode(map[string]any{
				"valid": true, "clock": tc.Clock, "floor": tc.Floor,
				"reference": tc.Reference(), "clock_behind": tc.Behind(),
			})
		}
		if tc.Behind() {
			fmt.Fprintf(e.stderr, "warning: clock %s is behind the trusted time floor %s; expiry was checked as of the floor\n",
				tc.Clock.Format(time.RFC3339), tc.Floor.Format(time.RFC3339))
		}
		fmt.Fprintf(e.stdout, "metadata is valid and current as of %s\n", tc.Reference().Format(time.RFC3339))
		return nil
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: tuf download needs a TARGET", errUsage)
	}
	c, err := tuf.New(cfg)
	if err != nil {
		return err
	}
	if err := c.Refresh(ctx); err != nil {
		return err
	}
	for _, name := range fs.Args() {
		p, err := c.Download(ctx, name, tuf.DownloadOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, p)
	}
	return nil
}
