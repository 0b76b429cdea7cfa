package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/graft-dev/graft/transport"
)

// Telemetry retention: raw samples for RawKeep, then one average per
// device and hour for HourlyKeep, then one per device and day for the
// store's retention.
const (
	RawKeep    = 48 * time.Hour
	HourlyKeep = 30 * 24 * time.Hour
)

// telemetrySchema holds the telemetry tables. They are created apart from
// the versioned migrations (IF NOT EXISTS, so any schema version gets
// them), and every column is a plain figure so that downsampling is one
// GROUP BY.
const telemetrySchema = `
CREATE TABLE IF NOT EXISTS telemetry_latest (
	device      TEXT PRIMARY KEY,
	seq         INTEGER NOT NULL DEFAULT 0,
	received    INTEGER NOT NULL,
	report_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry_samples (
	device     TEXT NOT NULL,
	seq        INTEGER NOT NULL DEFAULT 0,
	received   INTEGER NOT NULL,
	uptime     INTEGER NOT NULL DEFAULT 0,
	load1      REAL,
	mem_avail  REAL,
	temp       REAL,
	agent_rss  REAL,
	disk_free  REAL
);
CREATE INDEX IF NOT EXISTS telemetry_samples_by_device ON telemetry_samples (device, seq, received);
CREATE INDEX IF NOT EXISTS telemetry_samples_by_received ON telemetry_samples (received);
CREATE TABLE IF NOT EXISTS telemetry_rollup (
	device    TEXT NOT NULL,
	span      INTEGER NOT NULL,  -- 3600000 (hour) or 86400000 (day)
	start     INTEGER NOT NULL,  -- fleet clock, ms, a multiple of span
	n         INTEGER NOT NULL,  -- samples averaged
	load1     REAL, mem_avail REAL, temp REAL, agent_rss REAL, disk_free REAL,
	PRIMARY KEY (device, span, start)
);`

const (
	hourMS = int64(time.Hour / time.Millisecond)
	dayMS  = 24 * hourMS
)

func (s *Store) migrateTelemetry(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, telemetrySchema); err != nil {
		return fmt.Errorf("telemetry tables: %w", err)
	}
	return nil
}

// Sample is one stored figure set of a device: a raw report, or an hour's
// or a day's average. Nil: not reported.
type Sample struct {
	Device     string   `json:"device"`
	Seq        uint64   `json:"seq,omitempty"`
	ReceivedMS int64    `json:"received_ms"` // start of the span for averages
	SpanMS     int64    `json:"span_ms"`     // 0 raw, else the averaged span
	N          int64    `json:"n"`           // samples behind it
	Load1      *float64 `json:"load1,omitempty"`
	MemAvail   *float64 `json:"mem_available_bytes,omitempty"`
	TempC      *float64 `json:"temperature_celsius,omitempty"` // hottest zone
	AgentRSS   *float64 `json:"agent_rss_bytes,omitempty"`
	DiskFree   *float64 `json:"disk_free_bytes,omitempty"` // the first space (the data dir)
}

// Figures reduces a report to the figures kept over time.
func Figures(t transport.Telemetry) Sample {
	f := Sample{Device: t.Device, Seq: t.Seq, N: 1}
	num := func(v float64) *float64 { return &v }
	if len(t.Load) > 0 {
		f.Load1 = num(float64(t.Load[0]) / 100)
	}
	if t.MemTotal > 0 {
		f.MemAvail = num(float64(t.MemAvailable))
	}
	for _, z := range t.Thermal {
		if c := float64(z.Milli) / 1000; f.TempC == nil || c > *f.TempC {
			f.TempC = num(c)
		}
	}
	if t.AgentRSS > 0 {
		f.AgentRSS = num(float64(t.AgentRSS))
	}
	for _, d := range t.Disks {
		if d.Free > 0 || d.Total > 0 {
			f.DiskFree = num(float64(d.Free))
			break
		}
	}
	return f
}

// recordTelemetry keeps t as a sample and, unless the device already
// sent a later one (by its event counter, the one statuses carry; by
// arrival when either report has none), as its latest report.
func (b *Batch) recordTelemetry(t transport.Telemetry) error {
	report, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("store: telemetry: %w", err)
	}
	f := Figures(t)
	if _, err := b.tx.ExecContext(b.ctx, `INSERT INTO telemetry_samples
		(device, seq, received, uptime, load1, mem_avail, temp, agent_rss, disk_free) VALUES (?,?,?,?,?,?,?,?,?)`,
		t.Device, int64(t.Seq), b.now, t.Uptime, f.Load1, f.MemAvail, f.TempC, f.AgentRSS, f.DiskFree); err != nil {
		return fmt.Errorf("store: telemetry sample: %w", err)
	}
	_, err = b.tx.ExecContext(b.ctx, `INSERT INTO telemetry_latest (device, seq, received, report_json) VALUES (?,?,?,?)
		ON CONFLICT (device) DO UPDATE SET seq = excluded.seq, received = excluded.received, report_json = excluded.report_json
		WHERE excluded.seq = 0 OR telemetry_latest.seq = 0 OR excluded.seq > telemetry_latest.seq`,
		t.Device, int64(t.Seq), b.now, string(report))
	if err != nil {
		return fmt.Errorf("store: telemetry latest: %w", err)
	}
	return nil
}

