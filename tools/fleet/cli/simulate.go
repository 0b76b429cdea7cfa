package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/graft-dev/graft/tools/fleet/simulate"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf/repo"
)

func simulateCmd() command {
	return command{
		name:    "simulate",
		summary: "run N simulated devices (the real agent on sim boards) in this process until interrupted",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			n := fs.Int("devices", 10, "how many devices")
			prefix := fs.String("prefix", "sim", "device ID `PREFIX` (devices PREFIX-00001, …)")
			group := fs.String("group", "", "a `G`roup every device reports and follows")
			fail := fs.String("fail-health", "", "comma-separated `GLOBS` over device IDs: these fail their health checks")
			silent := fs.String("silent", "", "comma-separated `GLOBS` over device IDs: these never finish fetching a release")
			broker := fs.String("broker", DefaultBroker, "MQTT broker `URL`")
			dir := fs.String("repo", "", "TUF repository `DIR` whose root the devices trust (required)")
			repoURL := fs.String("http", "http://127.0.0.1:8080", "the repository's base `URL` (serve's --http)")
			data := fs.String("dir", "", "where the devices keep their files (default: a new temporary directory, removed at the end)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("repo", *dir); err != nil {
					return err
				}
				if *n < 1 {
					return usagef("--devices must be at least 1")
				}
				if err := transport.ValidID(*prefix); err != nil {
					return usagef("--prefix: %v", err)
				}
				var groups []string
				if *group != "" {
					if err := transport.ValidID(*group); err != nil {
						return usagef("--group: %v", err)
					}
					groups = []string{*group}
				}
				r, err := repo.Open(*dir)
				if err != nil {
					return err
				}
				root, err := r.Root()
				if err != nil {
					return err
				}
				if *data == "" {
					tmp, err := os.MkdirTemp("", "graft-simulate-")
					if err != nil {
						return err
					}
					defer os.RemoveAll(tmp)
					*data = tmp
				}
				f, err := simulate.Start(ctx, simulate.Options{Devices: *n, Prefix: *prefix, Groups: groups,
					FailHealth: globs(*fail), Silent: globs(*silent), Broker: *broker, RepoURL: strings.TrimSuffix(*repoURL, "/"),
					Root: root, Dir: *data, Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "simulating %d devices %s … %s in %s\n", len(f.IDs), f.IDs[0], f.IDs[len(f.IDs)-1], *data)
				f.Wait()
				return nil
			}
		},
	}
}

func globs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
