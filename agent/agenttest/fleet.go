package agenttest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/transport"
)

var watchers, notices atomic.Int64

// Fleet watches every device's status events through a real broker,
// de-duplicated by event ID as the fleet does, and sends notices.
type Fleet struct {
	broker string
	mu     sync.Mutex
	seen   map[string]bool
	events map[string][]transport.Status // by device
	notify chan struct{}
	client paho.Client
	// OnStatus, when set before events arrive, sees each new event.
	OnStatus func(transport.Status)
}

// Watch connects a fleet watcher to broker (an MQTT URL) until the test ends.
func Watch(t testing.TB, broker string) *Fleet {
	t.Helper()
	f := &Fleet{broker: broker, seen: map[string]bool{}, events: map[string][]transport.Status{}, notify: make(chan struct{}, 1)}
	id := fmt.Sprintf("fleet-watch-%d-%d", os.Getpid(), watchers.Add(1))
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(id).
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond)
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(transport.DeviceFilter(transport.KindStatus), 1, func(_ paho.Client, m paho.Message) {
			s, err := transport.DecodeStatus(m.Payload())
			if err != nil {
				return
			}
			f.mu.Lock()
			fresh := !f.seen[s.EventID]
			if fresh {
				f.seen[s.EventID] = true
				f.events[s.Device] = append(f.events[s.Device], s)
			}
			on := f.OnStatus
			f.mu.Unlock()
			if fresh && on != nil {
				on(s)
			}
			select {
			case f.notify <- struct{}{}:
			default:
			}
		})
	})
	f.client = paho.NewClient(opts)
	if tok := f.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("fleet watcher: %v", tok.Error())
	}
	t.Cleanup(func() { f.client.Disconnect(100) })
	return f
}

// Of returns the events of one device so far.
func (f *Fleet) Of(dev string) []transport.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]transport.Status(nil), f.events[dev]...)
}

// Count counts a device's events of one release in one state.
func (f *Fleet) Count(dev, release string, state transport.State) int {
	n := 0
	for _, s := range f.Of(dev) {
		if s.Release == release && s.State == state {
			n++
		}
	}
	return n
}

// Final reports whether s ends an update.
func Final(s transport.Status) bool {
	return (s.State == transport.StateCommitted || s.State == transport.StateRolledBack || s.State == transport.StateFailed) && !s.Retrying()
}

// WaitFor waits until one of the device's events satisfies ok.
func (f *Fleet) WaitFor(ctx context.Context, dev string, ok func(transport.Status) bool) (transport.Status, error) {
	for {
		for _, s := range f.Of(dev) {
			if ok(s) {
				return s, nil
			}
		}
		select {
		case <-f.notify:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return transport.Status{}, fmt.Errorf("device %s: %w (saw %d events)", dev, ctx.Err(), len(f.Of(dev)))
		}
	}
}

// WaitFinal waits until the device reports a final state for release.
func (f *Fleet) WaitFinal(ctx context.Context, dev, release string) (transport.Status, error) {
	return f.WaitFor(ctx, dev, func(s transport.Status) bool { return s.Release == release && Final(s) })
}

// Notify publishes a retained release notice to one device, as
// graft-fleet notify does (with a new notice ID each time).
func (f *Fleet) Notify(t testing.TB, dev, release string) {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(f.broker).SetClientID("notify-" + dev + "-" + strconv.Itoa(os.Getpid())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	b, err := transport.EncodeNotice(transport.Notice{Release: release, Manifest: ManifestTarget(release), Time: time.Now().UnixMilli(),
		ID: fmt.Sprintf("agenttest-%d-%d", os.Getpid(), notices.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(transport.NotifyTopic(dev), 1, true, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
}
