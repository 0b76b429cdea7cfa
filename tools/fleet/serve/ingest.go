package serve

import (
	"context"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/graft-dev/graft/tools/fleet/fleetstate"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// pruneEvery is how often the ingester drops events past retention.
const pruneEvery = time.Hour

// StatusObserver is told about every fresh status once it is stored (the
// rollout controller).
type StatusObserver interface {
	Observe(ctx context.Context, s transport.Status)
}

// ingester feeds what devices publish into the fleet's database, in
// arrival order, on one goroutine: the broker's handler only queues.
type ingester struct {
	log   *slog.Logger
	store *store.Store
	obs   StatusObserver
	queue chan message
	done  chan struct{}
}

type message struct {
	topic   string
	payload []byte
}

// subscribe starts the ingester on the broker's inline client.
func (in *ingester) subscribe(broker *mqtt.Server) error {
	h := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		in.queue <- message{topic: pk.TopicName, payload: append([]byte(nil), pk.Payload...)}
	}
	for i, kind := range []string{transport.KindStatus, transport.KindOnline, transport.KindTelemetry, transport.KindInventory} {
		if err := broker.Subscribe(transport.DeviceFilter(kind), 1+i, h); err != nil {
			return err
		}
	}
	return nil
}

// run stores messages until ctx ends (serve's Close, once the broker has
// stopped), then what is still queued. A message being stored finishes:
// the database calls run without ctx's cancellation.
func (in *ingester) run(ctx context.Context) {
	defer close(in.done)
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case m := <-in.queue:
					in.ingest(context.WithoutCancel(ctx), m)
				default:
					return
				}
			}
		case <-prune.C:
			if n, err := in.store.Prune(ctx); err != nil {
				in.log.Warn("prune", "err", err)
			} else if n > 0 {
				in.log.Info("pruned events past retention", "events", n)
			}
			if n, err := in.store.DownsampleTelemetry(ctx); err != nil {
				in.log.Warn("downsample telemetry", "err", err)
			} else if n > 0 {
				in.log.Debug("telemetry downsampled", "rows", n)
			}
		case m := <-in.queue:
			in.ingest(context.WithoutCancel(ctx), m)
		}
	}
}

func (in *ingester) ingest(ctx context.Context, m message) {
	ev, err := fleetstate.Decode(m.topic, m.payload)
	if err != nil {
		in.log.Warn("ignored message", "topic", m.topic, "err", err)
		return
	}
	if ev.Cleared {
		return
	}
	switch ev.Kind {
	case transport.KindStatus:
		fresh, err := in.store.IngestStatus(ctx, ev.Status)
		if err != nil {
			in.log.Error("store status", "device", ev.Device, "err", err)
			return
		}
		if fresh && in.obs != nil {
			in.obs.Observe(ctx, ev.Status)
		}
	case transport.KindOnline:
		err = in.store.SetOnline(ctx, ev.Device, ev.Online)
	case transport.KindTelemetry:
		err = in.store.IngestTelemetry(ctx, ev.Telemetry)
	case transport.KindInventory:
		inv := ev.Inventory
		groups := inv.Groups
		if groups == nil {
			groups = []string{} // a device that follows no group any more
		}
		labels := inv.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		err = in.store.UpsertInventory(ctx, store.Inventory{Device: inv.Device, Board: inv.Board, Arch: inv.Arch,
			AgentVersion: inv.AgentVersion, Groups: groups, Labels: labels})
	}
	if err != nil {
		in.log.Error("store", "kind", ev.Kind, "device", ev.Device, "err", err)
	}
}
