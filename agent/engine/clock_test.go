package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/transport"
)

// TestFailedReleaseAcrossClocks: a release that failed stays failed
// through redeliveries of its notice and is tried again after a real
// re-notify, whatever the device's clock says (a board without an RTC at
// 1970, or one a lifetime ahead) and whatever the fleet's says. The
// fleet's notice ID decides; an older fleet's notices without one are
// told apart by the fleet's own times.
func TestFailedReleaseAcrossClocks(t *testing.T) {
	fleetNow := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		device time.Time
		fleet  time.Time
		ids    bool
	}{
		{"device at 1970", time.Unix(3600, 0), fleetNow, true},
		{"device at 1970, fleet without notice IDs", time.Unix(3600, 0), fleetNow, false},
		{"device a lifetime ahead", fleetNow.AddDate(70, 0, 0), fleetNow, true},
		{"device a lifetime ahead, fleet without notice IDs", fleetNow.AddDate(70, 0, 0), fleetNow, false},
		{"fleet clock ahead", fleetNow, fleetNow.AddDate(5, 0, 0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newRig(t, nil, "")
			g.now = func() time.Time { return tt.device }
			g.start()
			g.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20), SHA256: make([]byte, 32)})
			notice := func(id string, at time.Time) transport.Notice {
				n := transport.Notice{Release: "v2", Manifest: agenttest.ManifestTarget("v2"), Time: at.UnixMilli()}
				if tt.ids {
					n.ID = id
				}
				return n
			}
			first := notice("n1", tt.fleet)
			if err := g.engine.Install(context.Background(), first); !errors.Is(err, slot.ErrHashMismatch) {
				t.Fatalf("Install = %v, want the failure", err)
			}
			before := len(g.reports)
			// The retained notice again (a reconnect, a restart).
			for range 2 {
				g.start()
				if err := g.engine.Install(context.Background(), first); err != nil || len(g.reports) != before {
					t.Fatalf("redelivered notice: %v, %d new reports; want the failure to stand", err, len(g.reports)-before)
				}
			}
			// The fleet notifies again, a second later by its clock.
			if err := g.engine.Install(context.Background(), notice("n2", tt.fleet.Add(time.Second))); !errors.Is(err, slot.ErrHashMismatch) {
				t.Fatalf("re-notified release = %v, want it tried again (and failing again)", err)
			}
			if l := g.last(); l.State != transport.StateFailed || l.Release != "v2" || len(g.reports) == before {
				t.Fatalf("last report %+v after the re-notify", l)
			}
		})
	}
}
