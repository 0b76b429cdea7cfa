package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/graft-dev/graft/tools/fleet/store"
)

// DefaultDeviceCap is how many devices get per-device series unless told
// otherwise: at 9 series a device, 9,000 series.
const DefaultDeviceCap = 1000

// maxRollouts is how many rollouts (the most recently updated) get
// progress series.
const maxRollouts = 20

// scrapeTimeout bounds the database reads of one scrape.
const scrapeTimeout = 10 * time.Second

// Collector reads the fleet's database at each scrape.
type Collector struct {
	store *store.Store
	cap   int
	log   *slog.Logger
}

// New returns a collector on db with per-device series for at most
// deviceCap devices (DefaultDeviceCap if <= 0).
func New(db *store.Store, deviceCap int, log *slog.Logger) *Collector {
	if deviceCap <= 0 {
		deviceCap = DefaultDeviceCap
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{store: db, cap: deviceCap, log: log}
}

// Handler serves the collector's metrics in the Prometheus formats.
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The metrics, named per Prometheus conventions (base units, _bytes,
// _seconds, _celsius).
var (
	devicesDesc   = desc("graft_devices", "Devices known to the fleet, by online state (true, false, unknown), board, installed release and newest update state.", "online", "board", "release", "state")
	failuresDesc  = desc("graft_update_failures", "Failed and rolled-back updates in the retained history, by state and reason class.", "state", "reason_class")
	rolloutDesc   = desc("graft_rollout_devices", "Devices of a rollout by outcome (the 20 most recently updated rollouts).", "rollout", "release", "outcome")
	capDesc       = desc("graft_device_series_cap", "The most devices that get per-device series.")
	cappedDesc    = desc("graft_device_series_capped", "Devices with telemetry left out of the per-device series by the cap.")
	tempDesc      = desc("graft_device_temperature_celsius", "Hottest thermal zone of the device's latest report.", "device")
	loadDesc      = desc("graft_device_load1", "1-minute load average of the device's latest report.", "device")
	memDesc       = desc("graft_device_memory_available_bytes", "Available memory of the device's latest report.", "device")
	rssDesc       = desc("graft_device_agent_rss_bytes", "The agent's resident set in the device's latest report.", "device")
	diskDesc      = desc("graft_device_disk_free_bytes", "Free space in the device's data directory.", "device")
	uptimeDesc    = desc("graft_device_uptime_seconds", "Uptime of the device's latest report.", "device")
	droppedDesc   = desc("graft_device_telemetry_dropped", "Reports the device's offline queue dropped since its agent started.", "device")
	reconnectDesc = desc("graft_device_mqtt_reconnects", "MQTT reconnects since the device's agent started.", "device")
	reportDesc    = desc("graft_device_last_report_timestamp_seconds", "When the fleet received the device's latest report (fleet clock).", "device")
	durationDesc  = desc("graft_update_duration_seconds", "How long updates in the retained history took, first step to outcome (fleet clock), by path (ab: image, live: live apply) and outcome.", "path", "outcome")
	healthDesc    = desc("graft_device_health_ok", "1 if the device's last health check passed, 0 if it failed (absent: none ran).", "device")
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{devicesDesc, failuresDesc, rolloutDesc, capDesc, cappedDesc, tempDesc, loadDesc,
		memDesc, rssDesc, diskDesc, uptimeDesc, droppedDesc, reconnectDesc, reportDesc, healthDesc, durationDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one read of the database per
// scrape. A part that cannot be read is reported as an invalid metric
// (the scrape says so) and the rest is still served.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	c.devices(ctx, ch)
	c.failures(ctx, ch)
	c.rollouts(ctx, ch)
	c.durations(ctx, ch)
	c.health(ctx, ch)
}

// DurationBuckets are the upper bounds of graft_update_duration_seconds:
// a live apply takes seconds, an image download and reboot minutes.
var DurationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600}

func (c *Collector) durations(ctx context.Context, ch chan<- prometheus.Metric) {
	ds, err := c.store.UpdateDurations(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(durationDesc, err)
		return
	}
	type key struct{ path, outcome string }
	type hist struct {
		n       uint64
		sum     float64
		buckets map[float64]uint64
	}
	hs := map[key]*hist{}
	for _, d := range ds {
		k := key{d.Path, string(d.State)}
		h := hs[k]
		if h == nil {
			h = &hist{buckets: map[float64]uint64{}}
			hs[k] = h
		}
		h.n++
		h.sum += d.Seconds
		for _, b := range DurationBuckets {
			if d.Seconds <= b {
				h.buckets[b]++
			}
		}
	}
	for k, h := range hs {
		ch <- prometheus.MustNewConstHistogram(durationDesc, h.n, h.sum, h.buckets, k.path, k.outcome)
	}
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (c *Collector) devices(ctx context.Context, ch chan<- prometheus.Metric) {
	devs, err := c.store.Devices(ctx, store.Filter{})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(devicesDesc, err)
		return
	}
	type key struct{ online, board, release, state string }
	counts := map[key]int{}
	for _, d := range devs {
		k := key{"unknown", d.Board, d.Installed, string(d.State)}
		if d.Online != nil {
			k.online = strconv.FormatBool(*d.Online)
		}
		counts[k]++
	}
	for k, n := range counts {
		ch <- gauge(devicesDesc, float64(n), k.online, k.board, k.release, k.state)
	}
}

func (c *Collector) failures(ctx context.Context, ch chan<- prometheus.Metric) {
	fs, err := c.store.Failures(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(failuresDesc, err)
		return
	}
	type key struct{ state, class string }
	counts := map[key]int{}
	for _, f := range fs {
		counts[key{string(f.State), ReasonClass(f.Reason)}] += f.N
	}
	for k, n := range counts {
		ch <- gauge(failuresDesc, float64(n), k.state, k.class)
	}
}

func (c *Collector) rollouts(ctx context.Context, ch chan<- prometheus.Metric) {
	rs, err := c.store.Rollouts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(rolloutDesc, err)
		return
	}
	slices.SortFunc(rs, func(a, b store.Rollout) int { return int(b.UpdatedMS - a.UpdatedMS) })
	for _, r := range rs[:min(len(rs), maxRollouts)] {
		ms, err := c.store.Members(ctx, r.ID)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(rolloutDesc, err)
			return
		}
		counts := map[string]int{}
		for _, m := range ms {
			counts[m.Outcome]++
		}
		for o, n := range counts {
			ch <- gauge(rolloutDesc, float64(n), r.ID, r.Release, o)
		}
	}
}

