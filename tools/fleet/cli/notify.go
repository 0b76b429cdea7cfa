package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/transport"
)

func notifyCmd() command {
	return command{
		name:    "notify",
		args:    "RELEASE",
		summary: "publish a retained release notice to a device or a group, and wait for the broker's ack",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			broker := fs.String("broker", DefaultBroker, "MQTT broker `URL`")
			device := fs.String("device", "", "notify one device `ID`")
			group := fs.String("group", "", "notify every device of group `G`")
			target := fs.String("manifest", "", "manifest `TARGET` (default releases/RELEASE/manifest.cbor)")
			seq := fs.Uint64("sequence", 0, "release sequence, a hint for device logs (optional)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "RELEASE"); err != nil {
					return err
				}
				if (*device == "") == (*group == "") {
					return usagef("exactly one of --device or --group is required")
				}
				var topic string
				if *device != "" {
					if err := transport.ValidID(*device); err != nil {
						return usagef("--device: %v", err)
					}
					topic = transport.NotifyTopic(*device)
				} else {
					if err := transport.ValidID(*group); err != nil {
						return usagef("--group: %v", err)
					}
					topic = transport.GroupNotifyTopic(*group)
				}
				n := transport.Notice{Release: args[0], Manifest: *target, Sequence: *seq, Time: e.now().UnixMilli(), ID: transport.NewNoticeID()}
				if n.Manifest == "" {
					n.Manifest = release.ManifestTarget(n.Release)
				}
				payload, err := transport.EncodeNotice(n)
				if err != nil {
					return usagef("%v", err)
				}
				c, err := connect(ctx, *broker, "notify", false, nil)
				if err != nil {
					return err
				}
				defer c.Disconnect(250)
				if err := wait(ctx, c.Publish(topic, 1, true, payload)); err != nil {
					return fmt.Errorf("%w: publish %s: %w", ErrBroker, topic, err)
				}
				e.log.Debug("notice published", "topic", topic, "release", n.Release)
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{
						"topic": topic, "release": n.Release, "manifest": n.Manifest, "sequence": n.Sequence, "time_ms": n.Time, "notice_id": n.ID,
					})
				}
				_, err = fmt.Fprintf(e.stdout, "notified %s: release %s (manifest %s)\n", topic, n.Release, n.Manifest)
				return err
			}
		},
	}
}
