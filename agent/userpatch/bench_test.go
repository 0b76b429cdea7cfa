package userpatch_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

func requireBench(t *testing.T) {
	if os.Getenv("GRAFT_BENCH") == "" {
		t.Skip("set GRAFT_BENCH=1 (make bench)")
	}
}

func quantiles(d []time.Duration) (med, p99, max time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}

// TestStopTimeBench: how long a process with two busy threads is stopped
// per apply (target: median ≤ 0.5 ms, p99 ≤ 5 ms).
func TestStopTimeBench(t *testing.T) {
	requireBench(t)
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "2")
	p.waitFor(t, userpatchtest.GTBefore)
	b := bundle(t, f, userpatchtest.GTBundle)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	var apply, revert []time.Duration
	for range 500 {
		a, err := pt.Apply(ctx, p.pid(), b, userpatch.Options{})
		if err != nil {
			t.Fatal(err)
		}
		apply = append(apply, a.Stop)
		if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
			t.Fatal(err)
		}
		revert = append(revert, a.Stop)
	}
	m, p99, mx := quantiles(apply)
	t.Logf("stop per apply, 2 busy threads, 500 applies: median %v (target ≤ 0.5 ms, %.2fx), p99 %v (target ≤ 5 ms, %.2fx), max %v",
		m, float64(m)/float64(500*time.Microsecond), p99, float64(p99)/float64(5*time.Millisecond), mx)
	m, p99, mx = quantiles(revert)
	t.Logf("stop per revert: median %v, p99 %v, max %v", m, p99, mx)
	p.alive(t)
}

// TestHundredProcessesBench: the time to patch 100 running processes,
// and how soon processes that start later get the patch.
func TestHundredProcessesBench(t *testing.T) {
	requireBench(t)
	f := fixtures(t)
	var procs []*proc
	for range 100 {
		procs = append(procs, start(t, f, userpatchtest.GTProg, "0"))
	}
	for _, p := range procs {
		p.waitFor(t, userpatchtest.GTBefore)
	}
	dir := t.TempDir()
	ap, err := userpatch.NewApplier(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ap.Close()
	b := bundle(t, f, userpatchtest.GTBundle)
	keep := filepath.Join(dir, "gt.ulp")
	raw, _ := os.ReadFile(f.Path(userpatchtest.GTBundle))
	os.WriteFile(keep, raw, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	res, err := ap.Manager().Add(ctx, b, keep)
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range res {
		if r.Result == userpatch.ResultApplied {
			n++
		}
	}
	t.Logf("patched %d running processes in %v (%v per process, journal included)", n, took, took/time.Duration(max(n, 1)))
	for _, p := range procs {
		p.waitFor(t, userpatchtest.GTAfter)
	}
	// Processes that start later, at random moments of the rescan cycle.
	ran := make(chan struct{})
	go func() { ap.Run(ctx); close(ran) }()
	var delays []time.Duration
	for range 20 {
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		p := start(t, f, userpatchtest.GTProg, "0")
		s := time.Now()
		p.waitFor(t, userpatchtest.GTAfter)
		delays = append(delays, time.Since(s))
	}
	m, _, mx := quantiles(delays)
	t.Logf("20 processes started later got the patch after: median %v, max %v (rescan every %v)", m, mx, userpatch.RescanInterval)
	cancel()
	<-ran
}
