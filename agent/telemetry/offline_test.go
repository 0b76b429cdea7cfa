package telemetry_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/agent/outbox"
	"github.com/graft-dev/graft/agent/telemetry"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
)

// received collects what a fleet subscriber sees, across broker restarts.
type received struct {
	mu        sync.Mutex
	statuses  map[string]bool
	telemetry []transport.Telemetry
}

func (r *received) counts() (int, []transport.Telemetry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.statuses), append([]transport.Telemetry(nil), r.telemetry...)
}

func watch(t *testing.T, broker, device string) *received {
	r := &received{statuses: map[string]bool{}}
	h := func(_ paho.Client, m paho.Message) {
		r.mu.Lock()
		defer r.mu.Unlock()
		switch m.Topic() {
		case transport.StatusTopic(device):
			if s, err := transport.DecodeStatus(m.Payload()); err == nil {
				r.statuses[s.EventID] = true
			}
		case transport.TelemetryTopic(device):
			if tm, err := transport.DecodeTelemetry(m.Payload()); err == nil {
				r.telemetry = append(r.telemetry, tm)
			}
		}
	}
	// A fresh client per connection with a persistent session: the
	// broker keeps the subscriptions and queues what comes while the
	// watcher reconnects (paho's own resume races in its packet code).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			lost := make(chan struct{})
			opts := paho.NewClientOptions().AddBroker(broker).SetClientID("fleet-watch").SetCleanSession(false).
				SetAutoReconnect(false).SetConnectTimeout(time.Second).
				SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
			c := paho.NewClient(opts)
			tok := c.Connect()
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for _, topic := range []string{transport.StatusTopic(device), transport.TelemetryTopic(device)} {
				c.Subscribe(topic, 1, h).WaitTimeout(5 * time.Second)
			}
			select {
			case first <- nil:
			default:
			}
			select {
			case <-lost:
			case <-ctx.Done():
				c.Disconnect(100)
				return
			}
		}
	}()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("fleet watcher cannot connect")
	}
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func eventually(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
	}
}

// The broker goes away for a while and comes back (real mosquitto). Every
// status event queued meanwhile arrives; of the reports sampled
// meanwhile, at most the queue's bound arrive, the newest, and later
// reports count the ones dropped.
func TestOfflineBuffering(t *testing.T) {
	const bound = 4
	b := mqtttest.StartMosquitto(t)
	dir := t.TempDir()
	box, err := outbox.Open(filepath.Join(dir, "outbox"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	q, err := telemetry.OpenQueue(filepath.Join(dir, "telemetry"), bound, nil)
	if err != nil {
		t.Fatal(err)
	}
	fleet := watch(t, b.URL(), "d1")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := mqtt.Start(ctx, mqtt.Config{Broker: b.URL(), DeviceID: "d1", Outbox: box,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	var (
		mu      sync.Mutex
		sampled int64
	)
	rep := &telemetry.Reporter{
		Interval: 50 * time.Millisecond,
		Queue:    q,
		Sample: func() transport.Telemetry {
			mu.Lock()
			defer mu.Unlock()
			sampled++
			return transport.Telemetry{Device: "d1", Uptime: sampled, Seq: uint64(sampled), Reconnects: s.Reconnects()}
		},
		Publish:       s.PublishTelemetry,
		WaitConnected: s.WaitConnected,
	}
	done := make(chan struct{})
	go func() { defer close(done); rep.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 20*time.Second, "first report", func() bool { _, tm := fleet.counts(); return len(tm) > 0 })

	b.Stop()
	mu.Lock()
	from := sampled
	mu.Unlock()
	const statuses = 10
	for i := range statuses {
		st, err := transport.EncodeStatus(transport.Status{EventID: fmt.Sprintf("ev-%d", i), Device: "d1", State: transport.StateIdle, Seq: uint64(1000 + i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := box.Add(st); err != nil {
			t.Fatal(err)
		}
		s.Kick()
	}
	eventually(t, 20*time.Second, "reports dropped while offline", func() bool { return q.Dropped() >= 3*bound })
	b.Restart()

	eventually(t, 30*time.Second, "every status and a report after the outage", func() bool {
		n, tm := fleet.counts()
		return n == statuses && len(tm) > 0 && tm[len(tm)-1].Reconnects > 0
	})
	_, tm := fleet.counts()
	// Sampled offline: after the broker stopped, before the session was
	// back (the reconnect count is still 0).
	var during int
	last := tm[len(tm)-1]
	for _, r := range tm {
		if r.Uptime > from && r.Reconnects == 0 {
			during++
		}
	}
	if during < 1 || during > bound+1 { // +1: the report in flight when the broker went away
		t.Fatalf("%d reports sampled offline arrived; want the newest, at most %d", during, bound)
	}
	if last.Dropped < 3*bound {
		t.Fatalf("latest report counts %d drops; the queue dropped at least %d", last.Dropped, 3*bound)
	}
	t.Logf("offline: %d arrived (bound %d), %d dropped; %d statuses all arrived", during, bound, last.Dropped, statuses)
}
