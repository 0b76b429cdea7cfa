package telemetry

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/graft-dev/graft/transport"
)

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSampleFakeMachine(t *testing.T) {
	root := t.TempDir()
	proc, sys := filepath.Join(root, "proc"), filepath.Join(root, "sys")
	write(t, filepath.Join(proc, "uptime"), "3600.50 100.00\n")
	write(t, filepath.Join(proc, "loadavg"), "0.50 0.25 0.10 1/80 999\n")
	write(t, filepath.Join(proc, "meminfo"), "MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 500 kB\n")
	write(t, filepath.Join(proc, "self", "status"), "VmRSS:\t 4096 kB\n")
	write(t, filepath.Join(proc, "sys", "kernel", "osrelease"), "6.1.0-sim\n")
	for i, z := range []struct{ typ, temp string }{{"cpu-thermal", "48250\n"}, {"gpu", "off"}, {"", "-1000"}} {
		dir := filepath.Join(sys, "class", "thermal", "thermal_zone"+string(rune('0'+i)))
		write(t, filepath.Join(dir, "type"), z.typ)
		write(t, filepath.Join(dir, "temp"), z.temp)
	}
	img := filepath.Join(root, "slotB.img")
	write(t, img, string(make([]byte, 8192)))
	s := Sampler{Proc: proc, Sys: sys, Spaces: []Space{
		{Name: root, Path: root}, {Name: "slot:rootfs/B", Path: img, Device: true}, {Name: "gone", Path: filepath.Join(root, "none")},
	}}
	got := s.Sample("dev-1", 7, State{Slot: "B", KernelPatches: []string{"lp\x1b1"}})
	if got.Uptime != 3600 || got.MemTotal != 1000<<10 || got.MemAvailable != 500<<10 || got.AgentRSS != 4096<<10 || got.Kernel != "6.1.0-sim" {
		t.Errorf("sample %+v", got)
	}
	if len(got.Load) != 3 || got.Load[0] != 50 {
		t.Errorf("load %v", got.Load)
	}
	// The zone that is off is left out; a zone without a type keeps its directory name.
	if len(got.Thermal) != 2 || got.Thermal[0] != (transport.Zone{Name: "cpu-thermal", Milli: 48250}) || got.Thermal[1].Name != "thermal_zone2" {
		t.Errorf("thermal %+v", got.Thermal)
	}
	if len(got.Disks) != 2 || got.Disks[0].Total <= 0 || got.Disks[1] != (transport.Disk{Mount: "slot:rootfs/B", Total: 8192}) {
		t.Errorf("disks %+v", got.Disks)
	}
	if len(got.KernelPatches) != 1 || got.KernelPatches[0] != "lp1" {
		t.Errorf("patches %q", got.KernelPatches)
	}
	if _, err := transport.EncodeTelemetry(got); err != nil {
		t.Fatal(err)
	}
}

// The real machine: what the agent reads on this host encodes.
func TestSampleRealMachine(t *testing.T) {
	got := Sampler{Spaces: []Space{{Name: "/", Path: "/"}}}.Sample("dev-1", 1, State{})
	if got.Uptime <= 0 || got.MemTotal <= 0 || got.AgentRSS <= 0 || got.Kernel == "" || len(got.Disks) != 1 {
		t.Fatalf("sample %+v", got)
	}
	b, err := transport.EncodeTelemetry(got)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %d bytes, %d thermal zones", len(b), len(got.Thermal))
}

func TestCountBoot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "boots")
	for i, c := range []struct {
		boot string
		want uint64
	}{{"a", 1}, {"a", 1}, {"b", 2}, {"c", 3}, {"c", 3}} {
		if n, err := CountBoot(path, c.boot); err != nil || n != c.want {
			t.Fatalf("step %d: %d, %v; want %d", i, n, err, c.want)
		}
	}
	write(t, path, "garbage")
	if n, _ := CountBoot(path, "d"); n != 1 {
		t.Fatalf("after a corrupt file: %d", n)
	}
}

