package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// openDB opens the fleet's database read-only, as every command but
// serve does.
func openDB(ctx context.Context, path string) (*store.Store, error) {
	if path == "" {
		return nil, usagef("--db must not be empty")
	}
	return store.Open(ctx, path, store.Options{ReadOnly: true})
}

func devicesCmd() command {
	return command{
		name:    "devices",
		summary: "list the devices the fleet's database knows, with their inventory and newest status",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dbPath := fs.String("db", DefaultDB, "the fleet's database `FILE` (written by serve)")
			group := fs.String("group", "", "only devices reporting group `G`")
			release := fs.String("release", "", "only devices running release `R` or whose newest status is about it")
			state := fs.String("state", "", "only devices whose newest status is in state `S`")
			asJSON := fs.Bool("json", false, "print a JSON array of devices (docs/fleet.md)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if *state != "" && !transport.State(*state).Valid() {
					return usagef("--state %q is not a state (idle, downloading, installing, rebooting, verifying, committed, rolled-back, failed, refused)", *state)
				}
				db, err := openDB(ctx, *dbPath)
				if err != nil {
					return err
				}
				defer db.Close()
				devs, err := db.Devices(ctx, store.Filter{Group: *group, Release: *release, State: transport.State(*state)})
				if err == nil {
					err = db.WithTelemetry(ctx, devs)
				}
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, devs)
				}
				now := e.now()
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DEVICE\tONLINE\tSTATE\tRELEASE\tINSTALLED\tLAST OUTCOME\tBOARD\tGROUPS\tAGENT\tLAST SEEN\t"+healthHeader)
				for _, d := range devs {
					outcome := "-"
					if o := d.Outcome; o != nil {
						outcome = string(o.State) + " " + o.Release
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, onlineText(d.Online), dash(string(d.State)),
						dash(d.Release), dash(d.Installed), outcome, dash(d.Board), dash(strings.Join(d.Groups, ",")),
						dash(d.AgentVersion), age(now, d.LastSeenMS), healthColumns(d.Telemetry))
				}
				return tw.Flush()
			}
		},
	}
}

func historyCmd() command {
	return command{
		name:    "history",
		args:    "DEVICE",
		summary: "print a device's stored status events, oldest first",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dbPath := fs.String("db", DefaultDB, "the fleet's database `FILE` (written by serve)")
			limit := fs.Int("limit", 0, "only the newest `N` events (0: all kept)")
			asJSON := fs.Bool("json", false, "print a JSON array of events (docs/fleet.md)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "DEVICE"); err != nil {
					return err
				}
				if err := transport.ValidID(args[0]); err != nil {
					return usagef("device: %v", err)
				}
				if *limit < 0 {
					return usagef("--limit must not be negative")
				}
				db, err := openDB(ctx, *dbPath)
				if err != nil {
					return err
				}
				defer db.Close()
				if _, err := db.Device(ctx, args[0]); err != nil {
					return err
				}
				evs, err := db.History(ctx, args[0], *limit)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, evs)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RECEIVED\tSEQ\tSTATE\tRELEASE\tPATH\tREASON")
				for _, ev := range evs {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", time.UnixMilli(ev.ReceivedMS).UTC().Format(time.RFC3339),
						ev.Seq, ev.State, dash(ev.Release), dash(ev.Path), dash(truncate(ev.Reason, 60)))
				}
				return tw.Flush()
			}
		},
	}
}
