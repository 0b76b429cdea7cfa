package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/tools/fleet/rollout"
	"github.com/graft-dev/graft/tools/fleet/rolloutctl"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// openRW opens the fleet's database for a rollout command's change. serve
// stays the writer of devices and events; a rollout command writes its
// rollout's rows through SQLite's locking, and serve's controller picks
// the change up on its next step.
func openRW(ctx context.Context, path string) (*store.Store, error) {
	if path == "" {
		return nil, usagef("--db must not be empty")
	}
	// Read-only first: a database serve never created is refused, so a
	// typo in --db does not create an empty fleet.
	db, err := openDB(ctx, path)
	if err != nil {
		return nil, err
	}
	db.Close()
	return store.Open(ctx, path, store.Options{})
}

func rolloutCreateCmd() command {
	return command{
		name:    "rollout create",
		summary: "stage a release out to devices wave by wave; serve's controller runs it",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dbPath := fs.String("db", DefaultDB, "the fleet's database `FILE` (written by serve)")
			rel := fs.String("release", "", "release `NAME` (required)")
			manifest := fs.String("manifest", "", "manifest `TARGET` (default releases/RELEASE/manifest.cbor)")
			seq := fs.Uint64("sequence", 0, "release sequence, a hint for device logs")
			id := fs.String("id", "", "rollout `ID` (default: the release name, or name-N if taken)")
			target := fs.String("target", "", "`group:G`, `devices:a,b` or `all` (required): devices as the database knows them")
			waves := fs.String("waves", "1,10%,50%,100%", "cumulative wave `SIZES`: counts or percentages")
			soak := fs.Duration("soak", 30*time.Minute, "how long a finished wave must stay healthy before the next")
			maxFail := fs.String("max-failures", "0", "failures tolerated: a `COUNT` or a percentage of finished devices (2%)")
			minSample := fs.Int("min-sample", 10, "finished devices before a percentage is judged mid-wave (a whole wave is judged when done)")
			timeout := fs.Duration("timeout", 2*time.Hour, "per device: no final status this long after its notice is a failure (timed out)")
			window := fs.String("window", "", "notify only between `HH:MM-HH:MM`, fleet local time")
			maxConc := fs.Int("max-concurrent", 0, "at most `N` devices in progress at once (0: no limit)")
			rate := fs.Int("rate", 0, "at most `N` notices a minute, so a large wave does not hit the repository at once (0: no limit)")
			asJSON := fs.Bool("json", false, "print the rollout as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("release", *rel); err != nil {
					return err
				}
				if err := requireFlag("target", *target); err != nil {
					return err
				}
				spec := rollout.Spec{Soak: *soak, MinSample: *minSample, Timeout: *timeout, MaxConcurrent: *maxConc, Rate: *rate}
				var err error
				if spec.Waves, err = rollout.ParseWaves(*waves); err != nil {
					return usagef("--waves: %v", err)
				}
				if spec.MaxFailures, err = rollout.ParseThreshold(*maxFail); err != nil {
					return usagef("%v", err)
				}
				if *window != "" {
					w, err := rollout.ParseWindow(*window)
					if err != nil {
						return usagef("%v", err)
					}
					spec.Window = &w
				}
				if *soak < 0 || *timeout <= 0 || *minSample < 1 || *maxConc < 0 || *rate < 0 {
					return usagef("--soak, --max-concurrent and --rate must not be negative, --timeout and --min-sample must be positive")
				}
				if *manifest == "" {
					*manifest = release.ManifestTarget(*rel)
				}
				if err := (transport.Notice{Release: *rel, Manifest: *manifest}).Check(); err != nil {
					return usagef("%v", err)
				}
				filter, err := parseTarget(*target)
				if err != nil {
					return err
				}
				db, err := openRW(ctx, *dbPath)
				if err != nil {
					return err
				}
				defer db.Close()
				var ids []string
				if filter.IDs != nil {
					ids = filter.IDs // named devices need not have spoken yet: a silent one times out
				} else {
					devs, err := db.Devices(ctx, filter)
					if err != nil {
						return err
					}
					for _, d := range devs {
						ids = append(ids, d.ID)
					}
				}
				if len(ids) == 0 {
					return fmt.Errorf("target %s: no such devices in the database", *target)
				}
				specJSON, err := json.Marshal(spec)
				if err != nil {
					return err
				}
				// Membership is keyed by the release, so re-creating a
				// rollout of it picks the same canaries.
				waveOf := rollout.Assign(*rel, ids, spec.Waves)
				var members []store.Member
				for dev, w := range waveOf {
					members = append(members, store.Member{Device: dev, Wave: w, Outcome: string(rollout.Pending)})
				}
				r := store.Rollout{Release: *rel, Manifest: *manifest, Sequence: *seq, Target: *target, Spec: specJSON, State: rollout.Running}
				for n := 1; ; n++ {
					r.ID = *id
					if r.ID == "" {
						r.ID = *rel
						if n > 1 {
							r.ID += "-" + strconv.Itoa(n)
						}
					}
					if err := transport.ValidID(r.ID); err != nil {
						return usagef("--id: %v", err)
					}
					_, err = db.CreateRollout(ctx, r, members)
					if err == nil || *id != "" || !errors.Is(err, store.ErrExists) {
						break
					}
				}
				if err != nil {
					return err
				}
				return showRollout(ctx, e, db, r.ID, *asJSON, false)
			}
		},
	}
}

