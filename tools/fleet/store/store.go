package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SchemaVersion is the version of the schema this package writes.
const SchemaVersion = 2

// DefaultRetention is how long status events are kept unless Options say
// otherwise.
const DefaultRetention = 90 * 24 * time.Hour

// Errors; match them with errors.Is.
var (
	// ErrNotFound: no such device or rollout.
	ErrNotFound = errors.New("store: not found")
	// ErrNewerSchema: the file was written by a newer graft-fleet.
	ErrNewerSchema = errors.New("store: database schema is newer than this graft-fleet")
	// ErrExists: a rollout with that ID already exists.
	ErrExists = errors.New("store: already exists")
)

// Options configure Open.
type Options struct {
	// ReadOnly opens the file for reading only: every command but serve.
	ReadOnly bool
	// Retention is how long status events are kept (Prune); 0 means
	// DefaultRetention, negative keeps them forever.
	Retention time.Duration
	// Now is the fleet's clock; nil means time.Now.
	Now func() time.Time
}

// Store is an open fleet database. Its methods are safe for concurrent
// use; writes are serialised on one connection.
type Store struct {
	db        *sql.DB
	retention time.Duration
	now       func() time.Time
	readOnly  bool
}

// Open opens (creating and migrating it unless read-only) the database
// at path.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	if opts.ReadOnly {
		q.Set("mode", "ro")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if !opts.ReadOnly {
		db.SetMaxOpenConns(1) // one writer
	}
	s := &Store{db: db, retention: opts.Retention, now: opts.Now, readOnly: opts.ReadOnly}
	if s.retention == 0 {
		s.retention = DefaultRetention
	}
	if s.now == nil {
		s.now = time.Now
	}
	err = s.migrate(ctx)
	if err == nil && !opts.ReadOnly {
		err = s.migrateTelemetry(ctx) // telemetry.go: tables of their own
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// migrations[i] takes the schema from version i to i+1.
var migrations = []string{
	`CREATE TABLE devices (
		id            TEXT PRIMARY KEY,
		board         TEXT NOT NULL DEFAULT '',
		arch          TEXT NOT NULL DEFAULT '',
		kernel        TEXT NOT NULL DEFAULT '',
		agent_version TEXT NOT NULL DEFAULT '',
		groups_json   TEXT NOT NULL DEFAULT '[]',
		labels_json   TEXT NOT NULL DEFAULT '{}',
		live_json     TEXT NOT NULL DEFAULT '[]',
		installed     TEXT NOT NULL DEFAULT '',
		slot          TEXT NOT NULL DEFAULT '',
		online        INTEGER,
		state         TEXT NOT NULL DEFAULT '',
		release       TEXT NOT NULL DEFAULT '',
		sequence      INTEGER NOT NULL DEFAULT 0,
		path          TEXT NOT NULL DEFAULT '',
		reason        TEXT NOT NULL DEFAULT '',
		event_id      TEXT NOT NULL DEFAULT '',
		status_seq    INTEGER NOT NULL DEFAULT 0,
		status_time   INTEGER NOT NULL DEFAULT 0,
		first_seen    INTEGER NOT NULL,
		last_seen     INTEGER NOT NULL
	);
	CREATE TABLE events (
		event_id    TEXT PRIMARY KEY,
		device      TEXT NOT NULL,
		seq         INTEGER NOT NULL DEFAULT 0,
		device_time INTEGER NOT NULL DEFAULT 0,
		received    INTEGER NOT NULL,
		state       TEXT NOT NULL,
		release     TEXT NOT NULL DEFAULT '',
		sequence    INTEGER NOT NULL DEFAULT 0,
		path        TEXT NOT NULL DEFAULT '',
		reason      TEXT NOT NULL DEFAULT '',
		slot        TEXT NOT NULL DEFAULT '',
		installed   TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX events_by_device ON events (device, received);
	CREATE INDEX events_by_received ON events (received);
	CREATE TABLE rollouts (
		id        TEXT PRIMARY KEY,
		release   TEXT NOT NULL,
		manifest  TEXT NOT NULL,
		sequence  INTEGER NOT NULL DEFAULT 0,
		target    TEXT NOT NULL,
		spec_json TEXT NOT NULL,
		state     TEXT NOT NULL,
		reason    TEXT NOT NULL DEFAULT '',
		wave      INTEGER NOT NULL DEFAULT 0,
		wave_started INTEGER NOT NULL DEFAULT 0,
		created   INTEGER NOT NULL,
		updated   INTEGER NOT NULL
	);
	CREATE TABLE rollout_devices (
		rollout   TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
		device    TEXT NOT NULL,
		wave      INTEGER NOT NULL,
		outcome   TEXT NOT NULL DEFAULT 'pending',
		notice_id TEXT NOT NULL DEFAULT '',
		notified  INTEGER NOT NULL DEFAULT 0,
		finished  INTEGER NOT NULL DEFAULT 0,
		reason    TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (rollout, device)
	);
	CREATE INDEX rollout_devices_by_device ON rollout_devices (device);`,
	// 2: a device's last final outcome, kept when later statuses (idle)
	// follow it.
	`ALTER TABLE devices ADD COLUMN outcome_state TEXT NOT NULL DEFAULT '';
	ALTER TABLE devices ADD COLUMN outcome_release TEXT NOT NULL DEFAULT '';
	ALTER TABLE devices ADD COLUMN outcome_reason TEXT NOT NULL DEFAULT '';
	ALTER TABLE devices ADD COLUMN outcome_event TEXT NOT NULL DEFAULT '';`,
}

func (s *Store) migrate(ctx context.Context) error {
	var v int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: file has version %d, this build knows up to %d", ErrNewerSchema, v, SchemaVersion)
	}
	if s.readOnly {
		if v < SchemaVersion {
			return fmt.Errorf("%w: schema version %d (serve has not opened it yet)", ErrNotFound, v)
		}
		return nil
	}
	for ; v < SchemaVersion; v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v+1, err)
		}
	}
	return nil
}

// Prune deletes status events received before the retention period and
// returns how many went. Devices and rollouts are kept.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	if s.retention < 0 {
		return 0, nil
	}
	cut := s.now().Add(-s.retention).UnixMilli()
	res, err := s.db.ExecContext(ctx, "DELETE FROM events WHERE received < ?", cut)
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	return res.RowsAffected()
}

// tx runs fn in one transaction.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}
