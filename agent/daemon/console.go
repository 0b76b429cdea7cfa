package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/transport"
)

// Action is a command that changes the device, asked for on the serial
// console by an unlocked operator. The daemon runs it between updates (so
// it never races the engine), reports it in the status history, and sends
// the outcome on Done.
type Action struct {
	Operator string
	Command  string // mark-good, rollback, revert, reboot, or one Fn runs
	Args     []string
	Out      io.Writer
	// Fn, when set, carries out the command itself (bootenv set through
	// the agent's own command line); the daemon still serializes and
	// reports it.
	Fn   func(ctx context.Context) error
	Done chan<- error
}

// ErrConsoleInstall: installing from a directory needs the agent's state
// lock, which the running daemon holds.
var ErrConsoleInstall = errors.New("install --offline is not available from a console inside the running agent: stop graft-agent, then run graft-agent install --offline DIR")

// act carries out a console action and reports it. It returns
// ErrExitForReboot when the action rebooted a board whose reboot is an
// exit.
func (d *Device) act(ctx context.Context, eng *engine.Engine, report func(transport.Status), a Action) error {
	err := d.doAct(ctx, eng, a)
	failed := err != nil && !errors.Is(err, ErrExitForReboot)
	outcome := "ok"
	if failed {
		outcome = "error: " + err.Error()
	}
	booted, _, _ := d.Machine.Booted()
	rec := d.Journal.Record()
	if a.Command != "rollback" || failed { // a rollback reports itself
		report(transport.Status{
			State: transport.StateIdle, Slot: booted, Installed: rec.Installed.Name, Sequence: rec.Installed.Sequence,
			Reason: fmt.Sprintf("console: %s ran %s: %s", a.Operator, strings.TrimSpace(a.Command+" "+strings.Join(a.Args, " ")), outcome),
		})
	}
	d.Logger.Info("console action", "operator", a.Operator, "command", a.Command, "args", a.Args, "outcome", outcome)
	return err
}

func (d *Device) doAct(ctx context.Context, eng *engine.Engine, a Action) error {
	if a.Fn != nil {
		return a.Fn(ctx)
	}
	switch a.Command {
	case "mark-good":
		s, err := eng.MarkGood(ctx)
		if err == nil {
			fmt.Fprintf(a.Out, "slot %s marked good\n", s)
		}
		return err
	case "rollback":
		s, err := eng.Rollback(ctx, a.Operator)
		if err == nil || errors.Is(err, ErrExitForReboot) {
			fmt.Fprintf(a.Out, "slot %s boots next; rebooting\n", s)
		}
		return err
	case "revert":
		if len(a.Args) != 1 {
			return fmt.Errorf("usage: revert PATCH")
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res, err := userpatch.RequestRevert(rctx, d.Config.DataDir, a.Args[0])
		for _, r := range res {
			fmt.Fprintf(a.Out, "%+v\n", r)
		}
		return err
	case "reboot":
		fmt.Fprintln(a.Out, "rebooting")
		return d.engineMachine().Reboot(ctx)
	case "install":
		return ErrConsoleInstall
	}
	return fmt.Errorf("console: unknown action %q", a.Command)
}
