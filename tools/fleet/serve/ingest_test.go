package serve_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// TestIngestIntoStore: statuses, online flags, telemetry and inventory published to
// serve's broker land in the fleet's database, a redelivered status once,
// a malformed one not at all; and they are there after serve restarts.
func TestIngestIntoStore(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "fleet.db")
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := serve.Start(ctx, serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(),
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: db,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := connect(t, s.MQTTURL(), "dev")
	pub := func(topic string, payload []byte) {
		t.Helper()
		if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	st := transport.Status{EventID: "e1", Device: "d1", State: transport.StateCommitted, Release: "v2", Seq: 7, Installed: "v2"}
	b, err := transport.EncodeStatus(st)
	if err != nil {
		t.Fatal(err)
	}
	pub(transport.StatusTopic("d1"), b)
	pub(transport.StatusTopic("d1"), b)                  // redelivered
	pub(transport.StatusTopic("d2"), b)                  // names another device than its topic
	pub(transport.StatusTopic("d3"), []byte{0xa0, 0x01}) // malformed
	pub(transport.OnlineTopic("d1"), transport.EncodeOnline(true))
	tel, _ := transport.EncodeTelemetry(transport.Telemetry{Device: "d1", AgentVersion: "1.2.3"})
	pub(transport.TelemetryTopic("d1"), tel)
	inv, _ := transport.EncodeInventory(transport.Inventory{Device: "d1", Board: "sim", Arch: "arm64", Groups: []string{"lab"},
		Labels: map[string]string{"cluster": "a"}})
	pub(transport.InventoryTopic("d1"), inv)

	deadline := time.Now().Add(10 * time.Second)
	var d store.Device
	for time.Now().Before(deadline) {
		d, err = db.Device(ctx, "d1")
		if err == nil && d.AgentVersion == "1.2.3" && d.Online != nil && d.Board != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d.State != transport.StateCommitted || d.Installed != "v2" || d.Online == nil || !*d.Online || d.AgentVersion != "1.2.3" ||
		d.Board != "sim" || d.Arch != "arm64" || len(d.Groups) != 1 || d.Groups[0] != "lab" || d.Labels["cluster"] != "a" {
		t.Fatalf("device d1 = %+v (%v)", d, err)
	}
	s.Close()
	db.Close()

	ro, err := store.Open(context.Background(), path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	all, err := ro.Devices(ctx, store.Filter{})
	if err != nil || len(all) != 1 {
		t.Fatalf("devices after restart: %+v %v (only d1 sent anything valid)", all, err)
	}
	if h, err := ro.History(ctx, "d1", 0); err != nil || len(h) != 1 {
		t.Fatalf("history: %+v %v, want the one event once", h, err)
	}
}
