package rollout_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/rollout"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // waves joined, or "err"
	}{
		{"1,5%,25%,100%", "1,5%,25%,100%"},
		{"10%", "10%,100%"},
		{"3", "3,100%"},
		{"1,1", "err"},
		{"5%,2%", "err"},
		{"0", "err"},
		{"150%", "err"},
		{"", "err"},
		{"x", "err"},
	} {
		ws, err := rollout.ParseWaves(tc.in)
		var got []string
		for _, w := range ws {
			got = append(got, w.String())
		}
		g := strings.Join(got, ",")
		if err != nil {
			g = "err"
			if !errors.Is(err, rollout.ErrSpec) {
				t.Errorf("%q: %v is not ErrSpec", tc.in, err)
			}
		}
		if g != tc.want {
			t.Errorf("ParseWaves(%q) = %q, want %q", tc.in, g, tc.want)
		}
	}
	for in, want := range map[string]string{"2%": "2%", "3": "3", "0": "0", "-1": "err", "100%": "err", "a": "err"} {
		th, err := rollout.ParseThreshold(in)
		g := th.String()
		if err != nil {
			g = "err"
		}
		if g != want {
			t.Errorf("ParseThreshold(%q) = %q, want %q", in, g, want)
		}
	}
	w, err := rollout.ParseWindow("22:00-05:00")
	if err != nil {
		t.Fatal(err)
	}
	at := func(h int) time.Time { return time.Date(2026, 1, 1, h, 30, 0, 0, time.UTC) }
	if !w.Open(at(23)) || !w.Open(at(2)) || w.Open(at(12)) {
		t.Error("window 22:00-05:00 open at the wrong hours")
	}
	for _, bad := range []string{"25:00-01:00", "01:00", "01:00-01:00"} {
		if _, err := rollout.ParseWindow(bad); err == nil {
			t.Errorf("ParseWindow(%q) accepted", bad)
		}
	}
}

func devices(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("sim-%05d", i+1)
	}
	return out
}

func TestAssignStableAndSized(t *testing.T) {
	waves, _ := rollout.ParseWaves("1,10%,50%")
	devs := devices(40)
	a := rollout.Assign("r1", devs, waves)
	sizes := make([]int, len(waves))
	for _, w := range a {
		sizes[w]++
	}
	// cumulative 1, 4, 20, 40 → per wave 1, 3, 16, 20
	if fmt.Sprint(sizes) != "[1 3 16 20]" {
		t.Fatalf("wave sizes %v", sizes)
	}
	// Same ID, devices in another order: same waves.
	rev := make([]string, len(devs))
	for i, d := range devs {
		rev[len(devs)-1-i] = d
	}
	b := rollout.Assign("r1", rev, waves)
	for d, w := range a {
		if b[d] != w {
			t.Fatalf("%s: wave %d then %d", d, w, b[d])
		}
	}
	// Other rollout IDs pick other canaries: membership is not just the
	// device order.
	canary := func(a map[string]int) string {
		for d, w := range a {
			if w == 0 {
				return d
			}
		}
		return ""
	}
	seen := map[string]bool{}
	for i := range 8 {
		seen[canary(rollout.Assign(fmt.Sprint("r", i), devs, waves))] = true
	}
	if len(seen) < 2 {
		t.Fatalf("8 rollout IDs all chose canary %v", seen)
	}
}

