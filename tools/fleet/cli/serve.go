package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tuf/repo"
)

func serveCmd() command {
	return command{
		name:    "serve",
		summary: "run an embedded MQTT broker and an HTTP server for the TUF repository until interrupted",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("repo", "", "TUF repository `DIR` (required)")
			mqttAddr := fs.String("mqtt", serve.DefaultMQTTAddr, "broker listen `ADDR` (port 0: any free port); the broker lets every client in")
			httpAddr := fs.String("http", serve.DefaultHTTPAddr, "repository server listen `ADDR` (port 0: any free port)")
			asJSON := fs.Bool("json", false, "print the bound addresses as one JSON object")
			resign := fs.Duration("resign-timestamp", 0, "re-sign the timestamp (timestamp key only) every `DURATION`; 0: half its lifetime")
			noResign := fs.Bool("no-resign", false, "do not re-sign the timestamp (someone runs `repo timestamp`)")
			warn := fs.Duration("expiry-warn", 72*time.Hour, "warn in the log and /status when root, targets or snapshot expire within `DURATION`")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("repo", *dir); err != nil {
					return err
				}
				opts := serve.Options{
					MQTTAddr:   *mqttAddr,
					HTTPAddr:   *httpAddr,
					Logger:     e.log,
					ExpiryWarn: *warn,
				}
				var r *repo.Repo
				var err error
				if *noResign {
					r, err = repo.OpenWith(*dir, repo.OpenOptions{Roles: []string{}})
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
				s, err := serve.Start(ctx, opts)
				if err != nil {
					return err
				}
				defer s.Close()
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
