package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/graft-dev/graft/tools/fleet/metrics"
	"github.com/graft-dev/graft/tools/fleet/rolloutctl"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/tuf/repo"
)

// DefaultDB is the fleet's database file unless --db says otherwise.
const DefaultDB = "fleet.db"

func serveCmd() command {
	return command{
		name:    "serve",
		summary: "run an embedded MQTT broker, an HTTP server for the TUF repository, the fleet database and the rollout controller until interrupted",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("repo", "", "TUF repository `DIR` (required)")
			mqttAddr := fs.String("mqtt", serve.DefaultMQTTAddr, "broker listen `ADDR` (port 0: any free port); the broker lets every client in")
			httpAddr := fs.String("http", serve.DefaultHTTPAddr, "repository server listen `ADDR` (port 0: any free port)")
			asJSON := fs.Bool("json", false, "print the bound addresses as one JSON object")
			dbPath := fs.String("db", DefaultDB, "the fleet's database `FILE` (created if missing; serve is its one writer)")
			tick := fs.Duration("rollout-tick", rolloutctl.DefaultTick, "how often the rollout controller steps")
			retention := fs.Duration("retention", store.DefaultRetention, "keep status events this long (negative: forever)")
			metricsCap := fs.Int("metrics-devices", metrics.DefaultDeviceCap, "at most `N` devices get per-device series on /metrics (docs/telemetry.md)")
			return func(ctx context.Context, args []string) error {
				if *metricsCap < 1 {
					return usagef("--metrics-devices must be at least 1")
				}
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("repo", *dir); err != nil {
					return err
				}
				if *dbPath == "" {
					return usagef("--db must not be empty")
				}
				r, err := repo.Open(*dir)
				if err != nil {
					return err
				}
				db, err := store.Open(ctx, *dbPath, store.Options{Retention: *retention})
				if err != nil {
					return err
				}
				defer db.Close()
				ctl := rolloutctl.New(db, rolloutctl.Options{Tick: *tick, Logger: e.log.With("component", "rollout")})
				s, err := serve.Start(ctx, serve.Options{
					MetadataDir: r.MetadataDir(),
					TargetsDir:  r.TargetsDir(),
					MQTTAddr:    *mqttAddr,
					HTTPAddr:    *httpAddr,
					Logger:      e.log,
					Store:       db,
					Observer:    ctl,

					MetricsDeviceCap: *metricsCap,
				})
				if err != nil {
					return err
				}
				defer s.Close()
				ctl.SetPublisher(s)
				go ctl.Run(ctx)
				if *asJSON {
					err = writeJSON(e.stdout, map[string]string{
						"mqtt": s.MQTTURL(), "http": s.HTTPURL(),
						"metadata": s.HTTPURL() + "/metadata/", "targets": s.HTTPURL() + "/targets/",
					})
				} else {
					_, err = fmt.Fprintf(e.stdout, "mqtt %s\nhttp %s\n", s.MQTTURL(), s.HTTPURL())
				}
				if err != nil {
					return err
				}
				<-ctx.Done()
				return s.Close()
			}
		},
	}
}
