package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/graft-dev/graft/tools/fleet/fleetstate"
	"github.com/graft-dev/graft/transport"
)

// Device is a device as the fleet remembers it: its inventory as it last
// reported it, and its newest status. This is the one JSON schema of a
// device (`graft-fleet devices --json`, docs/fleet.md).
type Device struct {
	ID           string            `json:"device"`
	Board        string            `json:"board,omitempty"`
	Arch         string            `json:"arch,omitempty"`
	Kernel       string            `json:"kernel,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	Groups       []string          `json:"groups"`              // as the device reports them
	Labels       map[string]string `json:"labels,omitempty"`    // e.g. cluster=ceph-a
	LivePatches  []string          `json:"live_patches"`        // applied live patches
	Installed    string            `json:"installed,omitempty"` // release running now
	Slot         string            `json:"slot,omitempty"`
	Online       *bool             `json:"online"` // nil: never heard
	State        transport.State   `json:"state,omitempty"`
	Release      string            `json:"release,omitempty"` // release the newest status is about
	Sequence     uint64            `json:"sequence,omitempty"`
	Path         string            `json:"path,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	EventID      string            `json:"event_id,omitempty"` // newest status applied
	// Outcome is how the device's last update ended (its last committed,
	// rolled-back, failed or refused status), kept when idle statuses
	// follow; nil if none yet.
	Outcome     *Outcome `json:"last_outcome"`
	FirstSeenMS int64    `json:"first_seen_ms"` // fleet clock
	LastSeenMS  int64    `json:"last_seen_ms"`  // fleet clock
	// Telemetry is the device's latest report (by its event counter) and
	// TelemetryMS when the fleet received it; filled by WithTelemetry.
	Telemetry   *transport.Telemetry `json:"telemetry,omitempty"`
	TelemetryMS int64                `json:"telemetry_ms,omitempty"`
}

// Outcome is a device's last final status.
type Outcome struct {
	State   transport.State `json:"state"` // committed, rolled-back, failed or refused
	Release string          `json:"release,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	EventID string          `json:"event_id"`
}

// finalState reports whether s ends an update.
func finalState(s transport.State) bool {
	switch s {
	case transport.StateCommitted, transport.StateRolledBack, transport.StateFailed, transport.StateRefused:
		return true
	}
	return false
}

// Inventory is what a device tells about itself, apart from its status.
// Empty fields leave what the store has.
type Inventory struct {
	Device       string
	Board        string
	Arch         string
	Kernel       string
	AgentVersion string
	Installed    string
	Slot         string
	Groups       []string          // nil: unchanged
	Labels       map[string]string // nil: unchanged
	LivePatches  []string          // nil: unchanged
}

// Event is one stored status event: the one JSON schema of an event
// (`graft-fleet history --json`, docs/fleet.md).
type Event struct {
	EventID    string          `json:"event_id"`
	Device     string          `json:"device"`
	Seq        uint64          `json:"seq,omitempty"`            // the device's event counter
	DeviceMS   int64           `json:"device_time_ms,omitempty"` // the device's clock
	ReceivedMS int64           `json:"received_ms"`              // the fleet's clock
	State      transport.State `json:"state"`
	Release    string          `json:"release,omitempty"`
	Sequence   uint64          `json:"sequence,omitempty"`
	Path       string          `json:"path,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Slot       string          `json:"slot,omitempty"`
	Installed  string          `json:"installed,omitempty"`
}

// Batch is several writes in one transaction (serve's ingester stores
// what the broker queued at once). Its methods check their input first: a
// refused message returns an error and writes nothing, and the batch goes
// on.
type Batch struct {
	ctx context.Context
	tx  *sql.Tx
	now int64
}

// Batch runs fn in one transaction, committed if fn returns nil.
func (s *Store) Batch(ctx context.Context, fn func(*Batch) error) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		return fn(&Batch{ctx: ctx, tx: tx, now: s.now().UnixMilli()})
	})
}

// IngestStatus records status st, received now. It returns false when
// the event ID was already stored (a redelivery; nothing changes). The
// device's row takes the status unless it is older than the one the row
// holds (fleetstate.Older), but the event is kept in the history either
// way.
func (s *Store) IngestStatus(ctx context.Context, st transport.Status) (fresh bool, err error) {
	err = s.Batch(ctx, func(b *Batch) error {
		fresh, err = b.IngestStatus(st)
		return err
	})
	return fresh, err
}

