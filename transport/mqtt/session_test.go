package mqtt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/outbox"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
)

func TestNoticesTelemetryAndBadPayloads(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	const dev = "dev-1"
	f := newFleet(t, b.URL(), "fleet", false, transport.OnlineTopic(dev), transport.TelemetryTopic(dev))

	// A retained notice published before the device ever connected.
	v1 := transport.Notice{Release: "v1", Manifest: "releases/v1/manifest.cbor", Sequence: 1, Time: 1}
	f.publish(transport.NotifyTopic(dev), mustEncode(t, v1), true)

	s, got := startSession(t, mqtt.Config{Broker: b.URL(), DeviceID: dev, Groups: []string{"canary", "eu"}})
	if err := s.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	f.waitOnline(dev, true)
	if n := got.next(t); n != v1 {
		t.Fatalf("retained device notice: got %+v, want %+v", n, v1)
	}

	v2 := transport.Notice{Release: "v2", Manifest: "releases/v2/manifest.cbor", Sequence: 2}
	f.publish(transport.GroupNotifyTopic("eu"), mustEncode(t, v2), false)
	if n := got.next(t); n != v2 {
		t.Fatalf("group notice: got %+v, want %+v", n, v2)
	}

	// Garbage, oversized, unknown-key and empty payloads are dropped; the
	// session stays up and the next valid notice is the next one handed on.
	unknownKey := append([]byte{0xa3}, mustEncode(t, transport.Notice{Release: "x", Manifest: "y"})[1:]...)
	unknownKey = append(unknownKey, 0x05, 0x00) // key 5 is reserved and unknown
	for _, bad := range [][]byte{
		[]byte("\xff\x00garbage"),
		bytes.Repeat([]byte{0x61}, transport.MaxPayload+1),
		unknownKey,
		{},
		{0xa1, 0x01},
	} {
		f.publish(transport.NotifyTopic(dev), bad, false)
		f.publish(transport.GroupNotifyTopic("canary"), bad, false)
	}
	v3 := transport.Notice{Release: "v3", Manifest: "releases/v3/manifest.cbor", Sequence: 3}
	f.publish(transport.GroupNotifyTopic("canary"), mustEncode(t, v3), false)
	if n := got.next(t); n != v3 {
		t.Fatalf("after bad payloads: got %+v, want %+v", n, v3)
	}
	if !s.Connected() {
		t.Fatal("session dropped its connection over bad payloads")
	}

	tm := transport.Telemetry{Time: 5, Uptime: 60, Slot: "A", Installed: "v1", AgentVersion: "test"}
	if err := s.PublishTelemetry(waitCtx(t), tm); err != nil {
		t.Fatal(err)
	}
	gotTm, err := transport.DecodeTelemetry(f.next(transport.TelemetryTopic(dev)))
	if err != nil {
		t.Fatal(err)
	}
	tm.Device = dev
	if !reflect.DeepEqual(gotTm, tm) {
		t.Fatalf("telemetry %+v, want %+v", gotTm, tm)
	}
}

func TestSubscriptionsSurviveBrokerRestart(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	const dev = "dev-r"
	f := newFleet(t, b.URL(), "fleet", false)
	s, got := startSession(t, mqtt.Config{Broker: b.URL(), DeviceID: dev, Groups: []string{"all"}})
	if err := s.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}

	// The broker keeps the device's persistent session across a restart:
	// a notice published right after it, maybe before the device is back,
	// is queued and delivered.
	b.Restart()
	n1 := transport.Notice{Release: "r1", Manifest: "m1"}
	f.publish(transport.GroupNotifyTopic("all"), mustEncode(t, n1), false)
	if n := got.next(t); n != n1 {
		t.Fatalf("after restart: got %+v, want %+v", n, n1)
	}

	// A broker that lost every session: only the subscriptions made on
	// connect bring the notices back. online=true is published after
	// subscribing, so once a fresh observer sees it the device listens.
	b.RestartEmpty()
	f2 := newFleet(t, b.URL(), "fleet-2", false, transport.OnlineTopic(dev))
	f2.waitOnline(dev, true)
	n2 := transport.Notice{Release: "r2", Manifest: "m2"}
	f2.publish(transport.GroupNotifyTopic("all"), mustEncode(t, n2), false)
	f2.publish(transport.NotifyTopic(dev), mustEncode(t, n2), false)
	for range 2 {
		if n := got.next(t); n != n2 {
			t.Fatalf("after losing sessions: got %+v, want %+v", n, n2)
		}
	}
}

func status(dev, id string, state transport.State) transport.Status {
	return transport.Status{EventID: id, Device: dev, State: state, Release: "v2", Time: 1}
}

