package cli

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tuf/repo"
)

func serveCmd() command {
	return command{
		name:    "serve",
		summary: "run an embedded MQTT broker (mutual TLS with --ca, plain on loopback) and an HTTP server for the TUF repository until interrupted",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("repo", "", "TUF repository `DIR` (required)")
			mqttAddr := fs.String("mqtt", "", "plain broker listen `ADDR`, loopback only: it lets every client in (default "+serve.DefaultMQTTAddr+" without --ca, none with --ca; port 0: any free port)")
			caDir := fs.String("ca", "", "fleet CA `DIR`: listen with mutual TLS on --mqtts, devices and operators by their certificates")
			mqttsAddr := fs.String("mqtts", serve.DefaultMQTTSAddr, "TLS broker listen `ADDR` (with --ca; port 0: any free port)")
			serverCert := fs.String("server-cert", "", "broker certificate `FILE` (default: issued in memory from the CA key in --ca)")
			serverKey := fs.String("server-key", "", "broker key `FILE`")
			httpAddr := fs.String("http", serve.DefaultHTTPAddr, "repository server listen `ADDR` (port 0: any free port)")
			asJSON := fs.Bool("json", false, "print the bound addresses as one JSON object")
			return func(ctx context.Context, args []string) error {
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
				r, err := repo.Open(*dir)
				if err != nil {
					return err
				}
				s, err := serve.Start(ctx, serve.Options{
					MetadataDir: r.MetadataDir(),
					PrivateDirs: []string{filepath.Join(*dir, "keys")},
					TargetsDir:  r.TargetsDir(),
					MQTTAddr:    *mqttAddr,
					CADir:       *caDir,
					MQTTSAddr:   *mqttsAddr,
					ServerCert:  *serverCert,
					ServerKey:   *serverKey,
					HTTPAddr:    *httpAddr,
					Logger:      e.log,
				})
				if err != nil {
					return err
				}
				defer s.Close()
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
