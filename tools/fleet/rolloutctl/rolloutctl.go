package rolloutctl

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/graft-dev/graft/tools/fleet/rollout"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// DefaultTick is how often the controller steps.
const DefaultTick = time.Second

// Publisher sends an MQTT message (serve's broker).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool) error
}

// Options configure New.
type Options struct {
	Tick   time.Duration    // 0: DefaultTick
	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: discard
}

// Controller runs rollouts. Its methods are safe for concurrent use.
type Controller struct {
	db   *store.Store
	tick time.Duration
	now  func() time.Time
	log  *slog.Logger

	mu     sync.Mutex
	pub    Publisher
	resent map[string]bool // rollouts whose recorded notices this process has re-sent
}

// New returns a controller over db. It sends nothing until SetPublisher.
func New(db *store.Store, opts Options) *Controller {
	c := &Controller{db: db, tick: opts.Tick, now: opts.Now, log: opts.Logger, resent: map[string]bool{}}
	if c.tick <= 0 {
		c.tick = DefaultTick
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// SetPublisher sets where notices go.
func (c *Controller) SetPublisher(p Publisher) {
	c.mu.Lock()
	c.pub = p
	c.mu.Unlock()
}

// Observe takes a stored status into every rollout of its release that
// notified the device: a final state is the device's outcome.
func (c *Controller) Observe(ctx context.Context, s transport.Status) {
	o := rollout.FromStatus(s)
	if !o.Final() || s.Release == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.db.RecordOutcome(ctx, s.Device, s.Release, string(o), s.Reason, rollout.Running, rollout.Paused); err != nil {
		c.log.Error("rollout outcome", "device", s.Device, "err", err)
	}
}

// Run steps every tick until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		if err := c.Step(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("rollout step", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step runs one decision for every running or aborting rollout.
func (c *Controller) Step(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pub == nil {
		return nil
	}
	rs, err := c.db.Rollouts(ctx)
	if err != nil {
		return err
	}
	for _, r := range rs {
		switch r.State {
		case rollout.Running:
			err = c.step(ctx, r)
		case rollout.Aborting:
			err = c.abort(ctx, r)
		}
		if err != nil {
			return fmt.Errorf("rollout %s: %w", r.ID, err)
		}
	}
	return nil
}

// Load returns a stored rollout as the decision core sees it.
func Load(ctx context.Context, db *store.Store, r store.Rollout) (rollout.State, []store.Member, error) {
	var spec rollout.Spec
	if err := json.Unmarshal(r.Spec, &spec); err != nil {
		return rollout.State{}, nil, fmt.Errorf("spec: %w", err)
	}
	ms, err := db.Members(ctx, r.ID)
	if err != nil {
		return rollout.State{}, nil, err
	}
	st := rollout.State{Spec: spec, Status: r.State, Wave: r.Wave, WaveStarted: ms2t(r.WaveStartedMS)}
	for _, m := range ms {
		st.Members = append(st.Members, rollout.Member{Device: m.Device, Wave: m.Wave, Outcome: rollout.Outcome(m.Outcome),
			Notified: ms2t(m.NotifiedMS), Finished: ms2t(m.FinishedMS)})
	}
	return st, ms, nil
}

func ms2t(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func (c *Controller) step(ctx context.Context, r store.Rollout) error {
	st, ms, err := Load(ctx, c.db, r)
	if err != nil {
		return err
	}
	if !c.resent[r.ID] {
		// After a restart the broker holds no retained notices: send
		// every recorded, unfinished one again, under its own ID.
		for _, m := range ms {
			if m.NoticeID != "" && m.FinishedMS == 0 {
				if err := c.send(r, m.Device, m.NoticeID); err != nil {
					return err
				}
			}
		}
		c.resent[r.ID] = true
	}
	now := c.now()
	d := rollout.Decide(st, now)
	for _, dev := range d.TimeOut {
		reason := fmt.Sprintf("no final status within %v of the notice", st.Spec.Timeout)
		if err := c.db.SetOutcome(ctx, r.ID, dev, string(rollout.TimedOut), reason, true); err != nil {
			return err
		}
		c.log.Warn("device timed out", "rollout", r.ID, "device", dev)
	}
	next, change := r, true
	switch {
	case d.Pause != "":
		next.State, next.Reason = rollout.Paused, d.Pause
	case d.Complete:
		next.State, next.Reason = rollout.Completed, "every wave committed"
	case d.Advance:
		next.Wave, next.WaveStartedMS, next.Reason = r.Wave+1, now.UnixMilli(), ""
	default:
		change = false
	}
	if change {
		ok, err := c.db.UpdateRolloutIf(ctx, next, rollout.Running)
		if err != nil || !ok {
			return err // !ok: paused or aborted meanwhile; next step sees it
		}
		c.log.Info("rollout", "id", r.ID, "state", next.State, "wave", next.Wave+1, "reason", next.Reason)
		if next.State != rollout.Running || d.Advance {
			return nil // notices for a new wave come on the next step
		}
	}
	for _, dev := range d.Notify {
		id := transport.NewNoticeID()
		ok, err := c.db.MarkNotified(ctx, r.ID, dev, string(rollout.InProgress), id)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := c.send(r, dev, id); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) send(r store.Rollout, dev, id string) error {
	n := transport.Notice{Release: r.Release, Manifest: r.Manifest, Sequence: r.Sequence, Time: c.now().UnixMilli(), ID: id}
	b, err := transport.EncodeNotice(n)
	if err != nil {
		return err
	}
	if err := c.pub.Publish(transport.NotifyTopic(dev), b, true); err != nil {
		return fmt.Errorf("notify %s: %w", dev, err)
	}
	c.log.Info("notified", "rollout", r.ID, "device", dev, "release", r.Release, "notice", id)
	return nil
}

// abort clears the retained notice of every notified device, so none
// that reconnects later picks it up, and marks the rollout aborted.
func (c *Controller) abort(ctx context.Context, r store.Rollout) error {
	ms, err := c.db.Members(ctx, r.ID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.NoticeID != "" {
			if err := c.pub.Publish(transport.NotifyTopic(m.Device), nil, true); err != nil {
				return fmt.Errorf("clear notice of %s: %w", m.Device, err)
			}
		}
	}
	r.State = rollout.Aborted
	_, err = c.db.UpdateRolloutIf(ctx, r, rollout.Aborting)
	return err
}
