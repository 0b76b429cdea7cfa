package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/graft-dev/graft/tools/fleet/ingest"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

func ingestCmd() command {
	return command{
		name:    "ingest",
		summary: "store the devices' telemetry from an external MQTT broker in a fleet database, sharing the stream with other ingesters ($share) until interrupted",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			broker := fs.String("broker", "", "MQTT broker `URL`, e.g. tcp://10.0.0.5:1883 (required)")
			dbPath := fs.String("db", DefaultDB, "the fleet database `FILE` this ingester writes (created if missing)")
			share := fs.String("share", "graft-fleet", "shared subscription `NAME`: ingesters with the same name split the stream; empty: every message")
			id := fs.String("client-id", "", "MQTT client `ID` (default graft-ingest-HOST-PID)")
			all := fs.Bool("status", false, "store statuses and online flags too, not only telemetry")
			retention := fs.Duration("retention", store.DefaultRetention, "keep status events this long (negative: forever)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("broker", *broker); err != nil {
					return err
				}
				o := ingest.Options{Broker: *broker, ClientID: *id, Share: *share, Logger: e.log}
				if o.ClientID == "" {
					host, _ := os.Hostname()
					o.ClientID = fmt.Sprintf("graft-ingest-%s-%d", host, os.Getpid())
				}
				if *all {
					o.Kinds = []string{transport.KindTelemetry, transport.KindStatus, transport.KindOnline}
				}
				if _, err := o.Filters(); err != nil {
					return usagef("--share: %v", err)
				}
				db, err := store.Open(ctx, *dbPath, store.Options{Retention: *retention})
				if err != nil {
					return err
				}
				defer db.Close()
				o.Store = db
				return ingest.Run(ctx, o)
			}
		},
	}
}