// Latest is a device's newest report and when it came (fleet clock).
type Latest struct {
	Report     transport.Telemetry
	ReceivedMS int64
}

// LatestTelemetry returns every device's newest report, by device.
func (s *Store) LatestTelemetry(ctx context.Context) (map[string]Latest, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT device, received, report_json FROM telemetry_latest")
	if err != nil {
		if s.readOnly && isNoTable(err) {
			return map[string]Latest{}, nil // a database serve has not opened since telemetry came
		}
		return nil, fmt.Errorf("store: latest telemetry: %w", err)
	}
	defer rows.Close()
	out := map[string]Latest{}
	for rows.Next() {
		var (
			dev, report string
			l           Latest
		)
		if err := rows.Scan(&dev, &l.ReceivedMS, &report); err != nil {
			return nil, fmt.Errorf("store: latest telemetry: %w", err)
		}
		if err := json.Unmarshal([]byte(report), &l.Report); err != nil {
			return nil, fmt.Errorf("store: latest telemetry of %s: %w", dev, err)
		}
		out[dev] = l
	}
	return out, rows.Err()
}

func isNoTable(err error) bool {
	var e interface{ Code() int }
	return errors.As(err, &e) && e.Code() == 1 // SQLITE_ERROR: "no such table"
}

// TelemetryHistory returns a device's samples since sinceMS (fleet clock),
// oldest first: the raw ones in the device's order (its counter), then
// the averages that replaced older ones, by span start.
func (s *Store) TelemetryHistory(ctx context.Context, device string, sinceMS int64) ([]Sample, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT device, 0, start, span, n, load1, mem_avail, temp, agent_rss, disk_free, 0 AS raw, start AS o1, 0 AS o2
			FROM telemetry_rollup WHERE device = ? AND start + span > ?
		UNION ALL
		SELECT device, seq, received, 0, 1, load1, mem_avail, temp, agent_rss, disk_free, 1, seq, received
			FROM telemetry_samples WHERE device = ? AND received >= ?
		ORDER BY raw, o1, o2`, device, sinceMS, device, sinceMS)
	if err != nil {
		return nil, fmt.Errorf("store: telemetry history: %w", err)
	}
	defer rows.Close()
	var out []Sample
	for rows.Next() {
		var (
			x   Sample
			seq int64
			raw int
			o1  int64
			o2  int64
		)
		if err := rows.Scan(&x.Device, &seq, &x.ReceivedMS, &x.SpanMS, &x.N, &x.Load1, &x.MemAvail, &x.TempC, &x.AgentRSS, &x.DiskFree, &raw, &o1, &o2); err != nil {
			return nil, fmt.Errorf("store: telemetry history: %w", err)
		}
		x.Seq = uint64(seq)
		out = append(out, x)
	}
	return out, rows.Err()
}

// DownsampleTelemetry averages raw samples older than RawKeep per device
// and hour, hourly averages older than HourlyKeep per device and day, and
// deletes daily averages past the store's retention. It returns how many
// rows it folded or deleted.
func (s *Store) DownsampleTelemetry(ctx context.Context) (int64, error) {
	now := s.now().UnixMilli()
	var total int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		// Raw → hours. An hour already averaged (samples that arrived
		// late) merges, weighted by its count.
		cut := (now - RawKeep.Milliseconds()) / hourMS * hourMS
		n, err := fold(ctx, tx, hourMS, `SELECT device, received / ? * ? AS start, COUNT(*) AS n,
			AVG(load1) AS load1, AVG(mem_avail) AS mem_avail, AVG(temp) AS temp, AVG(agent_rss) AS agent_rss, AVG(disk_free) AS disk_free
			FROM telemetry_samples WHERE received < ? GROUP BY 1, 2`, hourMS, hourMS, cut)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM telemetry_samples WHERE received < ?", cut); err != nil {
			return err
		}
		total += n
		// Hours → days.
		cut = (now - HourlyKeep.Milliseconds()) / dayMS * dayMS
		n, err = fold(ctx, tx, dayMS, `SELECT device, start / ? * ? AS start, SUM(n) AS n,
			SUM(load1 * n) / SUM(n), SUM(mem_avail * n) / SUM(n), SUM(temp * n) / SUM(n), SUM(agent_rss * n) / SUM(n), SUM(disk_free * n) / SUM(n)
			FROM telemetry_rollup WHERE span = ? AND start < ? GROUP BY 1, 2`, dayMS, dayMS, hourMS, cut)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM telemetry_rollup WHERE span = ? AND start < ?", hourMS, cut); err != nil {
			return err
		}
		total += n
		if s.retention >= 0 {
			res, err := tx.ExecContext(ctx, "DELETE FROM telemetry_rollup WHERE span = ? AND start + span < ?", dayMS, now-s.retention.Milliseconds())
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			total += d
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: downsample telemetry: %w", err)
	}
	return total, nil
}

// fold inserts the averages a SELECT yields (device, start, n, then the
// five figures) as rollup rows of span, merging with a row already there.
// The averages of a figure nobody reported stay NULL.
func fold(ctx context.Context, tx *sql.Tx, span int64, sel string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO telemetry_rollup (device, start, n, load1, mem_avail, temp, agent_rss, disk_free, span)
		SELECT *, ? FROM (`+sel+`) WHERE true
		ON CONFLICT (device, span, start) DO UPDATE SET
			load1 = (COALESCE(load1 * n, 0) + COALESCE(excluded.load1 * excluded.n, 0)) / (n + excluded.n),
			mem_avail = (COALESCE(mem_avail * n, 0) + COALESCE(excluded.mem_avail * excluded.n, 0)) / (n + excluded.n),
			temp = (COALESCE(temp * n, 0) + COALESCE(excluded.temp * excluded.n, 0)) / (n + excluded.n),
			agent_rss = (COALESCE(agent_rss * n, 0) + COALESCE(excluded.agent_rss * excluded.n, 0)) / (n + excluded.n),
			disk_free = (COALESCE(disk_free * n, 0) + COALESCE(excluded.disk_free * excluded.n, 0)) / (n + excluded.n),
			n = n + excluded.n`, append([]any{span}, args...)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// FailureCount is how many stored events ended in State with Reason.
type FailureCount struct {
	State  transport.State
	Reason string
	N      int
}

// Failures counts the failed and rolled-back events in the retained
// history, by state and reason.
func (s *Store) Failures(ctx context.Context) ([]FailureCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, reason, COUNT(*) FROM events
		WHERE state IN (?, ?) GROUP BY state, reason`, string(transport.StateFailed), string(transport.StateRolledBack))
	if err != nil {
		return nil, fmt.Errorf("store: failures: %w", err)
	}
	defer rows.Close()
	var out []FailureCount
	for rows.Next() {
		var f FailureCount
		var st string
		if err := rows.Scan(&st, &f.Reason, &f.N); err != nil {
			return nil, fmt.Errorf("store: failures: %w", err)
		}
		f.State = transport.State(st)
		out = append(out, f)
	}
	return out, rows.Err()
}

// WithTelemetry fills in each device's latest report.
func (s *Store) WithTelemetry(ctx context.Context, devs []Device) error {
	latest, err := s.LatestTelemetry(ctx)
	if err != nil {
		return err
	}
	for i := range devs {
		if l, ok := latest[devs[i].ID]; ok {
			devs[i].Telemetry, devs[i].TelemetryMS = &l.Report, l.ReceivedMS
		}
	}
	return nil
}

// Duration is how long one update took, by the fleet's clock: from the
// first status of its attempt (downloading, installing, ...) to its final
// one.
type Duration struct {
	Path    string // ab or live, as the final status says
	State   transport.State
	Seconds float64
}

// UpdateDurations returns the durations of the updates in the retained
// history that ended committed, rolled back or failed. Events are paired
// in arrival order (rowid), so two within one millisecond still pair
// right.
func (s *Store) UpdateDurations(ctx context.Context) ([]Duration, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT f.path, f.state, f.received - (
			SELECT MIN(b.received) FROM events b
			WHERE b.device = f.device AND b.release = f.release AND b.rowid < f.rowid
			  AND b.state IN ('downloading', 'installing', 'rebooting', 'verifying')
			  AND NOT EXISTS (SELECT 1 FROM events p WHERE p.device = f.device AND p.release = f.release
			      AND p.state IN ('committed', 'rolled-back', 'failed') AND p.rowid < f.rowid AND p.rowid > b.rowid))
		FROM events f WHERE f.state IN ('committed', 'rolled-back', 'failed') AND f.release != ''`)
	if err != nil {
		return nil, fmt.Errorf("store: update durations: %w", err)
	}
	defer rows.Close()
	var out []Duration
	for rows.Next() {
		var (
			d  Duration
			st string
			ms sql.NullInt64
		)
		if err := rows.Scan(&d.Path, &st, &ms); err != nil {
			return nil, fmt.Errorf("store: update durations: %w", err)
		}
		if !ms.Valid { // no start kept (pruned, or a refusal before any step)
			continue
		}
		d.State, d.Seconds = transport.State(st), float64(ms.Int64)/1000
		out = append(out, d)
	}
	return out, rows.Err()
}