func addEvents(t *testing.T, box *outbox.Outbox, sts ...transport.Status) {
	t.Helper()
	for _, st := range sts {
		if _, err := box.Add(mustEncode(t, st)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStatusDeliveredAfterBrokerOutage(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	const dev = "dev-o"
	f := newFleet(t, b.URL(), "fleet-o", true, transport.StatusTopic(dev))
	box, err := outbox.Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := startSession(t, mqtt.Config{Broker: b.URL(), DeviceID: dev, Outbox: box})
	if err := s.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	addEvents(t, box, status(dev, "e0", transport.StateDownloading))
	s.Kick()
	if err := s.Drained(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	f.events(dev, "e0")

	b.Stop()
	addEvents(t, box, status(dev, "e1", transport.StateInstalling), status(dev, "e2", transport.StateRebooting))
	s.Kick()
	if box.Len() != 2 {
		t.Fatalf("outbox holds %d events while the broker is down, want 2", box.Len())
	}
	b.Restart()
	if err := s.Drained(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	order, count := f.events(dev, "e1", "e2")
	if fmt.Sprint(order) != "[e1 e2]" {
		t.Fatalf("fleet saw events in order %v, want [e1 e2]", order)
	}
	t.Logf("deliveries per event after the outage: %v", count)
}

func TestStatusSurvivesAgentRestart(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	const dev = "dev-a"
	dir := t.TempDir()
	f := newFleet(t, b.URL(), "fleet-a", true, transport.StatusTopic(dev))

	box1, err := outbox.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(t.Context())
	defer cancel1()
	s1, err := mqtt.Start(ctx1, mqtt.Config{Broker: b.URL(), DeviceID: dev, Outbox: box1,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 100 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	b.Stop()
	// The same event twice (a redelivery after a crash between PUBACK and
	// Done looks like this): the fleet must see it once in effect.
	addEvents(t, box1,
		status(dev, "a1", transport.StateCommitted),
		status(dev, "a2", transport.StateIdle),
		status(dev, "a2", transport.StateIdle))
	s1.Kick()
	if err := s1.Close(waitCtx(t)); err != nil {
		t.Fatal(err)
	}

	// The agent restarts: a new outbox over the same directory, a new
	// session; the broker comes back.
	box2, err := outbox.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if box2.Len() != 3 {
		t.Fatalf("reopened outbox holds %d events, want 3", box2.Len())
	}
	b.Restart()
	s2, _ := startSession(t, mqtt.Config{Broker: b.URL(), DeviceID: dev, Outbox: box2})
	if err := s2.Drained(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	order, count := f.events(dev, "a1", "a2")
	if fmt.Sprint(order) != "[a1 a2]" {
		t.Fatalf("fleet saw events %v, want [a1 a2]", order)
	}
	if count["a2"] < 1 || len(count) != 2 {
		t.Fatalf("de-duplicated events %v", count)
	}
	if box2.Len() != 0 {
		t.Fatalf("outbox holds %d events after delivery", box2.Len())
	}
}

func TestUndeliverableEventIsDropped(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	const dev = "dev-u"
	f := newFleet(t, b.URL(), "fleet-u", false, transport.StatusTopic(dev))
	box, err := outbox.Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{[]byte("not cbor"), mustEncode(t, status("other-dev", "x", transport.StateIdle))} {
		if _, err := box.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	addEvents(t, box, status(dev, "good", transport.StateIdle))
	s, _ := startSession(t, mqtt.Config{Broker: b.URL(), DeviceID: dev, Outbox: box})
	if err := s.Drained(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if order, _ := f.events(dev, "good"); fmt.Sprint(order) != "[good]" {
		t.Fatalf("fleet saw %v, want only [good]", order)
	}
}

func TestWillOnAbruptDrop(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	p := mqtttest.StartProxy(t, b.Addr())
	const dev = "dev-w"
	f := newFleet(t, b.URL(), "fleet-w", false, transport.OnlineTopic(dev))
	s, _ := startSession(t, mqtt.Config{Broker: p.URL(), DeviceID: dev})
	if err := s.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	f.waitOnline(dev, true)

	// The device's TCP connection dies without a DISCONNECT: the broker
	// publishes the will; the device comes back and says so.
	p.Cut()
	f.waitOnline(dev, false)
	f.waitOnline(dev, true)

	// A clean Close says offline too, and it stays retained.
	if err := s.Close(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	f.waitOnline(dev, false)
	late := newFleet(t, b.URL(), "fleet-late", false, transport.OnlineTopic(dev))
	late.waitOnline(dev, false)
	if s.Connected() {
		t.Fatal("closed session says it is connected")
	}
	if err := s.WaitConnected(waitCtx(t)); !errors.Is(err, mqtt.ErrClosed) {
		t.Fatalf("WaitConnected after Close: %v, want ErrClosed", err)
	}
}

func TestPublishTelemetryWhileDisconnected(t *testing.T) {
	// No broker listens there: the session keeps trying in the background.
	s, _ := startSession(t, mqtt.Config{Broker: "tcp://127.0.0.1:1", DeviceID: "dev-x"})
	err := s.PublishTelemetry(t.Context(), transport.Telemetry{Uptime: 1})
	if !errors.Is(err, mqtt.ErrNotConnected) {
		t.Fatalf("error %v, want ErrNotConnected", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := s.WaitConnected(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitConnected: %v, want the context's deadline", err)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  mqtt.Config
	}{
		{"bad device", mqtt.Config{Broker: "tcp://127.0.0.1:1883", DeviceID: "a/b"}},
		{"wildcard group", mqtt.Config{Broker: "tcp://127.0.0.1:1883", DeviceID: "d", Groups: []string{"#"}}},
		{"no broker", mqtt.Config{DeviceID: "d"}},
		{"odd scheme", mqtt.Config{Broker: "http://127.0.0.1:1883", DeviceID: "d"}},
		{"backoff inverted", mqtt.Config{Broker: "tcp://h:1", DeviceID: "d", ReconnectMin: time.Minute, ReconnectMax: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := mqtt.Start(t.Context(), tt.cfg); !errors.Is(err, mqtt.ErrConfig) {
				t.Fatalf("error %v, want ErrConfig", err)
			}
		})
	}
}
