package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/graft-dev/graft/tools/fleet/metrics"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

func TestScrape(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "fleet.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, dev := range []string{"a", "b", "c"} {
		if err := db.IngestTelemetry(ctx, transport.Telemetry{Device: dev, Seq: 1, Installed: "v1", Uptime: 10,
			Thermal: []transport.Zone{{Name: "cpu", Milli: 40000 + int64(i)*1000}}, Health: &transport.Check{OK: i != 2}}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetOnline(ctx, dev, i != 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.IngestStatus(ctx, transport.Status{EventID: "d0", Device: "a", State: transport.StateDownloading, Seq: 1, Release: "v2", Path: "ab"}); err != nil {
		t.Fatal(err)
	}
	for i, reason := range []string{"health check broker failed", "health: exit 1", "booted the old slot: the bootloader fell back"} {
		st := transport.Status{EventID: "e" + string(rune('0'+i)), Device: "a", State: transport.StateRolledBack, Seq: uint64(2 + i), Reason: reason, Release: "v2", Path: "ab"}
		if _, err := db.IngestStatus(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(metrics.Handler(metrics.New(db, 2, nil)))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`graft_update_failures{reason_class="health",state="rolled-back"} 2`,
		`graft_update_failures{reason_class="boot",state="rolled-back"} 1`,
		`graft_device_temperature_celsius{device="a"} 40`,
		`graft_device_temperature_celsius{device="b"} 41`,
		`graft_device_series_capped 1`,
		`graft_device_health_ok{device="a"} 1`,
		`graft_update_duration_seconds_count{outcome="rolled-back",path="ab"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(body, `device="c"`) {
		t.Errorf("device c is past the cap of 2 but has series")
	}
	// every series passes the linter's naming rules
	problems, err := testutil.GatherAndLint(prometheusRegistry(db))
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func TestReasonClass(t *testing.T) {
	for reason, want := range map[string]string{
		"health check tuf: timeout":                metrics.ClassHealth,
		"kernel live patch transition stalled":     metrics.ClassLive,
		"target hash mismatch":                     metrics.ClassVerify,
		"download: http 503":                       metrics.ClassDownload,
		"booted A again: the bootloader fell back": metrics.ClassBoot,
		"write slot: no space left on device":      metrics.ClassSpace,
		"something nobody foresaw":                 metrics.ClassOther,
		"":                                         metrics.ClassOther,
	} {
		if got := metrics.ReasonClass(reason); got != want {
			t.Errorf("%q: %s, want %s", reason, got, want)
		}
	}
}

// BenchmarkScrape10k: one /metrics scrape of a fleet of 10,000 devices
// with telemetry, at the default cap (1,000 devices with series).
func BenchmarkScrape10k(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "fleet.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := range 10000 {
		dev := fmt.Sprintf("dev-%05d", i)
		if err := db.IngestTelemetry(ctx, transport.Telemetry{Device: dev, Seq: 1, Installed: "v1", Uptime: 10, AgentRSS: 5 << 20,
			Load: []uint64{10, 5, 1}, MemTotal: 1 << 30, MemAvailable: 1 << 29,
			Thermal: []transport.Zone{{Name: "cpu", Milli: 40000 + int64(i%20)*1000}}}); err != nil {
			b.Fatal(err)
		}
		if err := db.SetOnline(ctx, dev, i%10 != 0); err != nil {
			b.Fatal(err)
		}
	}
	srv := httptest.NewServer(metrics.Handler(metrics.New(db, 0, nil)))
	defer srv.Close()
	var size int
	for b.Loop() {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		size = int(n)
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// The Grafana dashboard in docs/ asks only for metrics the collector
// exports, in queries Prometheus parses (checked by name here; the
// Prometheus test runs real PromQL).
func TestDashboardNamesExportedMetrics(t *testing.T) {
	dash := readDashboard(t)
	known := map[string]bool{}
	descs := make(chan *prometheus.Desc, 64)
	metrics.New(nil, 0, nil).Describe(descs)
	close(descs)
	for d := range descs {
		if m := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`).FindStringSubmatch(d.String()); m != nil {
			known[m[1]] = true
		}
	}
	if len(known) < 10 {
		t.Fatalf("collector describes %d metrics", len(known))
	}
	var exprs int
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs++
			for _, name := range regexp.MustCompile(`graft_[a-z0-9_]+`).FindAllString(tg.Expr, -1) {
				if !known[name] {
					t.Errorf("panel %q asks for %s, which the collector does not export", p.Title, name)
				}
			}
		}
	}
	if exprs < 10 {
		t.Fatalf("dashboard has %d queries", exprs)
	}
}

type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("../../../docs/grafana/graft-fleet.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func dashboardExprs(t *testing.T) []string {
	var out []string
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}
