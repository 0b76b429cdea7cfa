package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

func report(dev string, seq uint64, tempMilli int64, load uint64) transport.Telemetry {
	return transport.Telemetry{Device: dev, Seq: seq, Uptime: int64(seq), Load: []uint64{load, 0, 0},
		Thermal: []transport.Zone{{Name: "a", Milli: tempMilli - 5000}, {Name: "cpu", Milli: tempMilli}},
		Kernel:  "6.1.0", MemTotal: 100, MemAvailable: 50, Slot: "A", Installed: "v1"}
}

// The latest report is the one with the highest event counter, whatever
// the arrival order; every report is kept as a sample.
func TestTelemetryLatestBySeq(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	s := open(t, filepath.Join(t.TempDir(), "fleet.db"), c, store.Options{})
	for _, seq := range []uint64{5, 9, 7} {
		c.t = c.t.Add(time.Second)
		if err := s.IngestTelemetry(ctx, report("d1", seq, 40000+int64(seq)*1000, 100)); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := s.LatestTelemetry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := latest["d1"]; l.Report.Seq != 9 || l.Report.Kernel != "6.1.0" {
		t.Fatalf("latest %+v", l)
	}
	d, err := s.Device(ctx, "d1")
	if err != nil || d.Kernel != "6.1.0" || d.Installed != "v1" {
		t.Fatalf("inventory %+v %v", d, err)
	}
	h, err := s.TelemetryHistory(ctx, "d1", 0)
	if err != nil || len(h) != 3 || h[0].Seq != 5 || h[1].Seq != 7 || h[2].Seq != 9 || *h[2].TempC != 49 || *h[2].Load1 != 1 {
		t.Fatalf("history %+v %v", h, err)
	}
	// Bad input changes nothing.
	if err := s.IngestTelemetry(ctx, transport.Telemetry{Device: "d1", AgentRSS: -1}); err == nil {
		t.Fatal("a malformed report was stored")
	}
	if h2, _ := s.TelemetryHistory(ctx, "d1", 0); len(h2) != 3 {
		t.Fatalf("after bad input: %d samples", len(h2))
	}
}

// Old samples become hourly averages, old hours daily ones, and days past
// retention go.
func TestTelemetryDownsample(t *testing.T) {
	ctx := context.Background()
	start := time.UnixMilli(1_700_000_000_000).Truncate(24 * time.Hour)
	c := &clock{t: start}
	s := open(t, filepath.Join(t.TempDir(), "fleet.db"), c, store.Options{Retention: 60 * 24 * time.Hour})
	// Two devices, a sample every 20 minutes for 3 days.
	var seq uint64
	for c.t.Before(start.Add(72 * time.Hour)) {
		seq++
		for _, dev := range []string{"d1", "d2"} {
			if err := s.IngestTelemetry(ctx, report(dev, seq, 40000+int64(seq%3)*3000, 100)); err != nil {
				t.Fatal(err)
			}
		}
		c.t = c.t.Add(20 * time.Minute)
	}
	if _, err := s.DownsampleTelemetry(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := s.TelemetryHistory(ctx, "d1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var hours, raw int
	for _, x := range h {
		switch x.SpanMS {
		case 0:
			raw++
		case int64(time.Hour / time.Millisecond):
			hours++
			// three samples an hour: 40, 43, 46 °C in some order
			if x.N != 3 || *x.TempC != 43 || *x.Load1 != 1 {
				t.Fatalf("hourly %+v temp %v", x, *x.TempC)
			}
		}
	}
	if hours != 24 || raw != 48*3 {
		t.Fatalf("%d hourly, %d raw; want 24 and 144", hours, raw)
	}
	// 40 days later: the hours are days, and a later pass past the
	// retention leaves nothing.
	c.t = c.t.Add(40 * 24 * time.Hour)
	if _, err := s.DownsampleTelemetry(ctx); err != nil {
		t.Fatal(err)
	}
	h, _ = s.TelemetryHistory(ctx, "d1", 0)
	if len(h) != 3 || h[0].SpanMS != 24*3600*1000 || h[0].N != 72 || *h[0].TempC != 43 {
		t.Fatalf("daily %+v", h)
	}
	c.t = c.t.Add(60 * 24 * time.Hour)
	if _, err := s.DownsampleTelemetry(ctx); err != nil {
		t.Fatal(err)
	}
	if h, _ = s.TelemetryHistory(ctx, "d1", 0); len(h) != 0 {
		t.Fatalf("past retention: %+v", h)
	}
}

// BenchmarkIngestTelemetry: reports stored per second by one writer (the
// sample, the latest report and the inventory, one transaction each).
func BenchmarkIngestTelemetry(b *testing.B) {
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(b.TempDir(), "fleet.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	devs := make([]string, 1000)
	for i := range devs {
		devs[i] = "dev-" + strconv.Itoa(i)
	}
	var seq uint64
	for b.Loop() {
		seq++
		if err := s.IngestTelemetry(ctx, report(devs[seq%uint64(len(devs))], seq, 45000, 20)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
}

func TestUpdateDurations(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	s := open(t, filepath.Join(t.TempDir(), "fleet.db"), c, store.Options{})
	var seq uint64
	emit := func(dev string, st transport.State, release, path string, after time.Duration) {
		t.Helper()
		c.t = c.t.Add(after)
		seq++
		if _, err := s.IngestStatus(ctx, transport.Status{EventID: fmt.Sprint("e", seq), Device: dev, Seq: seq, State: st, Release: release, Path: path}); err != nil {
			t.Fatal(err)
		}
	}
	emit("d1", transport.StateDownloading, "v2", "ab", 0)
	emit("d1", transport.StateRebooting, "v2", "ab", 30*time.Second)
	emit("d1", transport.StateCommitted, "v2", "ab", 60*time.Second) // 90 s
	emit("d2", transport.StateInstalling, "v3", "live", time.Hour)
	emit("d2", transport.StateFailed, "v3", "live", 2*time.Second)    // 2 s
	emit("d2", transport.StateInstalling, "v3", "live", time.Hour)    // tried again for another notice
	emit("d2", transport.StateCommitted, "v3", "live", 3*time.Second) // 3 s, not 1 h
	emit("d3", transport.StateRefused, "v2", "", 0)
	ds, err := s.UpdateDurations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, d := range ds {
		got[d.Path+" "+string(d.State)] = d.Seconds
	}
	want := map[string]float64{"ab committed": 90, "live failed": 2, "live committed": 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("durations %v, want %v", got, want)
	}
}
