package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf/repo"
)

// EnvRepo gives notify's --repo when the flag does not.
const EnvRepo = "GRAFT_FLEET_REPO"

// ErrNoRelease: notify names a release whose manifest is not published.
var ErrNoRelease = errors.New("release not published")

// countWait bounds how long notify waits for the broker's answer to a
// subscriber query; a broker that cannot count never answers.
const countWait = 2 * time.Second

func notifyCmd() command {
	return command{
		name:    "notify",
		args:    "RELEASE | --clear",
		summary: "publish a retained release notice to a device or a group (after checking the release is published), wait for the broker's ack, and report how many devices are subscribed",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			bf := addBrokerFlags(fs)
			repoDir := fs.String("repo", os.Getenv(EnvRepo), "TUF repository `DIR` the release must be published in (required unless --clear; env "+EnvRepo+")")
			device := fs.String("device", "", "notify one device `ID`")
			group := fs.String("group", "", "notify every device of group `G`")
			target := fs.String("manifest", "", "manifest `TARGET` (default releases/RELEASE/manifest.cbor)")
			seq := fs.Uint64("sequence", 0, "release sequence, a hint for device logs (default: the manifest's)")
			clear := fs.Bool("clear", false, "clear the retained notice on the topic instead (no RELEASE)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if *clear {
					if err := wantArgs(args, 0, "no RELEASE with --clear"); err != nil {
						return err
					}
				} else if err := wantArgs(args, 1, "RELEASE"); err != nil {
					return err
				}
				if err := exactlyOne("--device or --group", *device, *group); err != nil {
					return err
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
				var (
					n       transport.Notice
					payload []byte // empty: clears the retained notice
				)
				if !*clear {
					if err := requireFlag("repo", *repoDir); err != nil {
						return err
					}
					n = transport.Notice{Release: args[0], Manifest: *target, Sequence: *seq, Time: e.now().UnixMilli(), ID: transport.NewNoticeID()}
					if n.Manifest == "" {
						n.Manifest = release.ManifestTarget(n.Release)
					}
					m, err := publishedManifest(*repoDir, n.Manifest)
					if err != nil {
						return err
					}
					if m.Name != n.Release {
						return fmt.Errorf("%w: manifest %s is release %q, not %q", ErrNoRelease, n.Manifest, m.Name, n.Release)
					}
					if n.Sequence == 0 {
						n.Sequence = m.Sequence
					}
					if payload, err = transport.EncodeNotice(n); err != nil {
						return usagef("%v", err)
					}
				}
				c, err := connect(ctx, bf, "notify", false, nil)
				if err != nil {
					return err
				}
				defer c.Disconnect(250)
				if err := wait(ctx, c.Publish(topic, 1, true, payload)); err != nil {
					return fmt.Errorf("%w: publish %s: %w", ErrBroker, topic, err)
				}
				e.log.Debug("notice published", "topic", topic, "release", n.Release, "clear", *clear)
				count, ok := subscribers(ctx, c, serve.SubscribersPrefix+topic)

				if *asJSON {
					out := map[string]any{"topic": topic, "subscribed": nil, "connected": nil}
					if ok {
						out["subscribed"], out["connected"] = count.Subscribed, count.Connected
					}
					if *clear {
						out["cleared"] = true
					} else {
						out["release"], out["manifest"], out["sequence"], out["time_ms"], out["notice_id"] = n.Release, n.Manifest, n.Sequence, n.Time, n.ID
					}
					return writeJSON(e.stdout, out)
				}
				subs := "the broker cannot say how many devices are subscribed"
				if ok {
					subs = fmt.Sprintf("%d device(s) subscribed, %d connected", count.Subscribed, count.Connected)
				}
				if *clear {
					_, err = fmt.Fprintf(e.stdout, "cleared the notice on %s; %s\n", topic, subs)
				} else {
					_, err = fmt.Fprintf(e.stdout, "notified %s: release %s (manifest %s); %s\n", topic, n.Release, n.Manifest, subs)
				}
				return err
			}
		},
	}
}

// publishedManifest reads and decodes a published manifest target of the
// repository in dir.
func publishedManifest(dir, name string) (*manifest.Manifest, error) {
	r, err := repo.OpenReadOnly(dir)
	if err != nil {
		return nil, err
	}
	targets := r.Targets()
	i := slices.IndexFunc(targets, func(t repo.Target) bool { return t.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("%w: no target %s in %s (release add, then repo publish)", ErrNoRelease, name, dir)
	}
	data, err := readPublishedTarget(r, targets[i], manifest.MaxSize)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoRelease, name, err)
	}
	return m, nil
}

// subscribers asks the broker how many devices subscribe to the notice's
// topic (graft-fleet serve answers; other brokers refuse the query or stay
// silent, and ok is false).
func subscribers(ctx context.Context, c paho.Client, query string) (serve.Subscribers, bool) {
	ans := make(chan serve.Subscribers, 1)
	tok := c.Subscribe(query, 0, func(_ paho.Client, m paho.Message) {
		if s, err := serve.DecodeSubscribers(m.Payload()); err == nil {
			select {
			case ans <- s:
			default:
			}
		}
	})
	if err := wait(ctx, tok); err != nil {
		return serve.Subscribers{}, false
	}
	if refused(tok) != nil {
		return serve.Subscribers{}, false
	}
	t := time.NewTimer(countWait)
	defer t.Stop()
	select {
	case s := <-ans:
		return s, true
	case <-t.C:
	case <-ctx.Done():
	}
	return serve.Subscribers{}, false
}