// health emits the per-device series for the first cap devices by ID
// (stable series: the same devices from one scrape to the next).
func (c *Collector) health(ctx context.Context, ch chan<- prometheus.Metric) {
	ch <- gauge(capDesc, float64(c.cap))
	latest, err := c.store.LatestTelemetry(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(tempDesc, err)
		return
	}
	ids := make([]string, 0, len(latest))
	for id := range latest {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ch <- gauge(cappedDesc, float64(max(0, len(ids)-c.cap)))
	for _, id := range ids[:min(len(ids), c.cap)] {
		l := latest[id]
		f := store.Figures(l.Report)
		opt := func(d *prometheus.Desc, v *float64) {
			if v != nil {
				ch <- gauge(d, *v, id)
			}
		}
		opt(tempDesc, f.TempC)
		opt(loadDesc, f.Load1)
		opt(memDesc, f.MemAvail)
		opt(rssDesc, f.AgentRSS)
		opt(diskDesc, f.DiskFree)
		ch <- gauge(uptimeDesc, float64(l.Report.Uptime), id)
		ch <- gauge(droppedDesc, float64(l.Report.Dropped), id)
		ch <- gauge(reconnectDesc, float64(l.Report.Reconnects), id)
		ch <- gauge(reportDesc, float64(l.ReceivedMS)/1000, id)
		if h := l.Report.Health; h != nil {
			v := 0.0
			if h.OK {
				v = 1
			}
			ch <- gauge(healthDesc, v, id)
		}
	}
}

// Reason classes: a handful of fixed values, so that a free-text reason
// never becomes a label value of its own.
const (
	ClassHealth   = "health"
	ClassBoot     = "boot"
	ClassDownload = "download"
	ClassVerify   = "verify"
	ClassLive     = "live-patch"
	ClassSpace    = "space"
	ClassOther    = "other"
)

// ReasonClass sorts a failure or rollback reason into one of the classes.
func ReasonClass(reason string) string {
	r := strings.ToLower(reason)
	has := func(words ...string) bool {
		return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(r, w) })
	}
	switch {
	case has("health"):
		return ClassHealth
	case has("livepatch", "live patch", "klp", "transition", "ptrace", "trampoline"):
		return ClassLive
	case has("no space", "enospc", "disk full", "too large for"):
		return ClassSpace
	case has("hash", "signature", "verif", "tuf", "manifest", "anti-rollback", "expired"):
		return ClassVerify
	case has("download", "fetch", "http", "connection", "timeout"):
		return ClassDownload
	case has("boot", "fell back", "fallback", "bootloader"):
		return ClassBoot
	}
	return ClassOther
}
