package cli

import (
	"context"
	"flag"
	"fmt"

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
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("repo", *dir); err != nil {
					return err
				}
				r, err := repo.Open(*dir)
				if err != nil {
					return err
				}
				s, err := serve.Start(ctx, serve.Options{
					MetadataDir: r.MetadataDir(),
					TargetsDir:  r.TargetsDir(),
					MQTTAddr:    *mqttAddr,
					HTTPAddr:    *httpAddr,
					Logger:      e.log,
				})
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