func TestQueueDropsOldest(t *testing.T) {
	dir := t.TempDir()
	q, err := OpenQueue(dir, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := q.Add([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if q.Len() != 3 || q.Dropped() != 2 {
		t.Fatalf("len %d dropped %d", q.Len(), q.Dropped())
	}
	if _, b, ok, _ := q.box.Next(); !ok || b[0] != 2 {
		t.Fatalf("oldest kept %v", b)
	}
	// Reopened (agent restart): the reports are still there.
	q2, _ := OpenQueue(dir, 3, nil)
	if q2.Len() != 3 {
		t.Fatalf("reopened: %d", q2.Len())
	}
}

// Offline, reports pile up to the bound; once connected they all go out,
// oldest first, and the later ones carry the drop count.
func TestReporterOffline(t *testing.T) {
	q, err := OpenQueue(t.TempDir(), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		up   = make(chan struct{})
		sent []transport.Telemetry
		n    int64
	)
	r := &Reporter{
		Interval: time.Hour,
		Queue:    q,
		Sample: func() transport.Telemetry {
			mu.Lock()
			defer mu.Unlock()
			n++
			return transport.Telemetry{Device: "d", Uptime: n}
		},
		WaitConnected: func(ctx context.Context) error {
			select {
			case <-up:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		Publish: func(_ context.Context, t transport.Telemetry) error {
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, t)
			return nil
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// The first report is taken at once; triggers add more (MinGap apart,
	// so take them directly to keep the test fast).
	for range 6 {
		r.take()
	}
	if q.Len() != 4 || q.Dropped() < 3 {
		t.Fatalf("offline: %d queued, %d dropped", q.Len(), q.Dropped())
	}
	close(up)
	deadline := time.Now().Add(10 * time.Second)
	for q.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 4 {
		t.Fatalf("sent %d, want the 4 kept", len(sent))
	}
	for i := 1; i < len(sent); i++ {
		if sent[i].Uptime <= sent[i-1].Uptime {
			t.Fatalf("out of order: %+v", sent)
		}
	}
	if last := sent[len(sent)-1]; last.Dropped == 0 {
		t.Fatalf("the newest report does not count the drops: %+v", last)
	}
}

func TestJitter(t *testing.T) {
	if lo, hi := Jitter(time.Minute, 0), Jitter(time.Minute, 0.999); lo != 48*time.Second || hi >= 72*time.Second || hi < 71*time.Second {
		t.Fatalf("jitter %v %v", lo, hi)
	}
}

func BenchmarkSample(b *testing.B) {
	s := Sampler{Spaces: []Space{{Name: "/", Path: "/"}}}
	b.ReportAllocs()
	for b.Loop() {
		t := s.Sample("dev-1", 1, State{})
		if _, err := transport.EncodeTelemetry(t); err != nil {
			b.Fatal(err)
		}
	}
}

// A change that matters reports at once, not at the next interval.
func TestTriggerReportsAtOnce(t *testing.T) {
	q, err := OpenQueue(t.TempDir(), 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan transport.Telemetry, 10)
	r := &Reporter{
		Interval:      time.Hour,
		Queue:         q,
		Sample:        func() transport.Telemetry { return transport.Telemetry{Device: "d"} },
		WaitConnected: func(context.Context) error { return nil },
		Publish: func(_ context.Context, t transport.Telemetry) error {
			sent <- t
			return nil
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 2 {
		select {
		case <-sent:
		case <-time.After(MinGap + 5*time.Second):
			t.Fatalf("report %d did not come", i)
		}
		if i == 0 {
			r.Trigger()
			r.Trigger() // a burst: one report
		}
	}
	select {
	case <-sent:
		t.Fatal("a burst of triggers gave more than one report")
	case <-time.After(MinGap + 500*time.Millisecond):
	}
}