func parseTarget(s string) (store.Filter, error) {
	kind, val, _ := strings.Cut(s, ":")
	switch {
	case s == "all":
		return store.Filter{}, nil
	case kind == "group" && val != "":
		if err := transport.ValidID(val); err != nil {
			return store.Filter{}, usagef("--target group: %v", err)
		}
		return store.Filter{Group: val}, nil
	case kind == "devices" && val != "":
		ids := strings.Split(val, ",")
		for _, id := range ids {
			if err := transport.ValidID(id); err != nil {
				return store.Filter{}, usagef("--target devices: %v", err)
			}
		}
		return store.Filter{IDs: ids}, nil
	}
	return store.Filter{}, usagef("--target %q: want group:G, devices:a,b or all", s)
}

func rolloutListCmd() command {
	return command{
		name:    "rollout list",
		summary: "list rollouts with their counts",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dbPath := fs.String("db", DefaultDB, "the fleet's database `FILE` (written by serve)")
			asJSON := fs.Bool("json", false, "print a JSON array of rollouts (docs/fleet.md)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				db, err := openDB(ctx, *dbPath)
				if err != nil {
					return err
				}
				defer db.Close()
				rs, err := db.Rollouts(ctx)
				if err != nil {
					return err
				}
				views := []rolloutctl.View{}
				for _, r := range rs {
					st, ms, err := rolloutctl.Load(ctx, db, r)
					if err != nil {
						return err
					}
					views = append(views, rolloutctl.Summarize(r, st, ms, e.now(), false))
				}
				if *asJSON {
					return writeJSON(e.stdout, views)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tRELEASE\tSTATE\tWAVE\tPENDING\tIN PROGRESS\tCOMMITTED\tROLLED BACK\tFAILED\tTIMED OUT\tREASON")
				for _, v := range views {
					c := v.Totals
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", v.ID, v.Release, v.State, v.Wave, len(v.Waves),
						c.Pending, c.InProgress, c.Committed, c.RolledBack, c.Failed, c.TimedOut, dash(truncate(v.Reason, 60)))
				}
				return tw.Flush()
			}
		},
	}
}

func rolloutShowCmd() command {
	return command{
		name:    "rollout show",
		args:    "ID",
		summary: "show a rollout: its state and why, each wave's counts, and with --members every device",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dbPath := fs.String("db", DefaultDB, "the fleet's database `FILE` (written by serve)")
			members := fs.Bool("members", false, "list every device's wave and outcome")
			asJSON := fs.Bool("json", false, "print the rollout as JSON, with its members (docs/fleet.md)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "ID"); err != nil {
					return err
				}
				db, err := openDB(ctx, *dbPath)
				if err != nil {
					return err
				}
				defer db.Close()
				return showRollout(ctx, e, db, args[0], *asJSON, *members || *asJSON)
			}
		},
	}
}

func showRollout(ctx context.Context, e *env, db *store.Store, id string, asJSON, members bool) error {
	r, err := db.Rollout(ctx, id)
	if err != nil {
		return err
	}
	st, ms, err := rolloutctl.Load(ctx, db, r)
	if err != nil {
		return err
	}
	v := rolloutctl.Summarize(r, st, ms, e.now(), members)
	if asJSON {
		return writeJSON(e.stdout, v)
	}
	return printRollout(e.stdout, v)
}

