package store_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func open(t *testing.T, path string, c *clock, opts store.Options) *store.Store {
	t.Helper()
	opts.Now = c.now
	s, err := store.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func status(dev, id string, seq uint64, state transport.State) transport.Status {
	return transport.Status{EventID: id, Device: dev, State: state, Release: "v2", Seq: seq, Time: 1000}
}

func TestIngestDedupOrderAndRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fleet.db")
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	s := open(t, path, c, store.Options{})

	for _, tc := range []struct {
		st        transport.Status
		wantFresh bool
	}{
		{status("d1", "e1", 1, transport.StateDownloading), true},
		{status("d1", "e3", 3, transport.StateCommitted), true},
		{status("d1", "e3", 3, transport.StateCommitted), false}, // redelivery
		{status("d1", "e2", 2, transport.StateVerifying), true},  // late: history only
		{status("d2", "x1", 1, transport.StateRolledBack), true},
		{status("d2", "x2", 2, transport.StateIdle), true}, // keeps the outcome
	} {
		fresh, err := s.IngestStatus(ctx, tc.st)
		if err != nil || fresh != tc.wantFresh {
			t.Fatalf("ingest %s: fresh %v err %v, want fresh %v", tc.st.EventID, fresh, err, tc.wantFresh)
		}
	}
	if _, err := s.IngestStatus(ctx, transport.Status{EventID: "bad", Device: "d 1", State: "idle"}); err == nil {
		t.Fatal("a malformed status was stored")
	}
	if err := s.UpsertInventory(ctx, store.Inventory{Device: "d1", Board: "sim", Arch: "arm64", Groups: []string{"lab", "canary", "lab"},
		Labels: map[string]string{"cluster": "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOnline(ctx, "d1", true); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopen read-only, as the CLI does: everything survived.
	r := open(t, path, c, store.Options{ReadOnly: true})
	d, err := r.Device(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != transport.StateCommitted || d.EventID != "e3" || d.Board != "sim" || d.Online == nil || !*d.Online ||
		len(d.Groups) != 2 || d.Groups[0] != "canary" || d.Labels["cluster"] != "a" {
		t.Fatalf("device after restart: %+v", d)
	}
	h, err := r.History(ctx, "d1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range h {
		ids = append(ids, e.EventID)
	}
	if len(ids) != 3 || ids[0] != "e1" || ids[1] != "e2" || ids[2] != "e3" {
		t.Fatalf("history = %v, want e1 e2 e3 by device counter", ids)
	}
	if h, _ := r.History(ctx, "d1", 1); len(h) != 1 || h[0].EventID != "e3" {
		t.Fatalf("history limit 1 = %+v", h)
	}
	for _, tc := range []struct {
		name string
		f    store.Filter
		want int
	}{
		{"all", store.Filter{}, 2},
		{"group", store.Filter{Group: "canary"}, 1},
		{"no such group", store.Filter{Group: "nope"}, 0},
		{"state", store.Filter{State: transport.StateIdle}, 1},
		{"release", store.Filter{Release: "v2"}, 2},
		{"ids", store.Filter{IDs: []string{"d2", "d9"}}, 1},
	} {
		got, err := r.Devices(ctx, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("%s: %d devices (%v), want %d", tc.name, len(got), err, tc.want)
		}
	}
	if d2, err := r.Device(ctx, "d2"); err != nil || d2.State != transport.StateIdle || d2.Outcome == nil ||
		d2.Outcome.State != transport.StateRolledBack || d2.Outcome.EventID != "x1" {
		t.Fatalf("d2 after an idle status: %+v %v, want state idle and outcome rolled-back", d2, err)
	}
	if _, err := r.Device(ctx, "nosuch"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing device: %v", err)
	}
}

func TestRetention(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	s := open(t, filepath.Join(t.TempDir(), "fleet.db"), c, store.Options{Retention: time.Hour})
	s.IngestStatus(ctx, status("d1", "old", 1, transport.StateDownloading))
	c.t = c.t.Add(2 * time.Hour)
	s.IngestStatus(ctx, status("d1", "new", 2, transport.StateCommitted))
	n, err := s.Prune(ctx)
	if err != nil || n != 1 {
		t.Fatalf("prune: %d, %v; want 1", n, err)
	}
	if h, _ := s.History(ctx, "d1", 0); len(h) != 1 || h[0].EventID != "new" {
		t.Fatalf("after prune: %+v", h)
	}
}

func TestRolloutMembersNotifiedOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fleet.db")
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	s := open(t, path, c, store.Options{})
	r := store.Rollout{ID: "r1", Release: "v2", Manifest: "m", Target: "all", Spec: []byte(`{}`), State: "running"}
	if _, err := s.CreateRollout(ctx, r, []store.Member{{Device: "a", Wave: 0, Outcome: "pending"}, {Device: "b", Wave: 1, Outcome: "pending"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRollout(ctx, r, nil); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate rollout: %v", err)
	}
	if ok, err := s.MarkNotified(ctx, "r1", "a", "notified", "n1"); !ok || err != nil {
		t.Fatalf("first mark: %v %v", ok, err)
	}
	s.Close()
	s = open(t, path, c, store.Options{})
	if ok, err := s.MarkNotified(ctx, "r1", "a", "notified", "n2"); ok || err != nil {
		t.Fatalf("second mark after restart: %v %v, want refused", ok, err)
	}
	ms, err := s.Members(ctx, "r1")
	if err != nil || len(ms) != 2 || ms[0].NoticeID != "n1" || ms[1].Outcome != "pending" {
		t.Fatalf("members: %+v %v", ms, err)
	}
	if _, err := s.Rollout(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing rollout: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fleet.db")
	c := &clock{t: time.Now()}
	s := open(t, path, c, store.Options{})
	if err := s.Exec(ctx, "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := store.Open(ctx, path, store.Options{}); !errors.Is(err, store.ErrNewerSchema) {
		t.Fatalf("newer schema: %v", err)
	}
}

// TestMigrateFromVersion1: a database written by the first schema opens
// with its devices intact and gains the newer columns.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fleet.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{store.Migrations[0], "PRAGMA user_version = 1",
		"INSERT INTO devices (id, state, first_seen, last_seen) VALUES ('old', 'committed', 1, 2)"} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	if _, err := store.Open(ctx, path, store.Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of an old schema succeeded; only serve migrates")
	}
	s := open(t, path, &clock{t: time.Now()}, store.Options{})
	d, err := s.Device(ctx, "old")
	if err != nil || d.State != transport.StateCommitted || d.Outcome != nil || d.LastSeenMS != 2 {
		t.Fatalf("after migration: %+v %v", d, err)
	}
}
