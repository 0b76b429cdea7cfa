package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/fleetstate"
	"github.com/graft-dev/graft/tools/fleet/ingest"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
)

// Two ingesters on one shared subscription with a real mosquitto: each
// stores part of the devices' telemetry, and together all of it, once.
func TestSharedSubscriptionSplitsTheStream(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type ing struct {
		db  *store.Store
		mu  sync.Mutex
		got map[string]bool
	}
	ings := make([]*ing, 2)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range ings {
		db, err := store.Open(ctx, filepath.Join(t.TempDir(), "fleet.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		in := &ing{db: db, got: map[string]bool{}}
		ings[i] = in
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ingest.Run(ctx, ingest.Options{Broker: b.URL(), ClientID: fmt.Sprintf("ingest-%d", i), Share: "fleet", Store: db,
				OnStored: func(ev fleetstate.Event) {
					in.mu.Lock()
					defer in.mu.Unlock()
					in.got[fmt.Sprintf("%s/%d", ev.Device, ev.Telemetry.Seq)] = true
				}})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	// Both subscribed: mosquitto hands shared messages only to subscribers
	// present, so wait until a probe reaches each.
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("devices"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	publish := func(dev string, seq uint64) {
		payload, err := transport.EncodeTelemetry(transport.Telemetry{Device: dev, Seq: seq, Uptime: int64(seq)})
		if err != nil {
			t.Fatal(err)
		}
		if tok := pub.Publish(transport.TelemetryTopic(dev), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	count := func(in *ing) int { in.mu.Lock(); defer in.mu.Unlock(); return len(in.got) }
	for seq := uint64(1); count(ings[0]) == 0 || count(ings[1]) == 0; seq++ {
		if seq > 200 {
			t.Fatal("the ingesters never both received a probe")
		}
		publish("probe", seq)
		time.Sleep(20 * time.Millisecond)
	}
	for _, in := range ings {
		in.mu.Lock()
		clear(in.got)
		in.mu.Unlock()
	}

	const devices, reports = 20, 10
	for seq := uint64(1); seq <= reports; seq++ {
		for d := range devices {
			publish(fmt.Sprintf("dev-%02d", d), seq)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for count(ings[0])+count(ings[1]) < devices*reports {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d + %d of %d", count(ings[0]), count(ings[1]), devices*reports)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // nothing more (no duplicates) arrives
	a, c := count(ings[0]), count(ings[1])
	if a == 0 || c == 0 || a+c != devices*reports {
		t.Fatalf("ingesters stored %d and %d; want a part each, %d together", a, c, devices*reports)
	}
	for k := range ings[0].got {
		if ings[1].got[k] {
			t.Fatalf("%s stored by both", k)
		}
	}
	// What each stored is in its database.
	var total int
	for _, in := range ings {
		latest, err := in.db.LatestTelemetry(ctx)
		if err != nil {
			t.Fatal(err)
		}
		delete(latest, "probe")
		for dev := range latest {
			h, err := in.db.TelemetryHistory(ctx, dev, 0)
			if err != nil {
				t.Fatal(err)
			}
			total += len(h)
		}
	}
	if total != devices*reports {
		t.Fatalf("databases hold %d samples, want %d", total, devices*reports)
	}
	t.Logf("shared subscription: ingester 1 stored %d, ingester 2 %d of %d", a, c, devices*reports)
}

func TestShareNameRefused(t *testing.T) {
	for _, bad := range []string{"a/b", "+", "#", ""} {
		_, err := ingest.Options{Share: bad}.Filters()
		if bad == "" {
			if err != nil {
				t.Errorf("no share: %v", err)
			}
			continue
		}
		if !errors.Is(err, ingest.ErrShareName) {
			t.Errorf("share %q: %v", bad, err)
		}
	}
	f, _ := ingest.Options{Share: "fleet", Kinds: []string{transport.KindTelemetry, transport.KindStatus}}.Filters()
	if len(f) != 2 || f[0] != "$share/fleet/graft/v1/dev/+/telemetry" {
		t.Fatalf("filters %q", f)
	}
}