// IngestStatus is Store.IngestStatus in the batch.
func (b *Batch) IngestStatus(st transport.Status) (fresh bool, err error) {
	if err := st.Check(); err != nil {
		return false, fmt.Errorf("store: ingest: %w", err)
	}
	ctx, tx, now := b.ctx, b.tx, b.now
	err = func() error {
		res, err := tx.ExecContext(ctx, `INSERT INTO events
			(event_id, device, seq, device_time, received, state, release, sequence, path, reason, slot, installed)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING`,
			st.EventID, st.Device, int64(st.Seq), st.Time, now, string(st.State), st.Release, int64(st.Sequence),
			st.Path, st.Reason, st.Slot, st.Installed)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // seen before
		}
		fresh = true
		if err := touch(ctx, tx, st.Device, now); err != nil {
			return err
		}
		var lastSeq, lastTime int64
		if err := tx.QueryRowContext(ctx, "SELECT status_seq, status_time FROM devices WHERE id = ?", st.Device).
			Scan(&lastSeq, &lastTime); err != nil {
			return err
		}
		if fleetstate.Older(st, uint64(lastSeq), lastTime) {
			return nil
		}
		seq := int64(st.Seq)
		if seq == 0 {
			seq = lastSeq
		}
		_, err = tx.ExecContext(ctx, `UPDATE devices SET
			state = ?, release = ?, sequence = ?, path = ?, reason = ?, event_id = ?,
			status_seq = ?, status_time = max(status_time, ?),
			slot = CASE WHEN ? <> '' THEN ? ELSE slot END,
			installed = CASE WHEN ? <> '' THEN ? ELSE installed END,
			agent_version = CASE WHEN ? <> '' THEN ? ELSE agent_version END
			WHERE id = ?`,
			string(st.State), st.Release, int64(st.Sequence), st.Path, st.Reason, st.EventID,
			seq, st.Time, st.Slot, st.Slot, st.Installed, st.Installed, st.AgentVersion, st.AgentVersion, st.Device)
		if err != nil || !finalState(st.State) || st.Retrying() {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE devices SET outcome_state = ?, outcome_release = ?, outcome_reason = ?,
			outcome_event = ? WHERE id = ?`, string(st.State), st.Release, st.Reason, st.EventID, st.Device)
		return err
	}()
	if err != nil {
		return false, fmt.Errorf("store: ingest status %s: %w", st.EventID, err)
	}
	return fresh, nil
}

// touch creates device id's row if it is new and marks it seen now.
func touch(ctx context.Context, tx *sql.Tx, id string, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO devices (id, first_seen, last_seen) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`, id, now, now)
	return err
}

// SetOnline records a device's online flag.
func (s *Store) SetOnline(ctx context.Context, device string, online bool) error {
	return s.Batch(ctx, func(b *Batch) error { return b.SetOnline(device, online) })
}

// SetOnline is Store.SetOnline in the batch.
func (b *Batch) SetOnline(device string, online bool) error {
	if err := transport.ValidID(device); err != nil {
		return fmt.Errorf("store: online: %w", err)
	}
	if err := touch(b.ctx, b.tx, device, b.now); err != nil {
		return fmt.Errorf("store: online %s: %w", device, err)
	}
	if _, err := b.tx.ExecContext(b.ctx, "UPDATE devices SET online = ? WHERE id = ?", online, device); err != nil {
		return fmt.Errorf("store: online %s: %w", device, err)
	}
	return nil
}

// UpsertInventory records what a device reports about itself.
func (s *Store) UpsertInventory(ctx context.Context, inv Inventory) error {
	return s.Batch(ctx, func(b *Batch) error { return b.UpsertInventory(inv) })
}

// UpsertInventory is Store.UpsertInventory in the batch.
func (b *Batch) UpsertInventory(inv Inventory) error {
	if err := transport.ValidID(inv.Device); err != nil {
		return fmt.Errorf("store: inventory: %w", err)
	}
	ctx, tx := b.ctx, b.tx
	if err := touch(ctx, tx, inv.Device, b.now); err != nil {
		return err
	}
	set := func(col, v string) error {
		if v == "" {
			return nil
		}
		_, err := tx.ExecContext(ctx, "UPDATE devices SET "+col+" = ? WHERE id = ?", v, inv.Device)
		return err
	}
	groups, labels, live := "", "", ""
	if inv.Groups != nil {
		g := slices.Sorted(slices.Values(inv.Groups))
		groups = mustJSON(slices.Compact(g))
	}
	if inv.Labels != nil {
		labels = mustJSON(inv.Labels)
	}
	if inv.LivePatches != nil {
		live = mustJSON(inv.LivePatches)
	}
	if err := errors.Join(set("board", inv.Board), set("arch", inv.Arch), set("kernel", inv.Kernel),
		set("agent_version", inv.AgentVersion), set("installed", inv.Installed), set("slot", inv.Slot),
		set("groups_json", groups), set("labels_json", labels), set("live_json", live)); err != nil {
		return fmt.Errorf("store: inventory %s: %w", inv.Device, err)
	}
	return nil
}

