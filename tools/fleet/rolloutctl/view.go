package rolloutctl

import (
	"strings"
	"time"

	"github.com/graft-dev/graft/tools/fleet/rollout"
	"github.com/graft-dev/graft/tools/fleet/store"
)

// View is the one JSON schema of a rollout (`graft-fleet rollout list
// --json` and `show --json`, docs/fleet.md).
type View struct {
	ID        string         `json:"id"`
	Release   string         `json:"release"`
	Target    string         `json:"target"`
	State     string         `json:"state"`
	Reason    string         `json:"reason,omitempty"`  // why it paused, aborted or completed
	Waiting   string         `json:"waiting,omitempty"` // why nothing moves now (soak, window, concurrency)
	Wave      int            `json:"wave"`              // the wave in progress, from 1
	Waves     []WaveView     `json:"waves"`
	Totals    rollout.Counts `json:"totals"`
	Spec      SpecView       `json:"spec"`
	CreatedMS int64          `json:"created_ms"`
	UpdatedMS int64          `json:"updated_ms"`
	Members   []store.Member `json:"members,omitempty"` // show only; wave from 1 as above
}

// WaveView is one wave's size and counts.
type WaveView struct {
	Wave   int            `json:"wave"` // from 1
	Size   string         `json:"size"` // cumulative, as given: "5%" or "1"
	Counts rollout.Counts `json:"counts"`
}

// SpecView is a rollout's parameters as the operator gave them.
type SpecView struct {
	Waves         string `json:"waves"`
	Soak          string `json:"soak"`
	MaxFailures   string `json:"max_failures"`
	MinSample     int    `json:"min_sample"`
	Timeout       string `json:"timeout"`
	MaxConcurrent int    `json:"max_concurrent,omitempty"`
	Rate          int    `json:"rate_per_min,omitempty"`
	Window        string `json:"window,omitempty"`
}

// Summarize builds r's view at now; members are included if withMembers.
func Summarize(r store.Rollout, st rollout.State, ms []store.Member, now time.Time, withMembers bool) View {
	v := View{ID: r.ID, Release: r.Release, Target: r.Target, State: r.State, Reason: r.Reason, Wave: r.Wave + 1,
		CreatedMS: r.CreatedMS, UpdatedMS: r.UpdatedMS}
	var sizes []string
	for i, w := range st.Spec.Waves {
		sizes = append(sizes, w.String())
		v.Waves = append(v.Waves, WaveView{Wave: i + 1, Size: w.String()})
	}
	for _, m := range st.Members {
		if m.Wave < len(v.Waves) {
			v.Waves[m.Wave].Counts.Add(m.Outcome)
		}
		v.Totals.Add(m.Outcome)
	}
	v.Spec = SpecView{Waves: strings.Join(sizes, ","), Soak: st.Spec.Soak.String(), MaxFailures: st.Spec.MaxFailures.String(),
		MinSample: st.Spec.MinSample, Timeout: st.Spec.Timeout.String(), MaxConcurrent: st.Spec.MaxConcurrent, Rate: st.Spec.Rate}
	if st.Spec.Window != nil {
		v.Spec.Window = st.Spec.Window.String()
	}
	if r.State == rollout.Running {
		v.Waiting = rollout.Decide(st, now).Waiting
	}
	if withMembers {
		for _, m := range ms {
			m.Wave++
			v.Members = append(v.Members, m)
		}
	}
	return v
}
