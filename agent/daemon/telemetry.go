package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/eventseq"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/klp"
	"github.com/graft-dev/graft/agent/telemetry"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
)

func telemetryDir(dataDir string) string { return filepath.Join(dataDir, "telemetry") }

// phoneHome is the daemon's telemetry: what the reporter samples, and the
// health checks' last verdict.
type phoneHome struct {
	d       *Device
	session *mqtt.Session
	seq     *eventseq.Counter
	rep     *telemetry.Reporter
	sampler telemetry.Sampler
	boots   uint64
	rec     atomic.Pointer[journal.Record] // the journal as last saved (the engine owns the journal)

	mu     sync.Mutex
	health *transport.Check
}

func newPhoneHome(d *Device, session *mqtt.Session, seq *eventseq.Counter, q *telemetry.Queue, logger *slog.Logger) *phoneHome {
	p := &phoneHome{d: d, session: session, seq: seq}
	rec := d.Journal.Record()
	p.rec.Store(&rec)
	if _, bootID, err := d.Machine.Booted(); err == nil {
		if p.boots, err = telemetry.CountBoot(filepath.Join(telemetryDir(d.Config.DataDir), "boots"), bootID); err != nil {
			logger.Warn("boot count", "err", err)
		}
	}
	spaces := []telemetry.Space{{Name: d.Config.DataDir, Path: d.Config.DataDir}, {Name: "/", Path: "/"}}
	for _, g := range d.Board.SlotGroups {
		for _, s := range g.Slots {
			spaces = append(spaces, telemetry.Space{Name: "slot:" + g.Name + "/" + s.Name, Path: s.Device, Device: true})
		}
	}
	p.sampler = telemetry.Sampler{Spaces: spaces}
	p.rep = &telemetry.Reporter{
		Interval:      d.Config.TelemetryInterval,
		Queue:         q,
		Sample:        p.sample,
		Publish:       session.PublishTelemetry,
		WaitConnected: session.WaitConnected,
		Logger:        logger,
	}
	return p
}

// saved follows the journal's saves (it runs in the engine's goroutine).
func (p *phoneHome) saved(r journal.Record) { p.rec.Store(&r) }

// reported sees every status the agent sends: an outcome or an idle
// report is a change that matters.
func (p *phoneHome) reported(s transport.Status) {
	switch s.State {
	case transport.StateIdle, transport.StateCommitted, transport.StateRolledBack, transport.StateFailed, transport.StateRefused:
		p.rep.Trigger()
	}
}

func (p *phoneHome) sample() transport.Telemetry {
	rec := *p.rec.Load()
	st := telemetry.State{
		Installed:    rec.Installed.Name,
		AgentVersion: Version(),
		BootCount:    p.boots,
		Reconnects:   p.session.Reconnects(),
	}
	st.Slot, _, _ = p.d.Machine.Booted()
	if ps, err := (&klp.System{}).List(); err == nil {
		for _, lp := range ps {
			if lp.Enabled {
				st.KernelPatches = append(st.KernelPatches, lp.Name)
			}
		}
	}
	for _, l := range rec.Live {
		if l.Component.Kind == manifest.KindUserPatch {
			st.UserPatches = append(st.UserPatches, l.Component.Name)
		}
	}
	if l := rec.Last; l != nil && transport.State(l.State).Valid() {
		st.LastUpdate = &transport.Outcome{Release: l.Release, State: transport.State(l.State), Reason: shortReason(l.Reason)}
	}
	p.mu.Lock()
	st.Health = p.health
	p.mu.Unlock()
	t := p.sampler.Sample(p.d.Config.DeviceID, time.Now().UnixMilli(), st)
	if p.seq != nil {
		if n, err := p.seq.Next(); err == nil {
			t.Seq = n
		}
	}
	return t
}

// shortReason fits a reason into telemetry's 512 bytes.
func shortReason(r string) string {
	r = cleanReason(r)
	if len(r) > 512 {
		r = strings.ToValidUTF8(r[:509], "") + "..."
	}
	return r
}

// recordHealth wraps the health checker so that telemetry carries the last
// verdict; a verdict that changes is reported at once.
func (p *phoneHome) recordHealth(c engine.HealthChecker) engine.HealthChecker {
	return healthFunc(func(ctx context.Context, slot string) error {
		err := c.Check(ctx, slot)
		h := &transport.Check{OK: err == nil, Time: time.Now().UnixMilli()}
		if err != nil {
			h.Reason = shortReason(err.Error())
		}
		p.mu.Lock()
		changed := p.health == nil || p.health.OK != h.OK
		p.health = h
		p.mu.Unlock()
		if changed {
			p.rep.Trigger()
		}
		return err
	})
}

type healthFunc func(context.Context, string) error

func (f healthFunc) Check(ctx context.Context, slot string) error { return f(ctx, slot) }
