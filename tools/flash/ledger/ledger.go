package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Outcomes.
const (
	Provisioned = "provisioned" // every step done and read back
	Failed      = "failed"      // stopped part way; Reason says where and why
	Refused     = "refused"     // not started: the ledger or the device said no
)

// ErrSecondIdentity: the SoC serial is already provisioned under another
// identity (device ID or certificate) and the record is not forced.
var ErrSecondIdentity = errors.New("ledger: SoC serial already provisioned with another identity")

// Record is one provisioning attempt.
type Record struct {
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
	Station    string    `json:"station"`
	Port       string    `json:"port"`
	ID         string    `json:"id"`
	Serial     string    `json:"soc_serial"`
	Board      string    `json:"board"`
	MAC        string    `json:"mac"`
	CertSHA256 string    `json:"cert_sha256"`
	Release    string    `json:"release"`
	Outcome    string    `json:"outcome"`
	Reason     string    `json:"reason"`
	Forced     bool      `json:"forced"`
}

// Fields are the column names in order, for CSV.
var Fields = []string{"seq", "time", "station", "port", "id", "soc_serial", "board", "mac", "cert_sha256", "release", "outcome", "reason", "forced"}

// Strings returns r's fields in the order of Fields.
func (r Record) Strings() []string {
	return []string{fmt.Sprint(r.Seq), r.Time.UTC().Format(time.RFC3339Nano), r.Station, r.Port, r.ID, r.Serial, r.Board, r.MAC,
		r.CertSHA256, r.Release, r.Outcome, r.Reason, fmt.Sprint(r.Forced)}
}

const schema = `
CREATE TABLE IF NOT EXISTS records (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	time        TEXT NOT NULL,
	station     TEXT NOT NULL,
	port        TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	soc_serial  TEXT NOT NULL,
	board       TEXT NOT NULL,
	mac         TEXT NOT NULL,
	cert_sha256 TEXT NOT NULL,
	release     TEXT NOT NULL,
	outcome     TEXT NOT NULL CHECK (outcome IN ('provisioned', 'failed', 'refused')),
	reason      TEXT NOT NULL,
	forced      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_serial ON records (soc_serial, outcome);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
`

// Ledger is an open ledger database. It is safe for concurrent use, and
// several stations may share one file (SQLite's locking, a busy timeout).
type Ledger struct {
	db *sql.DB
}

// Open opens (creating if needed) the ledger at path.
func Open(path string) (*Ledger, error) {
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: %s: %w", path, err)
	}
	return &Ledger{db: db}, nil
}

// Close closes the database.
func (l *Ledger) Close() error { return l.db.Close() }

// Identity returns the latest provisioned record of serial, if any.
func (l *Ledger) Identity(ctx context.Context, serial string) (Record, bool, error) {
	rs, err := l.query(ctx, l.db, `WHERE soc_serial = ? AND outcome = 'provisioned' ORDER BY seq DESC LIMIT 1`, serial)
	if err != nil || len(rs) == 0 {
		return Record{}, false, err
	}
	return rs[0], true, nil
}

// Append adds r (Seq and, when zero, Time are set here). A provisioned
// record for a serial already provisioned with another device ID or
// certificate is refused with ErrSecondIdentity unless r.Forced; one with
// the same identity is not added twice (added=false).
func (l *Ledger) Append(ctx context.Context, r Record) (added bool, err error) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("ledger: %w", err)
	}
	defer tx.Rollback()
	if r.Outcome == Provisioned {
		prev, err := l.query(ctx, tx, `WHERE soc_serial = ? AND outcome = 'provisioned' ORDER BY seq DESC LIMIT 1`, r.Serial)
		if err != nil {
			return false, err
		}
		if len(prev) == 1 {
			p := prev[0]
			if p.ID == r.ID && p.CertSHA256 == r.CertSHA256 {
				return false, nil
			}
			if !r.Forced {
				return false, fmt.Errorf("%w: %s is %s (certificate %.16s…, recorded %s by %s)", ErrSecondIdentity, r.Serial, p.ID, p.CertSHA256, p.Time.Format(time.RFC3339), p.Station)
			}
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO records (time, station, port, device_id, soc_serial, board, mac, cert_sha256, release, outcome, reason, forced)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Time.UTC().Format(time.RFC3339Nano), r.Station, r.Port, r.ID, r.Serial, r.Board, r.MAC, r.CertSHA256, r.Release, r.Outcome, r.Reason, r.Forced)
	if err != nil {
		return false, fmt.Errorf("ledger: append: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("ledger: append: %w", err)
	}
	return true, nil
}

// List returns every record, oldest first.
func (l *Ledger) List(ctx context.Context) ([]Record, error) {
	return l.query(ctx, l.db, `ORDER BY seq`)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (l *Ledger) query(ctx context.Context, q querier, where string, args ...any) ([]Record, error) {
	rows, err := q.QueryContext(ctx, `SELECT seq, time, station, port, device_id, soc_serial, board, mac, cert_sha256, release, outcome, reason, forced FROM records `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var t string
		if err := rows.Scan(&r.Seq, &t, &r.Station, &r.Port, &r.ID, &r.Serial, &r.Board, &r.MAC, &r.CertSHA256, &r.Release, &r.Outcome, &r.Reason, &r.Forced); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		if r.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
			return nil, fmt.Errorf("ledger: record %d: time %q: %w", r.Seq, t, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return out, nil
}

// DB exposes the database to tests that check the append-only triggers.
func (l *Ledger) DB() *sql.DB { return l.db }
