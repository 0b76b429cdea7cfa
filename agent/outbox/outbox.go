package outbox

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/graft-dev/graft/agent/atomicfile"
)

// DefaultMax is the number of events kept when Open is given max <= 0.
const DefaultMax = 1000

const (
	suffix    = ".ev"
	idDigits  = 20 // enough for any uint64
	filePerms = 0o600
)

// ErrUnknownID reports an ID that is not an outbox event name.
var ErrUnknownID = errors.New("outbox: not an event ID")

// Outbox is a durable FIFO of opaque payloads. It is safe for concurrent
// use.
type Outbox struct {
	dir    string
	max    int
	logger *slog.Logger

	mu   sync.Mutex
	ids  []uint64 // pending events, oldest first
	next uint64   // counter for the next Add
}

// Option changes how Open sets up an Outbox.
type Option func(*Outbox)

// WithLogger logs dropped and unreadable events to l (nil: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *Outbox) {
		if l != nil {
			o.logger = l
		}
	}
}

// Open opens (creating it if needed) the outbox in dir, keeping at most max
// events (DefaultMax if max <= 0). Events left by an earlier run are
// pending again; files that are not event files, such as temporary files
// of an interrupted write, are ignored.
func Open(dir string, max int, opts ...Option) (*Outbox, error) {
	if max <= 0 {
		max = DefaultMax
	}
	o := &Outbox{dir: dir, max: max, logger: slog.New(slog.DiscardHandler), next: 1}
	for _, opt := range opts {
		opt(o)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	for _, e := range entries {
		n, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		o.ids = append(o.ids, n)
	}
	slices.Sort(o.ids)
	if len(o.ids) > 0 {
		o.next = o.ids[len(o.ids)-1] + 1
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.trimLocked(); err != nil {
		return nil, err
	}
	return o, nil
}

func formatID(n uint64) string {
	s := strconv.FormatUint(n, 10)
	return strings.Repeat("0", idDigits-len(s)) + s
}

func parseID(id string) (uint64, bool) {
	if len(id) != idDigits {
		return 0, false
	}
	n, err := strconv.ParseUint(id, 10, 64)
	return n, err == nil && n > 0
}

func parseName(name string) (uint64, bool) {
	id, ok := strings.CutSuffix(name, suffix)
	if !ok {
		return 0, false
	}
	return parseID(id)
}

func (o *Outbox) path(n uint64) string { return filepath.Join(o.dir, formatID(n)+suffix) }

// Add stores payload as the newest event and returns its ID. The event is
// on disk (file and directory entry synced) when Add returns.
func (o *Outbox) Add(payload []byte) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.next
	if err := atomicfile.WriteFile(o.path(n), payload, filePerms); err != nil {
		return "", fmt.Errorf("outbox: add: %w", err)
	}
	o.next++
	o.ids = append(o.ids, n)
	if err := o.trimLocked(); err != nil {
		return "", err
	}
	return formatID(n), nil
}

// trimLocked drops the oldest events beyond the bound.
func (o *Outbox) trimLocked() error {
	over := len(o.ids) - o.max
	if over <= 0 {
		return nil
	}
	for _, n := range o.ids[:over] {
		if err := os.Remove(o.path(n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("outbox: drop oldest: %w", err)
		}
		o.logger.Warn("outbox full: dropped oldest undelivered event", "id", formatID(n), "max", o.max)
	}
	o.ids = slices.Delete(o.ids, 0, over)
	if err := atomicfile.SyncDir(o.dir); err != nil {
		return fmt.Errorf("outbox: drop oldest: %w", err)
	}
	return nil
}

// Next returns the oldest pending event, or ok=false when there is none.
// It does not remove the event: call Done once it is delivered.
func (o *Outbox) Next() (id string, payload []byte, ok bool, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.ids) > 0 {
		n := o.ids[0]
		b, err := os.ReadFile(o.path(n))
		if errors.Is(err, fs.ErrNotExist) {
			// Removed behind our back: nothing to deliver.
			o.logger.Warn("outbox event file vanished", "id", formatID(n))
			o.ids = o.ids[1:]
			continue
		}
		if err != nil {
			return "", nil, false, fmt.Errorf("outbox: read %s: %w", formatID(n), err)
		}
		return formatID(n), b, true, nil
	}
	return "", nil, false, nil
}

// Done removes a delivered event. Removing an event that is already gone
// (delivered twice, or dropped for the bound meanwhile) is not an error.
func (o *Outbox) Done(id string) error {
	n, ok := parseID(id)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownID, id)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	i := slices.Index(o.ids, n)
	if i < 0 {
		return nil
	}
	if err := os.Remove(o.path(n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("outbox: done %s: %w", id, err)
	}
	if err := atomicfile.SyncDir(o.dir); err != nil {
		return fmt.Errorf("outbox: done %s: %w", id, err)
	}
	o.ids = slices.Delete(o.ids, i, i+1)
	return nil
}

// Len is the number of pending events.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.ids)
}