func TestDecide(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	spec := rollout.Spec{Soak: time.Minute, Timeout: 10 * time.Minute, MaxFailures: rollout.Threshold{Count: 0}}
	spec.Waves, _ = rollout.ParseWaves("2,100%")
	m := func(dev string, wave int, o rollout.Outcome, notifiedAgo, finishedAgo time.Duration) rollout.Member {
		mb := rollout.Member{Device: dev, Wave: wave, Outcome: o}
		if notifiedAgo >= 0 {
			mb.Notified = t0.Add(-notifiedAgo)
		}
		if finishedAgo >= 0 {
			mb.Finished = t0.Add(-finishedAgo)
		}
		return mb
	}
	const no = -1
	tests := []struct {
		name   string
		spec   func(rollout.Spec) rollout.Spec
		status string
		wave   int
		ms     []rollout.Member
		want   string // summary of the decision
	}{
		{"start notifies wave 1 only", nil, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Pending, no, no), m("b", 0, rollout.Pending, no, no), m("c", 1, rollout.Pending, no, no)},
			"notify=a,b"},
		{"paused does nothing", nil, rollout.Paused, 0,
			[]rollout.Member{m("a", 0, rollout.Pending, no, no)}, ""},
		{"one failure over count 0 pauses", nil, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.RolledBack, time.Minute, 0), m("b", 0, rollout.InProgress, time.Minute, no), m("c", 1, rollout.Pending, no, no)},
			"pause=wave 1: 1 of 1 finished devices failed (1 rolled back, 0 failed, 0 timed out), over --max-failures 0"},
		{"silent device times out and trips", nil, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Committed, 20*time.Minute, 15*time.Minute), m("b", 0, rollout.InProgress, 10*time.Minute, no)},
			"timeout=b pause=wave 1: 1 of 2 finished devices failed (0 rolled back, 0 failed, 1 timed out), over --max-failures 0"},
		{"count tolerates up to N", func(s rollout.Spec) rollout.Spec { s.MaxFailures.Count = 1; return s }, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Failed, time.Hour, 2*time.Minute), m("b", 0, rollout.Committed, time.Hour, 2*time.Minute), m("c", 1, rollout.Pending, no, no)},
			"advance"},
		{"soak holds the next wave", nil, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Committed, time.Hour, 30*time.Second), m("c", 1, rollout.Pending, no, no)},
			"waiting"},
		{"soaked wave advances", nil, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Committed, time.Hour, 2*time.Minute), m("c", 1, rollout.Pending, no, no)},
			"advance"},
		{"last wave done completes", nil, rollout.Running, 1,
			[]rollout.Member{m("a", 0, rollout.Committed, time.Hour, time.Hour), m("c", 1, rollout.Committed, time.Hour, 0)},
			"complete"},
		{"percent waits for the minimum sample mid-wave",
			func(s rollout.Spec) rollout.Spec {
				s.MaxFailures = rollout.Threshold{Percent: 10}
				s.MinSample = 5
				return s
			}, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Failed, time.Minute, 0), m("b", 0, rollout.InProgress, time.Minute, no)},
			""},
		{"percent judged when the wave is done",
			func(s rollout.Spec) rollout.Spec {
				s.MaxFailures = rollout.Threshold{Percent: 10}
				s.MinSample = 5
				return s
			}, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Failed, time.Minute, 0), m("b", 0, rollout.Committed, time.Minute, 0), m("c", 1, rollout.Pending, no, no)},
			"pause=wave 1: 1 of 2 finished devices failed (0 rolled back, 1 failed, 0 timed out) = 50.0%, over --max-failures 10%"},
		{"max-concurrent caps notices", func(s rollout.Spec) rollout.Spec { s.MaxConcurrent = 2; return s }, rollout.Running, 1,
			[]rollout.Member{m("a", 0, rollout.Committed, time.Hour, time.Hour), m("b", 1, rollout.InProgress, time.Minute, no),
				m("c", 1, rollout.Pending, no, no), m("d", 1, rollout.Pending, no, no)},
			"notify=c"},
		{"rate caps notices a minute", func(s rollout.Spec) rollout.Spec { s.Rate = 2; return s }, rollout.Running, 1,
			[]rollout.Member{m("a", 0, rollout.Committed, time.Hour, time.Hour), m("b", 1, rollout.InProgress, 30*time.Second, no),
				m("c", 1, rollout.Pending, no, no), m("d", 1, rollout.Pending, no, no)},
			"notify=c"},
		{"closed window defers", func(s rollout.Spec) rollout.Spec { s.Window = &rollout.Window{Start: 0, End: 1}; return s }, rollout.Running, 0,
			[]rollout.Member{m("a", 0, rollout.Pending, no, no)},
			"waiting"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := spec
			if tc.spec != nil {
				sp = tc.spec(sp)
			}
			d := rollout.Decide(rollout.State{Spec: sp, Status: tc.status, Wave: tc.wave, Members: tc.ms}, t0)
			var parts []string
			if len(d.TimeOut) > 0 {
				parts = append(parts, "timeout="+strings.Join(d.TimeOut, ","))
			}
			if d.Pause != "" {
				parts = append(parts, "pause="+d.Pause)
			}
			if d.Advance {
				parts = append(parts, "advance")
			}
			if d.Complete {
				parts = append(parts, "complete")
			}
			if len(d.Notify) > 0 {
				parts = append(parts, "notify="+strings.Join(d.Notify, ","))
			}
			if d.Waiting != "" && len(parts) == 0 {
				parts = append(parts, "waiting")
			}
			if got := strings.Join(parts, " "); got != tc.want {
				t.Fatalf("decision %q, want %q (%+v)", got, tc.want, d)
			}
		})
	}
}
