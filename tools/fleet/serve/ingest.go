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

// maxBatch is how many queued messages one transaction stores at most.
const maxBatch = 256

// run stores messages until ctx ends (serve's Close, once the broker has
// stopped), then what is still queued. What is queued when a message
// arrives is stored with it in one transaction. A batch being stored
// finishes: the database calls run without ctx's cancellation.
func (in *ingester) run(ctx context.Context) {
	defer close(in.done)
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	bg := context.WithoutCancel(ctx)
	batch := make([]message, 0, maxBatch)
	// take appends what is queued, up to maxBatch, without waiting.
	take := func() {
		for len(batch) < maxBatch {
			select {
			case m := <-in.queue:
				batch = append(batch, m)
			default:
				return
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			for {
				batch = batch[:0]
				take()
				if len(batch) == 0 {
					return
				}
				in.ingest(bg, batch)
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
			batch = append(batch[:0], m)
			take()
			in.ingest(bg, batch)
		}
	}
}

// ingest stores msgs in one transaction, then tells the observer about
// the fresh statuses.
func (in *ingester) ingest(ctx context.Context, msgs []message) {
	var fresh []transport.Status
	err := in.store.Batch(ctx, func(b *store.Batch) error {
		fresh = fresh[:0]
		for _, m := range msgs {
			ev, err := fleetstate.Decode(m.topic, m.payload)
			if err != nil {
				in.log.Warn("ignored message", "topic", m.topic, "err", err)
				continue
			}
			if ev.Cleared {
				continue
			}
			switch ev.Kind {
			case transport.KindStatus:
				var ok bool
				if ok, err = b.IngestStatus(ev.Status); ok {
					fresh = append(fresh, ev.Status)
				}
			case transport.KindOnline:
				err = b.SetOnline(ev.Device, ev.Online)
			case transport.KindTelemetry:
				err = b.IngestTelemetry(ev.Telemetry)
			case transport.KindInventory:
				err = b.UpsertInventory(inventory(ev.Inventory))
			}
			if err != nil {
				in.log.Error("store", "kind", ev.Kind, "device", ev.Device, "err", err)
			}
		}
		return nil
	})
	if err != nil {
		in.log.Error("store batch", "messages", len(msgs), "err", err)
		return
	}
	if in.obs != nil {
		for _, s := range fresh {
			in.obs.Observe(ctx, s)
		}
	}
}

// inventory is a device's reported inventory as the store keeps it: a
// device that reports no groups or labels has none (not "unchanged").
func inventory(inv transport.Inventory) store.Inventory {
	groups, labels := inv.Groups, inv.Labels
	if groups == nil {
		groups = []string{}
	}
	if labels == nil {
		labels = map[string]string{}
	}
	return store.Inventory{Device: inv.Device, Board: inv.Board, Arch: inv.Arch, AgentVersion: inv.AgentVersion,
		Groups: groups, Labels: labels}
}
