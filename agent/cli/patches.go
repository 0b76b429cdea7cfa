package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/klp"
	"github.com/graft-dev/graft/agent/userpatch"
)

// patchesView is what `patches` shows: the kernel livepatches (sysfs,
// with the component graft loaded each for) and the userspace ones.
type patchesView struct {
	Kernel    []kernelView `json:"kernel"`
	Userspace []patchView  `json:"userspace"`
}

type kernelView struct {
	Name       string   `json:"name"`
	Enabled    bool     `json:"enabled"`
	Transition bool     `json:"transition"`
	Component  string   `json:"component,omitempty"` // empty: not loaded by graft
	Params     []string `json:"params,omitempty"`    // module parameters it was loaded with
}

// patchView is one active userspace live patch as `patches` shows it.
type patchView struct {
	Name    string     `json:"name"`
	Soname  string     `json:"soname,omitempty"`
	BuildID string     `json:"build_id"`
	Procs   []procView `json:"processes"`
}

type procView struct {
	PID     int           `json:"pid"`
	Comm    string        `json:"comm"`
	Carries bool          `json:"carries"` // still running with the trampolines in place
	Sites   int           `json:"functions"`
	Stop    time.Duration `json:"stop_ns"`
}

func cmdPatches(_ context.Context, e env, args []string) error {
	fs := flags(e, "patches", "[--config FILE] [--json]")
	cfgPath := fs.String("config", defaultConfig, "agent config `file`")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	act, err := userpatch.LoadState(cfg.DataDir)
	if err != nil {
		return err
	}
	kern, err := klp.NewApplier(daemon.KLPDir(cfg.DataDir), &klp.System{}, 0, nil).List()
	if err != nil {
		return err
	}
	out := patchesView{Kernel: []kernelView{}}
	for _, k := range kern {
		out.Kernel = append(out.Kernel, kernelView{Name: k.Name, Enabled: k.Enabled, Transition: k.Transition, Component: k.Component, Params: k.Params})
	}
	views := make([]patchView, 0, len(act))
	for _, a := range act {
		v := patchView{Name: a.Name, Soname: a.Soname, BuildID: a.BuildID, Procs: []procView{}}
		for _, p := range a.Procs {
			v.Procs = append(v.Procs, procView{PID: p.PID, Comm: p.Comm, Carries: userpatch.Carries(p), Sites: len(p.Sites), Stop: p.Stop})
		}
		views = append(views, v)
	}
	out.Userspace = views
	if *asJSON {
		return printJSON(e.stdout, out)
	}
	for _, k := range out.Kernel {
		state := "enabled"
		switch {
		case k.Transition:
			state = "in transition"
		case !k.Enabled:
			state = "disabled"
		}
		by := "component " + k.Component
		if k.Component == "" {
			by = "not loaded by graft"
		}
		params := ""
		if len(k.Params) > 0 {
			params = "  params " + strings.Join(k.Params, " ")
		}
		fmt.Fprintf(e.stdout, "kernel %s  %s  (%s)%s\n", k.Name, state, by, params)
	}
	if len(out.Kernel) == 0 {
		fmt.Fprintln(e.stdout, "no kernel live patches loaded")
	}
	if len(views) == 0 {
		fmt.Fprintln(e.stdout, "no userspace live patches active")
		return nil
	}
	for _, v := range views {
		fmt.Fprintf(e.stdout, "%s  %s build %s  %d processes\n", v.Name, v.Soname, v.BuildID, len(v.Procs))
		for _, p := range v.Procs {
			state := "patched"
			if !p.Carries {
				state = "gone"
			}
			fmt.Fprintf(e.stdout, "  pid %-7d %-16s %d functions  %s  (stopped %v)\n", p.PID, p.Comm, p.Sites, state, p.Stop)
		}
	}
	return nil
}

func cmdRevert(ctx context.Context, e env, args []string) error {
	fs := flags(e, "revert", "PATCH [--config FILE] [--json] [--timeout D]")
	cfgPath := fs.String("config", defaultConfig, "agent config `file`")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the daemon")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want one patch name", errUsage)
	}
	name := fs.Arg(0)
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	var res []userpatch.ProcResult
	// With the daemon running, it reverts (one tracer per process);
	// otherwise this command does it itself, holding the state lock.
	d, err := daemon.Open(cfg, logger(e.stderr, cfg.LogLevel), true)
	switch {
	case errors.Is(err, daemon.ErrLocked):
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		res, err = userpatch.RequestRevert(rctx, cfg.DataDir, name)
	case err != nil:
		return err
	default:
		defer d.Close()
		var ap *userpatch.Applier
		if ap, err = userpatch.NewApplier(cfg.DataDir, logger(e.stderr, cfg.LogLevel)); err != nil {
			return err
		}
		defer ap.Close()
		res, err = ap.Manager().Remove(ctx, name)
	}
	if *asJSON && res != nil {
		if perr := printJSON(e.stdout, res); perr != nil {
			return perr
		}
	} else {
		for _, r := range res {
			fmt.Fprintf(e.stdout, "pid %-7d %-16s %s %s\n", r.PID, r.Comm, r.Result, r.Reason)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "%s reverted in %d processes\n", name, len(res))
	return nil
}