func printRollout(w io.Writer, v rolloutctl.View) error {
	fmt.Fprintf(w, "rollout %s: release %s to %s\n", v.ID, v.Release, v.Target)
	fmt.Fprintf(w, "state   %s, wave %d of %d\n", v.State, v.Wave, len(v.Waves))
	if v.Reason != "" {
		fmt.Fprintf(w, "reason  %s\n", v.Reason)
	}
	if v.Waiting != "" {
		fmt.Fprintf(w, "waiting %s\n", v.Waiting)
	}
	s := v.Spec
	fmt.Fprintf(w, "spec    waves %s, soak %s, max failures %s (min sample %d), timeout %s", s.Waves, s.Soak, s.MaxFailures, s.MinSample, s.Timeout)
	if s.MaxConcurrent > 0 {
		fmt.Fprintf(w, ", max concurrent %d", s.MaxConcurrent)
	}
	if s.Rate > 0 {
		fmt.Fprintf(w, ", rate %d a minute", s.Rate)
	}
	if s.Window != "" {
		fmt.Fprintf(w, ", window %s", s.Window)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tSIZE\tPENDING\tIN PROGRESS\tCOMMITTED\tROLLED BACK\tFAILED\tTIMED OUT")
	for _, wv := range v.Waves {
		c := wv.Counts
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", wv.Wave, wv.Size, c.Pending, c.InProgress, c.Committed, c.RolledBack, c.Failed, c.TimedOut)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(v.Members) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tWAVE\tOUTCOME\tREASON")
		for _, m := range v.Members {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", m.Device, m.Wave, m.Outcome, dash(truncate(m.Reason, 60)))
		}
		return tw.Flush()
	}
	return nil
}

// rolloutStateCmd is pause, resume or abort: a state change from one of
// from to to.
func rolloutStateCmd(verb, summary, to, reason string, from ...string) command {
	return command{
		name:    "rollout " + verb,
		args:    "ID",
		summary: summary,
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dbPath := fs.String("db", DefaultDB, "the fleet's database `FILE` (written by serve)")
			var maxFail *string
			if verb == "resume" {
				maxFail = fs.String("max-failures", "", "raise the failure threshold (a `COUNT` or a percentage) before resuming")
			}
			asJSON := fs.Bool("json", false, "print the rollout as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "ID"); err != nil {
					return err
				}
				var th *rollout.Threshold
				if maxFail != nil && *maxFail != "" {
					t, err := rollout.ParseThreshold(*maxFail)
					if err != nil {
						return usagef("%v", err)
					}
					th = &t
				}
				db, err := openRW(ctx, *dbPath)
				if err != nil {
					return err
				}
				defer db.Close()
				r, err := db.Rollout(ctx, args[0])
				if err != nil {
					return err
				}
				if th != nil {
					st, _, err := rolloutctl.Load(ctx, db, r)
					if err != nil {
						return err
					}
					st.Spec.MaxFailures = *th
					b, err := json.Marshal(st.Spec)
					if err != nil {
						return err
					}
					if err := db.SetSpec(ctx, r.ID, b); err != nil {
						return err
					}
				}
				prev := r.State
				r.State, r.Reason = to, reason
				ok := false
				for _, f := range from {
					if prev == f {
						if ok, err = db.UpdateRolloutIf(ctx, r, f); err != nil {
							return err
						}
					}
				}
				if !ok {
					return fmt.Errorf("rollout %s is %s: cannot %s it", r.ID, prev, verb)
				}
				return showRollout(ctx, e, db, r.ID, *asJSON, false)
			}
		},
	}
}

func rolloutCmds() []command {
	return []command{
		rolloutCreateCmd(), rolloutListCmd(), rolloutShowCmd(),
		rolloutStateCmd("pause", "pause a rollout: no new notices until resumed", rollout.Paused, "paused by the operator", rollout.Running),
		rolloutStateCmd("resume", "resume a paused rollout (a threshold that still trips pauses it again; raise it with --max-failures)",
			rollout.Running, "", rollout.Paused),
		rolloutStateCmd("abort", "abort a rollout: no new notices, and serve clears the retained ones", rollout.Aborting,
			"aborted by the operator", rollout.Running, rollout.Paused),
	}
}
