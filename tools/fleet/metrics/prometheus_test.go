package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/tuf/repo"
)

// prometheusPath is where Debian's prometheus package installs the server.
const prometheusPath = "/usr/bin/prometheus"

// Agents on the simulated board phone home to graft-fleet serve; a real
// Prometheus scrapes serve's /metrics; PromQL through its HTTP API sees
// the fleet's device count and one device's health figures.
func TestPrometheusScrapesServe(t *testing.T) {
	if _, err := os.Stat(prometheusPath); err != nil {
		t.Skipf("prometheus not installed (cross/debian-deps.sh): %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dbPath := filepath.Join(t.TempDir(), "fleet.db")
	db, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := serve.Start(ctx, serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(),
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: db,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	r := agenttest.NewRepo(t, repo.Options{})
	ids := []string{"dev-1", "dev-2", "dev-3"}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, id := range ids {
		dev := agenttest.NewDevice(t, r, id, agenttest.DeviceOptions{Broker: srv.MQTTURL(), Checks: []string{"broker"}})
		cfg, err := config.Load(dev.Config)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := dev.Board.Run(ctx, 1, func(ctx context.Context, _ string) (int, error) {
				return 0, daemon.Run(ctx, cfg, slog.New(slog.DiscardHandler), daemon.Hooks{})
			})
			if err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", id, err)
			}
		}()
	}
	// Every agent reports at once on start.
	var latest map[string]store.Latest
	waitUntil(t, 60*time.Second, func() bool {
		latest, err = db.LatestTelemetry(ctx)
		return err == nil && len(latest) == len(ids)
	}, "telemetry from every agent in the fleet's database")
	rep := latest["dev-2"].Report
	if rep.AgentRSS <= 0 || rep.Uptime <= 0 || rep.MemTotal <= 0 || len(rep.Disks) == 0 || rep.Seq == 0 || rep.BootCount != 1 || rep.Kernel == "" {
		t.Fatalf("dev-2's report lacks figures: %+v", rep)
	}

	prom := startPrometheus(t, strings.TrimPrefix(srv.HTTPURL(), "http://"))
	waitUntil(t, 60*time.Second, func() bool {
		v, err := prom.query(ctx, "sum(graft_devices)")
		return err == nil && v == float64(len(ids))
	}, "PromQL sum(graft_devices) = 3")
	var got float64
	waitUntil(t, 30*time.Second, func() bool {
		got, err = prom.query(ctx, `graft_device_memory_available_bytes{device="dev-2"}`)
		return err == nil
	}, "dev-2's available memory through PromQL")
	// The figure of one of dev-2's reports (it reports again later; any
	// of its reports is a machine's available memory).
	if got <= 0 || got > float64(rep.MemTotal) {
		t.Fatalf("dev-2 available memory %v, total %d", got, rep.MemTotal)
	}
	if len(rep.Thermal) > 0 {
		temp, err := prom.query(ctx, `graft_device_temperature_celsius{device="dev-2"}`)
		if err != nil || temp < -50 || temp > 150 {
			t.Fatalf("dev-2 temperature %v, %v", temp, err)
		}
		t.Logf("dev-2 temperature %.1f C", temp)
	} else {
		t.Log("no thermal zones on this host: the temperature series is absent, as documented")
	}
	if v, err := prom.query(ctx, `count(graft_device_uptime_seconds)`); err != nil || v != float64(len(ids)) {
		t.Fatalf("per-device series for %v devices, %v", v, err)
	}
	// The broker (serve) goes away: the fleet's view of every device and
	// its latest report is still whole, from the database, as
	// `graft-fleet devices` reads it.
	srv.Close()
	ro, err := store.Open(ctx, dbPath, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	devs, err := ro.Devices(ctx, store.Filter{})
	if err == nil {
		err = ro.WithTelemetry(ctx, devs)
	}
	if err != nil || len(devs) != len(ids) {
		t.Fatalf("devices after serve stopped: %d, %v", len(devs), err)
	}
	for _, d := range devs {
		if d.Telemetry == nil || d.Telemetry.AgentRSS <= 0 || d.Kernel == "" || d.Slot == "" {
			t.Errorf("%s after serve stopped: %+v", d.ID, d)
		}
	}
	// Every query of the Grafana dashboard in docs/ is PromQL this
	// Prometheus accepts.
	for _, q := range dashboardExprs(t) {
		q = strings.NewReplacer("$device", ".*", "$rollout", ".*").Replace(q)
		if _, err := prom.query(ctx, q); err != nil && !errors.Is(err, errNoSample) {
			t.Errorf("dashboard query %s: %v", q, err)
		}
	}
}

func waitUntil(t *testing.T, d time.Duration, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type promServer struct{ base string }

// startPrometheus runs a Prometheus server on 127.0.0.1 that scrapes
// target's /metrics every second, and stops it (by its PID) when the test
// ends.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: graft-fleet
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(prometheusPath, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	p := &promServer{base: "http://" + addr}
	waitUntil(t, 30*time.Second, func() bool {
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "prometheus ready")
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var errNoSample = errors.New("no sample")

// query runs an instant PromQL query that must give one sample.
func (p *promServer) query(ctx context.Context, q string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if body.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", q, body.Error)
	}
	if len(body.Data.Result) != 1 || len(body.Data.Result[0].Value) < 2 {
		return 0, fmt.Errorf("%w: %s gave %d samples", errNoSample, q, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}
