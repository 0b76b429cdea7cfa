package console

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
)

// Ring keeps the agent's most recent log lines in memory, bounded in lines
// and in bytes per line, for the console's log command. It is a
// slog.Handler that writes each record as text into the ring and passes it
// on to the next handler. Safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	lines []string
	next  uint64 // sequence number of the next line
	max   int
	wake  chan struct{}
}

// MaxLine bounds one log line in the ring.
const MaxLine = 512

// NewRing keeps up to n lines.
func NewRing(n int) *Ring {
	if n <= 0 {
		n = 256
	}
	return &Ring{max: n, wake: make(chan struct{})}
}

// Add appends a line (cut at MaxLine).
func (r *Ring) Add(line string) {
	if len(line) > MaxLine {
		line = line[:MaxLine]
	}
	r.mu.Lock()
	if len(r.lines) == r.max {
		copy(r.lines, r.lines[1:])
		r.lines = r.lines[:r.max-1]
	}
	r.lines = append(r.lines, line)
	r.next++
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// Since returns the lines after sequence seq that the ring still holds,
// and the sequence to ask for next time; Since(0) is everything held.
func (r *Ring) Since(seq uint64) ([]string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := r.next - uint64(len(r.lines))
	if seq < first {
		seq = first
	}
	out := append([]string(nil), r.lines[seq-first:]...)
	return out, r.next
}

// Last returns the last n lines.
func (r *Ring) Last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > len(r.lines) {
		n = len(r.lines)
	}
	return append([]string(nil), r.lines[len(r.lines)-n:]...)
}

// Wait returns when a line is added after seq, or ctx ends.
func (r *Ring) Wait(ctx context.Context, seq uint64) {
	r.mu.Lock()
	if r.next > seq {
		r.mu.Unlock()
		return
	}
	w := r.wake
	r.mu.Unlock()
	select {
	case <-w:
	case <-ctx.Done():
	}
}

// Handler returns a slog.Handler that records into r and then calls next
// (which may be nil). Levels are next's; without next, Info and above.
func (r *Ring) Handler(next slog.Handler) slog.Handler {
	return &ringHandler{ring: r, next: next}
}

type ringHandler struct {
	ring  *Ring
	next  slog.Handler
	attrs []slog.Attr
	group string
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if h.next != nil {
		return h.next.Enabled(ctx, l)
	}
	return l >= slog.LevelInfo
}

func (h *ringHandler) Handle(ctx context.Context, rec slog.Record) error {
	var b bytes.Buffer
	th := slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})
	var hh slog.Handler = th
	if len(h.attrs) > 0 {
		hh = hh.WithAttrs(h.attrs)
	}
	if h.group != "" {
		hh = hh.WithGroup(h.group)
	}
	if err := hh.Handle(ctx, rec); err == nil {
		h.ring.Add(string(bytes.TrimRight(b.Bytes(), "\n")))
	}
	if h.next != nil {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	if h.next != nil {
		n.next = h.next.WithAttrs(as)
	}
	return &n
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.group = name
	if h.next != nil {
		n.next = h.next.WithGroup(name)
	}
	return &n
}
