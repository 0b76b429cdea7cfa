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
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID("fleet-watch").SetCleanSession(false).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetry(true).
		SetOnConnectHandler(func(c paho.Client) {
			c.Subscribe(transport.StatusTopic(device), 1, h)
			c.Subscribe(transport.TelemetryTopic(device), 1, h)
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("fleet connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
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
	mu.Lock()
	to := sampled
	mu.Unlock()
	b.Restart()

	eventually(t, 30*time.Second, "every status and a report after the outage", func() bool {
		n, tm := fleet.counts()
		return n == statuses && len(tm) > 0 && tm[len(tm)-1].Uptime > to
	})
	_, tm := fleet.counts()
	var during int
	var last transport.Telemetry
	for _, r := range tm {
		if r.Uptime > from && r.Uptime <= to {
			during++
		}
		last = r
	}
	if during > bound+1 { // +1: the report in flight when the broker went away
		t.Fatalf("%d reports sampled offline arrived, bound %d", during, bound)
	}
	if last.Dropped < uint64(to-from)-bound-1 || last.Reconnects == 0 {
		t.Fatalf("latest report counts %d drops (%d sampled offline) and %d reconnects", last.Dropped, to-from, last.Reconnects)
	}
	t.Logf("offline: %d sampled, %d arrived, %d dropped; %d statuses all arrived", to-from, during, last.Dropped, statuses)
}
