package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/graft-dev/graft/agent/outbox"
	"github.com/graft-dev/graft/transport"
)

// Defaults.
const (
	DefaultInterval = 5 * time.Minute
	DefaultQueue    = 100
	// MinGap is the least time between two reports: a burst of changes
	// gives one immediate report, not one each.
	MinGap = 2 * time.Second
	// retryGap is how long to wait after a failed publish before trying
	// the queue again.
	retryGap = time.Second
)

// Queue is the bounded offline queue of encoded reports: an outbox of its
// own (so status events never share its bound) that counts what it drops.
type Queue struct {
	box *outbox.Outbox
	max int

	mu      sync.Mutex
	dropped uint64
}

// OpenQueue opens the queue in dir, keeping at most max reports
// (DefaultQueue if max <= 0).
func OpenQueue(dir string, max int, logger *slog.Logger) (*Queue, error) {
	if max <= 0 {
		max = DefaultQueue
	}
	box, err := outbox.Open(dir, max, outbox.WithLogger(quiet(logger)))
	if err != nil {
		return nil, err
	}
	return &Queue{box: box, max: max}, nil
}

// quiet logs the queue's drops at debug level: they are counted and
// reported, and a device offline for a week would log one every interval.
func quiet(l *slog.Logger) *slog.Logger {
	if l == nil {
		return nil
	}
	return slog.New(levelCap{l.Handler()})
}

type levelCap struct{ slog.Handler }

func (h levelCap) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug {
		r.Level = slog.LevelDebug
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

// Add queues an encoded report, dropping the oldest when full.
func (q *Queue) Add(b []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	full := q.box.Len() >= q.max
	if _, err := q.box.Add(b); err != nil {
		return err
	}
	if full {
		q.dropped++
	}
	return nil
}

// Dropped is how many reports the queue dropped since it was opened.
func (q *Queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Len is how many reports wait.
func (q *Queue) Len() int { return q.box.Len() }

// Reporter samples and sends. Sample, Publish and WaitConnected are
// required.
type Reporter struct {
	Interval time.Duration // default DefaultInterval; each wait is jittered ±20%
	Queue    *Queue
	// Sample takes one report (Seq, Dropped and Time are filled in by it
	// or the reporter).
	Sample        func() transport.Telemetry
	Publish       func(context.Context, transport.Telemetry) error
	WaitConnected func(context.Context) error
	Logger        *slog.Logger

	once    sync.Once
	taking  sync.Mutex
	trigger chan struct{}
	queued  chan struct{}
}

func (r *Reporter) init() {
	r.once.Do(func() {
		r.trigger = make(chan struct{}, 1)
		r.queued = make(chan struct{}, 1)
		if r.Interval <= 0 {
			r.Interval = DefaultInterval
		}
		if r.Logger == nil {
			r.Logger = slog.New(slog.DiscardHandler)
		}
	})
}

// Trigger asks for a report now (after MinGap since the last one): a
// change that matters happened.
func (r *Reporter) Trigger() {
	r.init()
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Jitter returns the wait before the next periodic report: uniform in
// [0.8·d, 1.2·d), so a fleet started together does not report together.
func Jitter(d time.Duration, u float64) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*u))
}

// Run reports until ctx ends: one report at once, then one per jittered
// interval and one after each Trigger.
func (r *Reporter) Run(ctx context.Context) {
	r.init()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.deliver(ctx) }()
	defer wg.Wait()
	var last time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.trigger:
			if gap := MinGap - time.Since(last); gap > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(gap):
				}
			}
		}
		select { // triggers that came meanwhile: this report covers them
		case <-r.trigger:
		default:
		}
		last = time.Now()
		r.take()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(Jitter(r.Interval, rand.Float64()))
	}
}

// take samples once and queues the report.
func (r *Reporter) take() {
	r.init()
	r.taking.Lock() // reports are queued in the order they were sampled
	defer r.taking.Unlock()
	t := r.Sample()
	t.Dropped = r.Queue.Dropped()
	b, err := transport.EncodeTelemetry(t)
	if err == nil {
		err = r.Queue.Add(b)
	}
	if err != nil {
		r.Logger.Warn("telemetry not queued", "err", err)
		return
	}
	select {
	case r.queued <- struct{}{}:
	default:
	}
}

// deliver publishes the queue, oldest first, whenever connected. It takes
// a report from the queue only once connected, so what the bound dropped
// meanwhile is never sent.
func (r *Reporter) deliver(ctx context.Context) {
	for ctx.Err() == nil {
		if r.Queue.Len() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-r.queued:
			}
			continue
		}
		if err := r.WaitConnected(ctx); err != nil {
			sleep(ctx, retryGap)
			continue
		}
		id, b, ok, err := r.Queue.box.Next()
		if err != nil {
			r.Logger.Warn("telemetry queue", "err", err)
			sleep(ctx, retryGap)
			continue
		}
		if !ok {
			continue
		}
		t, err := transport.DecodeTelemetry(b)
		if err != nil { // not ours to fix: drop it rather than block
			r.Logger.Warn("telemetry queue: undecodable report dropped", "err", err)
			r.Queue.box.Done(id)
			continue
		}
		if err := r.Publish(ctx, t); err != nil {
			if !errors.Is(err, context.Canceled) {
				r.Logger.Debug("telemetry not delivered yet", "err", err)
			}
			sleep(ctx, retryGap)
			continue
		}
		if err := r.Queue.box.Done(id); err != nil {
			r.Logger.Warn("telemetry queue", "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
