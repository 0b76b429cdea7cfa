package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
)

// ErrDataDir means the data directory cannot hold the agent's state: it
// is read-only, full, or not a directory.
var ErrDataDir = errors.New("data directory unusable")

// faultRecheck is how often a faulty data directory is tried again.
var faultRecheck = time.Minute

// probeSize is what the data directory must take for the agent to run:
// room for a journal save and a few status events.
const probeSize = 64 << 10

// checkDataDir makes sure dir exists and takes a write of probeSize,
// fsynced, then removes the probe.
func checkDataDir(dir string) error {
	if err := privateDir(dir); err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	return nil
}

// localFault tells errors that may come from the data directory: a
// journal that cannot be saved, a file system that is full or read-only,
// an I/O error. The caller probes the directory to be sure.
func localFault(err error) bool {
	for _, target := range []error{journal.ErrSave, syscall.ENOSPC, syscall.EROFS, syscall.EDQUOT, syscall.EIO} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// openJournal opens the journal; one that cannot be understood is moved
// aside (journal.json.corrupt-TIME) and started afresh, and the returned
// note says so. The engine then rebuilds the installed sequence from the
// bootloader's floor.
func openJournal(path string, logger *slog.Logger) (*journal.Journal, string, error) {
	j, err := journal.Open(path)
	if !errors.Is(err, journal.ErrCorrupt) {
		return j, "", err
	}
	aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
	if rerr := os.Rename(path, aside); rerr != nil {
		return nil, "", fmt.Errorf("%w (moving it aside: %w)", err, rerr)
	}
	logger.Error("journal corrupt; moved aside and rebuilt", "err", err, "aside", aside)
	j, jerr := journal.Open(path)
	if jerr != nil {
		return nil, "", jerr
	}
	return j, fmt.Sprintf("journal corrupt (%v): moved aside to %s and rebuilt; the installed sequence comes from the bootloader's %s",
		err, filepath.Base(aside), slot.FloorVar), nil
}

// runFault keeps a device whose data directory is unusable reachable: it
// connects with an in-memory status queue, reports StateFault with the
// cause, keeps the booted slot bootable, ignores notices, and returns nil
// once the directory takes writes again (or ctx ends).
func runFault(ctx context.Context, cfg *config.Config, logger *slog.Logger, cause error) error {
	logger.Error("data directory unusable; updates paused until it recovers", "dir", cfg.DataDir, "err", cause)
	b, err := LoadBoard(cfg)
	if err != nil {
		return err
	}
	env, err := OpenEnv(b)
	if err != nil {
		return err
	}
	m := &machine{board: b}
	q := &memQueue{}
	session, closeSession, err := startSession(ctx, cfg, b, logger, q, true, func(n transport.Notice) {
		logger.Warn("release notice ignored: the data directory is unusable", "release", n.Release)
	})
	if err != nil {
		return err
	}
	defer closeSession()
	report := reporter(cfg, logger, nil, q.Add, session.Kick) // no Seq: status.seq cannot be written
	booted, _, berr := m.Booted()
	if berr != nil {
		logger.Warn("booted slot unknown", "err", berr)
	} else if err := keepBootable(env, b, booted); err != nil {
		logger.Error("could not refill the booted slot's attempts", "slot", booted, "err", err)
	}
	report(transport.Status{State: transport.StateFault, Slot: booted,
		Reason: fmt.Sprintf("updates paused: %v", cause)})
	t := time.NewTicker(faultRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := checkDataDir(cfg.DataDir); err == nil {
				logger.Info("data directory usable again; resuming", "dir", cfg.DataDir)
				return nil
			}
		}
	}
}

// keepBootable refills the booted slot's attempts, as a start does,
// unless the slot is on a trial boot that used its last try (0 left):
// without the journal the agent cannot tell whether that trial passed its
// health checks, so the bootloader's fallback stays armed.
func keepBootable(env bootenv.Store, b boards.Board, booted string) error {
	return bootenv.Update(env, func(e bootenv.Env) error {
		s, err := slot.ParseState(e, b.SlotNames())
		if err != nil {
			return err
		}
		if s.Left[booted] > 0 {
			s.MarkGood(booted, b.Bootloader.Attempts).Apply(e)
		}
		return nil
	})
}

// memQueue is a status queue in memory, for when the outbox's directory
// cannot be written.
type memQueue struct {
	mu    sync.Mutex
	items [][]byte
	first int // sequence number of items[0]
}

var _ mqtt.Queue = (*memQueue)(nil)

func (q *memQueue) Add(b []byte) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) >= 100 {
		q.items, q.first = q.items[1:], q.first+1
	}
	q.items = append(q.items, b)
	return fmt.Sprint(q.first + len(q.items) - 1), nil
}

func (q *memQueue) Next() (string, []byte, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return "", nil, false, nil
	}
	return fmt.Sprint(q.first), q.items[0], true, nil
}

func (q *memQueue) Done(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 && id == fmt.Sprint(q.first) {
		q.items, q.first = q.items[1:], q.first+1
	}
	return nil
}
