package rollout

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/graft-dev/graft/transport"
)

// Outcome is a device's progress in a rollout.
type Outcome string

// Outcomes. Committed, RolledBack, Failed and TimedOut are final; the
// last three are failures.
const (
	Pending    Outcome = "pending"     // not notified yet
	InProgress Outcome = "in-progress" // notified, no final status yet
	Committed  Outcome = "committed"
	RolledBack Outcome = "rolled-back"
	Failed     Outcome = "failed" // failed or refused
	TimedOut   Outcome = "timed-out"
)

// Final reports whether o is an end state.
func (o Outcome) Final() bool {
	return o == Committed || o == RolledBack || o == Failed || o == TimedOut
}

// Failure reports whether o counts toward --max-failures.
func (o Outcome) Failure() bool { return o == RolledBack || o == Failed || o == TimedOut }

// FromStatus is a device's outcome in a rollout from its status: a failure
// the agent retries by itself (transport.Status.Retrying) is still in
// progress.
func FromStatus(s transport.Status) Outcome {
	if s.Retrying() {
		return InProgress
	}
	return FromState(s.State)
}

// FromState maps a device's reported state to its outcome in a rollout.
func FromState(s transport.State) Outcome {
	switch s {
	case transport.StateCommitted:
		return Committed
	case transport.StateRolledBack:
		return RolledBack
	case transport.StateFailed, transport.StateRefused:
		return Failed
	}
	return InProgress
}

// States of a rollout.
const (
	Running   = "running"
	Paused    = "paused"   // a threshold tripped, or the operator paused it
	Aborting  = "aborting" // the operator aborted it; notices being cleared
	Aborted   = "aborted"
	Completed = "completed"
)