// IngestTelemetry records the inventory facts a telemetry message carries,
// and the report itself (telemetry.go).
func (s *Store) IngestTelemetry(ctx context.Context, t transport.Telemetry) error {
	return s.Batch(ctx, func(b *Batch) error { return b.IngestTelemetry(t) })
}

// IngestTelemetry is Store.IngestTelemetry in the batch.
func (b *Batch) IngestTelemetry(t transport.Telemetry) error {
	if err := t.Check(); err != nil {
		return fmt.Errorf("store: telemetry: %w", err)
	}
	if err := b.UpsertInventory(Inventory{Device: t.Device, AgentVersion: t.AgentVersion, Installed: t.Installed, Slot: t.Slot, Kernel: t.Kernel}); err != nil {
		return err
	}
	return b.recordTelemetry(t)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only strings, slices and maps of strings
	}
	return string(b)
}

// Filter selects devices; empty fields match every device.
type Filter struct {
	Group   string          // reported in this group
	Release string          // installed, or the newest status is about it
	State   transport.State // newest status state
	IDs     []string        // one of these devices
}

const deviceCols = `id, board, arch, kernel, agent_version, groups_json, labels_json, live_json, installed, slot,
	online, state, release, sequence, path, reason, event_id, first_seen, last_seen,
	outcome_state, outcome_release, outcome_reason, outcome_event`

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var (
		d                    Device
		groups, labels, live string
		online               sql.NullBool
		state                string
		seq                  int64
		o                    Outcome
		ostate               string
	)
	err := sc.Scan(&d.ID, &d.Board, &d.Arch, &d.Kernel, &d.AgentVersion, &groups, &labels, &live,
		&d.Installed, &d.Slot, &online, &state, &d.Release, &seq, &d.Path, &d.Reason, &d.EventID,
		&d.FirstSeenMS, &d.LastSeenMS, &ostate, &o.Release, &o.Reason, &o.EventID)
	if err != nil {
		return Device{}, err
	}
	d.State, d.Sequence = transport.State(state), uint64(seq)
	if ostate != "" {
		o.State = transport.State(ostate)
		d.Outcome = &o
	}
	if online.Valid {
		on := online.Bool
		d.Online = &on
	}
	if err := errors.Join(json.Unmarshal([]byte(groups), &d.Groups), json.Unmarshal([]byte(labels), &d.Labels),
		json.Unmarshal([]byte(live), &d.LivePatches)); err != nil {
		return Device{}, fmt.Errorf("device %s: %w", d.ID, err)
	}
	if d.Groups == nil {
		d.Groups = []string{}
	}
	if d.LivePatches == nil {
		d.LivePatches = []string{}
	}
	if len(d.Labels) == 0 {
		d.Labels = nil
	}
	return d, nil
}

// Device returns device id, or ErrNotFound.
func (s *Store) Device(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, "SELECT "+deviceCols+" FROM devices WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("%w: device %q", ErrNotFound, id)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: device %s: %w", id, err)
	}
	return d, nil
}

// Devices returns the devices f selects, sorted by ID.
func (s *Store) Devices(ctx context.Context, f Filter) ([]Device, error) {
	var (
		where []string
		args  []any
	)
	if f.Group != "" {
		where = append(where, "EXISTS (SELECT 1 FROM json_each(groups_json) WHERE value = ?)")
		args = append(args, f.Group)
	}
	if f.Release != "" {
		where = append(where, "(installed = ? OR release = ?)")
		args = append(args, f.Release, f.Release)
	}
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.IDs != nil {
		where = append(where, "id IN (SELECT value FROM json_each(?))")
		args = append(args, mustJSON(f.IDs))
	}
	q := "SELECT " + deviceCols + " FROM devices"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, q+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("store: devices: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// History returns device id's stored status events, oldest first: by the
// device's event counter (events of an older agent without one come
// first, by arrival), so an outbox flushed late still reads in order. At
// most limit (the newest) when limit > 0.
func (s *Store) History(ctx context.Context, device string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT * FROM (
		SELECT event_id, device, seq, device_time, received, state, release, sequence, path, reason, slot, installed
		FROM events WHERE device = ? ORDER BY seq = 0, seq DESC, received DESC LIMIT ?)
		ORDER BY seq = 0 DESC, seq, received`, device, limit)
	if err != nil {
		return nil, fmt.Errorf("store: history %s: %w", device, err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		var (
			e             Event
			seq, sequence int64
			state         string
		)
		if err := rows.Scan(&e.EventID, &e.Device, &seq, &e.DeviceMS, &e.ReceivedMS, &state, &e.Release,
			&sequence, &e.Path, &e.Reason, &e.Slot, &e.Installed); err != nil {
			return nil, fmt.Errorf("store: history %s: %w", device, err)
		}
		e.Seq, e.Sequence, e.State = uint64(seq), uint64(sequence), transport.State(state)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
