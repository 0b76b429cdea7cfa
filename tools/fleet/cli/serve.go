package cli

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"time"

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
		summary: "run an embedded MQTT broker (mutual TLS with --ca, plain on loopback), an HTTP server for the TUF repository, the fleet database and the rollout controller until interrupted",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("repo", "", "TUF repository `DIR` (required)")
			mqttAddr := fs.String("mqtt", "", "plain broker listen `ADDR`, loopback only: it lets every client in (default "+serve.DefaultMQTTAddr+" without --ca, none with --ca; port 0: any free port)")
			caDir := fs.String("ca", "", "fleet CA `DIR`: listen with mutual TLS on --mqtts, devices and operators by their certificates")
			mqttsAddr := fs.String("mqtts", serve.DefaultMQTTSAddr, "TLS broker listen `ADDR` (with --ca; port 0: any free port)")
			serverCert := fs.String("server-cert", "", "broker certificate `FILE` (default: issued in memory from the CA key in --ca)")
			serverKey := fs.String("server-key", "", "broker key `FILE`")
			httpAddr := fs.String("http", serve.DefaultHTTPAddr, "repository server listen `ADDR` (port 0: any free port)")
			asJSON := fs.Bool("json", false, "print the bound addresses as one JSON object")
			resign := fs.Duration("resign-timestamp", 0, "re-sign the timestamp (timestamp key only) every `DURATION`; 0: half its lifetime")
			noResign := fs.Bool("no-resign", false, "do not re-sign the timestamp (someone runs `repo timestamp`)")
			warn := fs.Duration("expiry-warn", 72*time.Hour, "warn in the log and /status when root, targets or snapshot expire within `DURATION`")
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
				if (*serverCert == "") != (*serverKey == "") {
					return usagef("--server-cert and --server-key go together")
				}
				if *caDir == "" && (*serverCert != "" || flagSet(fs, "mqtts")) {
					return usagef("--mqtts and --server-cert need --ca")
				}
				if *dbPath == "" {
					return usagef("--db must not be empty")
				}
				opts := serve.Options{
					PrivateDirs: []string{filepath.Join(*dir, "keys")},
					MQTTAddr:    *mqttAddr,
					CADir:       *caDir,
					MQTTSAddr:   *mqttsAddr,
					ServerCert:  *serverCert,
					ServerKey:   *serverKey,
					HTTPAddr:    *httpAddr,
					Logger:      e.log,
					ExpiryWarn:  *warn,
				}
				var r *repo.Repo
				var err error
				if *noResign {
					r, err = repo.OpenReadOnly(*dir)
				} else {
					r, err = openRepoKeys(*dir, []string{"timestamp"})
					opts.Timestamp, opts.ResignEvery = r, *resign
					if opts.ResignEvery == 0 && err == nil {
						opts.ResignEvery = r.Expiry("timestamp") / 2
					}
				}
				if err != nil {
					return err
				}
				opts.MetadataDir, opts.TargetsDir = r.MetadataDir(), r.TargetsDir()
				for _, d := range []string{opts.MetadataDir, opts.TargetsDir} {
					found, err := repo.KeyFilesIn(d)
					if err != nil {
						return err
					}
					if len(found) > 0 {
						return fmt.Errorf("refusing to serve %s: it holds private key files: %v", d, found)
					}
				}
				db, err := store.Open(ctx, *dbPath, store.Options{Retention: *retention})
				if err != nil {
					return err
				}
				defer db.Close()
				ctl := rolloutctl.New(db, rolloutctl.Options{Tick: *tick, Logger: e.log.With("component", "rollout")})
				opts.Store, opts.Observer, opts.MetricsDeviceCap = db, ctl, *metricsCap
				s, err := serve.Start(ctx, opts)
				if err != nil {
					return err
				}
				defer s.Close()
				ctl.SetPublisher(s)
				go ctl.Run(ctx)
				if *asJSON {
					err = writeJSON(e.stdout, map[string]string{
						"mqtt": s.MQTTURL(), "mqtts": s.MQTTSURL(), "http": s.HTTPURL(),
						"metadata": s.HTTPURL() + "/metadata/", "targets": s.HTTPURL() + "/targets/",
					})
				} else {
					if s.MQTTURL() != "" {
						fmt.Fprintf(e.stdout, "mqtt %s\n", s.MQTTURL())
					}
					if s.MQTTSURL() != "" {
						fmt.Fprintf(e.stdout, "mqtts %s\n", s.MQTTSURL())
					}
					_, err = fmt.Fprintf(e.stdout, "http %s\n", s.HTTPURL())
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

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
