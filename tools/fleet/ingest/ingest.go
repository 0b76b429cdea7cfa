package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/fleetstate"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// ErrShareName: a share name that would build another topic filter.
var ErrShareName = errors.New("ingest: share name must be a valid ID ([A-Za-z0-9._-], 1 to 64)")

// Options configure Run.
type Options struct {
	Broker   string // tcp://host:port
	ClientID string // unique per ingester
	// Share, if set, subscribes through $share/Share/…: the broker hands
	// each message to one of the ingesters sharing the name.
	Share string
	// Kinds are the device topics followed (transport.KindTelemetry,
	// KindStatus, KindOnline); default telemetry only.
	Kinds  []string
	Store  *store.Store
	Logger *slog.Logger
	// OnStored, if set, is called after each message is stored.
	OnStored func(fleetstate.Event)
}

// Filters returns the subscription filters for o.
func (o Options) Filters() ([]string, error) {
	kinds := o.Kinds
	if len(kinds) == 0 {
		kinds = []string{transport.KindTelemetry}
	}
	prefix := ""
	if o.Share != "" {
		if transport.ValidID(o.Share) != nil {
			return nil, fmt.Errorf("%w: %q", ErrShareName, o.Share)
		}
		prefix = "$share/" + o.Share + "/"
	}
	var out []string
	for _, k := range kinds {
		out = append(out, prefix+transport.DeviceFilter(k))
	}
	return out, nil
}

// Run ingests until ctx ends; it reconnects after a lost connection and
// subscribes again.
func Run(ctx context.Context, o Options) error {
	filters, err := o.Filters()
	if err != nil {
		return err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	queue := make(chan paho.Message, 1024)
	h := func(_ paho.Client, m paho.Message) {
		select {
		case queue <- m:
		case <-ctx.Done():
		}
	}
	subs := map[string]byte{}
	for _, f := range filters {
		subs[f] = 1
	}
	opts := paho.NewClientOptions().AddBroker(o.Broker).SetClientID(o.ClientID).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(10 * time.Second).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.SubscribeMultiple(subs, h)
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				log.Error("ingest: subscribe", "err", tok.Error())
			}
		})
	c := paho.NewClient(opts)
	c.Connect() // retried in the background until it succeeds
	defer c.Disconnect(250)
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-queue:
			ev, err := store1(ctx, o.Store, m.Topic(), m.Payload())
			if err != nil {
				log.Warn("ingest", "topic", m.Topic(), "err", err)
				continue
			}
			if o.OnStored != nil {
				o.OnStored(ev)
			}
		}
	}
}

// store1 decodes one device message and stores it.
func store1(ctx context.Context, db *store.Store, topic string, payload []byte) (fleetstate.Event, error) {
	ev, err := fleetstate.Decode(topic, payload)
	if err != nil || ev.Cleared {
		return ev, err
	}
	switch ev.Kind {
	case transport.KindTelemetry:
		err = db.IngestTelemetry(ctx, ev.Telemetry)
	case transport.KindStatus:
		_, err = db.IngestStatus(ctx, ev.Status)
	case transport.KindOnline:
		err = db.SetOnline(ctx, ev.Device, ev.Online)
	}
	return ev, err
}
