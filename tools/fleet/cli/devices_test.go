package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// startWithDB runs serve with a fleet database and returns its broker URL
// and the database's path.
func startWithDB(t *testing.T) (string, string, *store.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.db")
	db, err := store.Open(t.Context(), path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: db,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); db.Close() })
	return s.MQTTURL(), path, db
}

// TestDevicesAndHistory: what devices publish to serve is listed by
// devices (filtered) and history from the database, in one JSON schema
// each; unknown devices are an error.
func TestDevicesAndHistory(t *testing.T) {
	t.Parallel()
	url, path, db := startWithDB(t)
	dev := client(t, url, "fake-device")
	publishStatus(t, dev, transport.Status{EventID: "a1", Device: "d1", Seq: 1, State: transport.StateDownloading, Release: "v2"})
	publishStatus(t, dev, transport.Status{EventID: "a2", Device: "d1", Seq: 2, State: transport.StateCommitted, Release: "v2", Installed: "v2"})
	publishStatus(t, dev, transport.Status{EventID: "b1", Device: "d2", Seq: 1, State: transport.StateRolledBack, Release: "v2",
		Reason: "health check failed", Installed: "v1"})
	if err := db.UpsertInventory(t.Context(), store.Inventory{Device: "d2", Groups: []string{"canary"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if h, _ := db.History(t.Context(), "d2", 0); len(h) == 1 {
			if h, _ := db.History(t.Context(), "d1", 0); len(h) == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("statuses never reached the database")
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"all", nil, "d1,d2"},
		{"group", []string{"--group", "canary"}, "d2"},
		{"state", []string{"--state", "committed"}, "d1"},
		{"release", []string{"--release", "v1"}, "d2"},
	} {
		code, stdout, stderr := run(t.Context(), append([]string{"devices", "--db", path, "--json"}, tc.args...)...)
		if code != cli.ExitOK {
			t.Fatalf("%s: exit %d: %s", tc.name, code, stderr)
		}
		var devs []store.Device
		if err := json.Unmarshal([]byte(stdout), &devs); err != nil {
			t.Fatalf("%s: %v: %q", tc.name, err, stdout)
		}
		var ids []string
		for _, d := range devs {
			ids = append(ids, d.ID)
		}
		if got := strings.Join(ids, ","); got != tc.want {
			t.Errorf("%s: devices %q, want %q", tc.name, got, tc.want)
		}
	}
	code, stdout, stderr := run(t.Context(), "history", "--db", path, "d1", "--json")
	var evs []store.Event
	if code != cli.ExitOK || json.Unmarshal([]byte(stdout), &evs) != nil || len(evs) != 2 ||
		evs[0].State != transport.StateDownloading || evs[1].State != transport.StateCommitted {
		t.Fatalf("history: exit %d %q %s", code, stdout, stderr)
	}
	if code, _, stderr := run(t.Context(), "history", "--db", path, "nosuch"); code != cli.ExitFailure || !strings.Contains(stderr, "nosuch") {
		t.Fatalf("history of an unknown device: exit %d %q", code, stderr)
	}
	if code, _, _ := run(t.Context(), "devices", "--db", path, "--state", "bogus"); code != cli.ExitUsage {
		t.Fatalf("bad --state: exit %d", code)
	}
	if code, _, _ := run(t.Context(), "devices", "--db", filepath.Join(t.TempDir(), "none.db")); code != cli.ExitFailure {
		t.Fatalf("missing database: exit %d", code)
	}
}

// TestStatusNoSuchDevice: status --device for a device that never spoke
// exits 1 with a message instead of printing an empty table.
func TestStatusNoSuchDevice(t *testing.T) {
	t.Parallel()
	url, _, _ := startWithDB(t)
	code, stdout, stderr := run(t.Context(), "status", "--broker", url, "--device", "nosuch", "--wait", "300ms")
	if code != cli.ExitFailure || !strings.Contains(stderr, `"nosuch"`) || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}