// Assign splits devices into waves: ordered by a hash of the rollout ID
// and the device ID, so the same rollout ID over the same devices always
// gives the same waves (the canaries stay the canaries when a rollout is
// re-created), and a device's place does not depend on the others'.
// It returns each device's wave index.
func Assign(rolloutID string, devices []string, waves []Size) map[string]int {
	ids := slices.Clone(devices)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	key := func(d string) uint64 {
		h := sha256.Sum256([]byte(rolloutID + "\x00" + d))
		return binary.BigEndian.Uint64(h[:8])
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := cmp.Compare(key(a), key(b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	out := make(map[string]int, len(ids))
	i := 0
	for w, sz := range waves {
		for n := sz.of(len(ids)); i < n; i++ {
			out[ids[i]] = w
		}
	}
	for ; i < len(ids); i++ { // only if the waves stop short of 100%
		out[ids[i]] = len(waves) - 1
	}
	return out
}

// Member is a device's place and progress, as the decision needs it.
type Member struct {
	Device   string
	Wave     int
	Outcome  Outcome
	Notified time.Time // zero: not notified
	Finished time.Time // zero: not final
}

// State is what the decision needs of a rollout.
type State struct {
	Spec        Spec
	Status      string // Running, Paused, ...
	Wave        int    // the wave in progress
	WaveStarted time.Time
	Members     []Member
}

// Counts are a wave's (or the rollout's) members by outcome.
type Counts struct {
	Pending    int `json:"pending"`
	InProgress int `json:"in_progress"`
	Committed  int `json:"committed"`
	RolledBack int `json:"rolled_back"`
	Failed     int `json:"failed"`
	TimedOut   int `json:"timed_out"`
}

// Add counts one outcome.
func (c *Counts) Add(o Outcome) {
	switch o {
	case Pending:
		c.Pending++
	case InProgress:
		c.InProgress++
	case Committed:
		c.Committed++
	case RolledBack:
		c.RolledBack++
	case Failed:
		c.Failed++
	case TimedOut:
		c.TimedOut++
	}
}

// Failures is rolled back + failed + timed out.
func (c Counts) Failures() int { return c.RolledBack + c.Failed + c.TimedOut }

// Finished is the members with a final outcome.
func (c Counts) Finished() int { return c.Committed + c.Failures() }

// Total is every member.
func (c Counts) Total() int { return c.Pending + c.InProgress + c.Finished() }

// Decision is what to do now, in this order: time out, then pause or
// advance or complete, then notify.
type Decision struct {
	TimeOut  []string // devices silent past the timeout: mark timed out
	Pause    string   // non-empty: pause the rollout, and why
	Advance  bool     // start the next wave (Wave+1) now
	Complete bool     // every wave is done
	Notify   []string // devices to notify now
	Waiting  string   // why nothing moves, for show (soak, window, concurrency)
}

// Decide is the controller's one decision for a running rollout at now.
func Decide(st State, now time.Time) Decision {
	var d Decision
	if st.Status != Running {
		return d
	}
	ms := slices.Clone(st.Members)
	for i, m := range ms {
		if m.Outcome == InProgress && st.Spec.Timeout > 0 && !m.Notified.IsZero() && now.Sub(m.Notified) >= st.Spec.Timeout {
			d.TimeOut = append(d.TimeOut, m.Device)
			ms[i].Outcome, ms[i].Finished = TimedOut, now
		}
	}
	var all, wave Counts
	var lastFinished time.Time
	for _, m := range ms {
		if m.Wave > st.Wave {
			continue
		}
		all.Add(m.Outcome)
		if m.Wave == st.Wave {
			wave.Add(m.Outcome)
		}
		if m.Finished.After(lastFinished) {
			lastFinished = m.Finished
		}
	}
	waveDone := all.Pending == 0 && all.InProgress == 0
	if why := Tripped(st.Spec, all, waveDone); why != "" {
		d.Pause = fmt.Sprintf("wave %d: %s", st.Wave+1, why)
		return d
	}
	last := st.Wave >= len(st.Spec.Waves)-1
	if waveDone {
		if last {
			d.Complete = true
			return d
		}
		if ready := lastFinished.Add(st.Spec.Soak); now.Before(ready) {
			d.Waiting = fmt.Sprintf("wave %d soaking until %s", st.Wave+1, ready.UTC().Format(time.RFC3339))
			return d
		}
		d.Advance = true
		return d
	}
	if w := st.Spec.Window; w != nil && !w.Open(now) {
		if all.Pending > 0 {
			d.Waiting = fmt.Sprintf("window %s closed: %d devices deferred", w, all.Pending)
		}
		return d
	}
	room := all.Pending
	if st.Spec.MaxConcurrent > 0 {
		room = min(room, st.Spec.MaxConcurrent-all.InProgress)
	}
	if st.Spec.Rate > 0 {
		recent := 0
		for _, m := range ms {
			if !m.Notified.IsZero() && now.Sub(m.Notified) < time.Minute {
				recent++
			}
		}
		room = min(room, st.Spec.Rate-recent)
	}
	for _, m := range ms {
		if room <= 0 {
			break
		}
		if m.Wave <= st.Wave && m.Outcome == Pending {
			d.Notify = append(d.Notify, m.Device)
			room--
		}
	}
	if len(d.Notify) == 0 && all.Pending > 0 {
		d.Waiting = fmt.Sprintf("%d pending: %d in progress (--max-concurrent %d), --rate %d a minute",
			all.Pending, all.InProgress, st.Spec.MaxConcurrent, st.Spec.Rate)
	}
	return d
}

// Tripped says why the failures in c cross the spec's threshold, or ""
// if they do not. A count trips as soon as it is exceeded. A percentage
// is judged over the finished devices once at least MinSample have
// finished, or when the wave is done whatever its size (so a canary of
// one that fails trips it).
func Tripped(spec Spec, c Counts, waveDone bool) string {
	f := c.Failures()
	if f == 0 {
		return ""
	}
	what := fmt.Sprintf("%d of %d finished devices failed (%d rolled back, %d failed, %d timed out)",
		f, c.Finished(), c.RolledBack, c.Failed, c.TimedOut)
	t := spec.MaxFailures
	if t.Percent == 0 {
		if f > t.Count {
			return fmt.Sprintf("%s, over --max-failures %d", what, t.Count)
		}
		return ""
	}
	if c.Finished() < spec.MinSample && !waveDone {
		return ""
	}
	if pct := 100 * float64(f) / float64(c.Finished()); pct > t.Percent {
		return fmt.Sprintf("%s = %.1f%%, over --max-failures %s", what, pct, t)
	}
	return ""
}
