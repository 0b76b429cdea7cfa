package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Rollout is a stored rollout. Spec is the rollout's parameters as
// tools/fleet/rollout encodes them; the store keeps it opaque.
type Rollout struct {
	ID            string          `json:"id"`
	Release       string          `json:"release"`
	Manifest      string          `json:"manifest"`
	Sequence      uint64          `json:"sequence,omitempty"`
	Target        string          `json:"target"`
	Spec          json.RawMessage `json:"spec"`
	State         string          `json:"state"`
	Reason        string          `json:"reason,omitempty"` // why it paused, aborted or finished
	Wave          int             `json:"wave"`             // the wave in progress, from 0
	WaveStartedMS int64           `json:"wave_started_ms,omitempty"`
	CreatedMS     int64           `json:"created_ms"`
	UpdatedMS     int64           `json:"updated_ms"`
}

// Member is one device's place and progress in a rollout.
type Member struct {
	Device     string `json:"device"`
	Wave       int    `json:"wave"`
	Outcome    string `json:"outcome"` // pending until notified; see tools/fleet/rollout
	NoticeID   string `json:"notice_id,omitempty"`
	NotifiedMS int64  `json:"notified_ms,omitempty"`
	FinishedMS int64  `json:"finished_ms,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// CreateRollout stores r (CreatedMS and UpdatedMS set now) with its
// members; ErrExists if its ID is taken.
func (s *Store) CreateRollout(ctx context.Context, r Rollout, members []Member) (Rollout, error) {
	now := s.now().UnixMilli()
	r.CreatedMS, r.UpdatedMS = now, now
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO rollouts
			(id, release, manifest, sequence, target, spec_json, state, reason, wave, wave_started, created, updated)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.ID, r.Release, r.Manifest, int64(r.Sequence), r.Target, string(r.Spec), r.State, r.Reason,
			r.Wave, r.WaveStartedMS, r.CreatedMS, r.UpdatedMS)
		if err != nil {
			// The existence check, not the driver's error text, says why.
			var n int
			if tx.QueryRowContext(ctx, "SELECT count(*) FROM rollouts WHERE id = ?", r.ID).Scan(&n) == nil && n > 0 {
				return fmt.Errorf("%w: rollout %q", ErrExists, r.ID)
			}
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO rollout_devices (rollout, device, wave, outcome) VALUES (?,?,?,?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, m := range members {
			if _, err := stmt.ExecContext(ctx, r.ID, m.Device, m.Wave, m.Outcome); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Rollout{}, fmt.Errorf("store: create rollout: %w", err)
	}
	return r, nil
}

const rolloutCols = "id, release, manifest, sequence, target, spec_json, state, reason, wave, wave_started, created, updated"

func scanRollout(sc interface{ Scan(...any) error }) (Rollout, error) {
	var (
		r    Rollout
		seq  int64
		spec string
	)
	err := sc.Scan(&r.ID, &r.Release, &r.Manifest, &seq, &r.Target, &spec, &r.State, &r.Reason, &r.Wave,
		&r.WaveStartedMS, &r.CreatedMS, &r.UpdatedMS)
	r.Sequence, r.Spec = uint64(seq), json.RawMessage(spec)
	return r, err
}

// Rollout returns rollout id, or ErrNotFound.
func (s *Store) Rollout(ctx context.Context, id string) (Rollout, error) {
	r, err := scanRollout(s.db.QueryRowContext(ctx, "SELECT "+rolloutCols+" FROM rollouts WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Rollout{}, fmt.Errorf("%w: rollout %q", ErrNotFound, id)
	}
	if err != nil {
		return Rollout{}, fmt.Errorf("store: rollout %s: %w", id, err)
	}
	return r, nil
}

// Rollouts returns every rollout, oldest first.
func (s *Store) Rollouts(ctx context.Context) ([]Rollout, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+rolloutCols+" FROM rollouts ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("store: rollouts: %w", err)
	}
	defer rows.Close()
	out := []Rollout{}
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, fmt.Errorf("store: rollouts: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// UpdateRollout writes r's state, reason, wave and wave start.
func (s *Store) UpdateRollout(ctx context.Context, r Rollout) error {
	res, err := s.db.ExecContext(ctx, `UPDATE rollouts SET state = ?, reason = ?, wave = ?, wave_started = ?, updated = ?
		WHERE id = ?`, r.State, r.Reason, r.Wave, r.WaveStartedMS, s.now().UnixMilli(), r.ID)
	if err != nil {
		return fmt.Errorf("store: update rollout %s: %w", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: rollout %q", ErrNotFound, r.ID)
	}
	return nil
}

// Members returns rollout id's devices, by wave then device ID.
func (s *Store) Members(ctx context.Context, id string) ([]Member, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT device, wave, outcome, notice_id, notified, finished, reason
		FROM rollout_devices WHERE rollout = ? ORDER BY wave, device`, id)
	if err != nil {
		return nil, fmt.Errorf("store: members %s: %w", id, err)
	}
	defer rows.Close()
	out := []Member{}
	for rows.Next() {
		var m Member
		if err := rows.Scan(&m.Device, &m.Wave, &m.Outcome, &m.NoticeID, &m.NotifiedMS, &m.FinishedMS, &m.Reason); err != nil {
			return nil, fmt.Errorf("store: members %s: %w", id, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// MarkNotified records that device is being notified in rollout id with
// noticeID, before the notice goes out. It returns false, changing
// nothing, when the device already has a notice in this rollout: a
// controller that restarts re-sends that same notice ID (a device takes
// it as a redelivery), never a new one.
func (s *Store) MarkNotified(ctx context.Context, id, device, outcome, noticeID string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE rollout_devices SET notice_id = ?, notified = ?, outcome = ?
		WHERE rollout = ? AND device = ? AND notice_id = ''`, noticeID, s.now().UnixMilli(), outcome, id, device)
	if err != nil {
		return false, fmt.Errorf("store: mark notified %s/%s: %w", id, device, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// SetOutcome records device's outcome in rollout id; finished marks it
// final (stamped now).
func (s *Store) SetOutcome(ctx context.Context, id, device, outcome, reason string, finished bool) error {
	fin := int64(0)
	if finished {
		fin = s.now().UnixMilli()
	}
	_, err := s.db.ExecContext(ctx, `UPDATE rollout_devices SET outcome = ?, reason = ?, finished = ?
		WHERE rollout = ? AND device = ?`, outcome, reason, fin, id, device)
	if err != nil {
		return fmt.Errorf("store: outcome %s/%s: %w", id, device, err)
	}
	return nil
}

// UpdateRolloutIf writes r's state, reason, wave and wave start only if
// the stored state is still from: the controller and the rollout
// commands never overwrite each other's change (a pause is not undone by
// a controller step that read the rollout before it). It reports
// whether it wrote.
func (s *Store) UpdateRolloutIf(ctx context.Context, r Rollout, from string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE rollouts SET state = ?, reason = ?, wave = ?, wave_started = ?, updated = ?
		WHERE id = ? AND state = ?`, r.State, r.Reason, r.Wave, r.WaveStartedMS, s.now().UnixMilli(), r.ID, from)
	if err != nil {
		return false, fmt.Errorf("store: update rollout %s: %w", r.ID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// RecordOutcome sets the final outcome of device in every rollout of
// release that is running or paused and has notified it and not yet seen
// it finish. It returns how many memberships changed.
func (s *Store) RecordOutcome(ctx context.Context, device, release, outcome, reason string, states ...string) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE rollout_devices SET outcome = ?, reason = ?, finished = ?
		WHERE device = ? AND notice_id <> '' AND finished = 0
		AND rollout IN (SELECT id FROM rollouts WHERE release = ? AND state IN (SELECT value FROM json_each(?)))`,
		outcome, reason, s.now().UnixMilli(), device, release, mustJSON(states))
	if err != nil {
		return 0, fmt.Errorf("store: outcome of %s in %s: %w", device, release, err)
	}
	return res.RowsAffected()
}

// SetSpec replaces rollout id's parameters.
func (s *Store) SetSpec(ctx context.Context, id string, spec json.RawMessage) error {
	res, err := s.db.ExecContext(ctx, "UPDATE rollouts SET spec_json = ?, updated = ? WHERE id = ?", string(spec), s.now().UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("store: spec of %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: rollout %q", ErrNotFound, id)
	}
	return nil
}
