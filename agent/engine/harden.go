package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf"
)

// privateStaging makes sure the staging directory is a real directory
// (not a symlink to somewhere else) with mode 0700, creating it if needed.
func (e *Engine) privateStaging() error {
	dir := e.o.StagingDir
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("staging: %w", err)
	case !fi.IsDir():
		e.log.Warn("staging path is not a directory; replacing it", "path", dir, "mode", fi.Mode().String())
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("staging: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	return nil
}

// guardStaging runs the slot writer's guard on the staging directory
// before a download writes into path: every entry there that is a
// symlink, a hard link, not a regular file, or another name for a slot
// is removed (the entry only, never what it points to). Only the agent
// writes there, so such an entry was planted; sweeping the whole
// directory covers the file the download writes through too, whatever
// the TUF client names it (path, or a partial file beside it). When path
// itself was removed, the download starts again from 0.
func (e *Engine) guardStaging(path string, offset *int64) error {
	if err := e.privateStaging(); err != nil {
		return err
	}
	if filepath.Dir(filepath.Clean(path)) != filepath.Clean(e.o.StagingDir) {
		return fmt.Errorf("%w: staging file %s is outside %s", slot.ErrUnsafeStaging, path, e.o.StagingDir)
	}
	entries, err := os.ReadDir(e.o.StagingDir)
	if err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	devs := e.slotDevices()
	for _, ent := range entries {
		p := filepath.Join(e.o.StagingDir, ent.Name())
		err := slot.CheckStaging(p, devs)
		if !errors.Is(err, slot.ErrUnsafeStaging) {
			continue
		}
		e.log.Warn("unsafe staging entry removed", "err", err)
		if rerr := os.RemoveAll(p); rerr != nil { // a planted directory too; RemoveAll never follows a symlink
			return fmt.Errorf("%w (and removing it: %w)", err, rerr)
		}
		if p == filepath.Clean(path) && offset != nil {
			*offset = 0
		}
	}
	return slot.CheckStaging(path, devs)
}

// slotDevices lists the device of every slot of the board.
func (e *Engine) slotDevices() []string {
	var devs []string
	for _, g := range e.o.Board.SlotGroups {
		for _, s := range g.Slots {
			devs = append(devs, s.Device)
		}
	}
	return devs
}

// adoptFloor runs once per engine, before the journal is trusted: when the
// bootloader's sequence floor is above the journal's installed sequence,
// the journal was lost or reset (a corrupt file moved aside, a deleted
// file): the installed sequence is rebuilt from the floor, so
// anti-rollback holds.
func (e *Engine) adoptFloor() error {
	if e.floorChecked {
		return nil
	}
	if e.o.Board.LiveOnly() { // no bootloader environment: the journal alone
		e.floorChecked, e.floorKnown = true, false
		return nil
	}
	env, err := e.o.Env.Load()
	if err != nil {
		return fmt.Errorf("bootloader environment: %w", err)
	}
	e.floorChecked = true
	floor, err := slot.ParseFloor(env)
	if err != nil {
		e.log.Warn("sequence floor unreadable; the journal's is rewritten there", "err", err)
		e.floorKnown = false
		return nil
	}
	e.floor, e.floorKnown = floor, true
	rec := e.o.Journal.Record()
	if floor <= rec.Installed.Sequence {
		return nil
	}
	e.log.Warn("journal is behind the bootloader's sequence floor; rebuilding it from there",
		"journal_sequence", rec.Installed.Sequence, "floor", floor)
	rec.Installed.Sequence = floor
	return e.save(rec)
}

// mirrorFloor keeps the bootloader's sequence floor equal to the
// journal's installed sequence after every save that changed it. A failure
// is logged: the journal still holds the number.
func (e *Engine) mirrorFloor(rec journal.Record) {
	seq := rec.Installed.Sequence
	if !e.floorChecked || e.o.Board.LiveOnly() || (e.floorKnown && e.floor == seq) {
		return
	}
	err := bootenv.Update(e.o.Env, func(env bootenv.Env) error {
		if seq == 0 {
			delete(env, slot.FloorVar)
		} else {
			env[slot.FloorVar] = strconv.FormatUint(seq, 10)
		}
		return nil
	})
	if err != nil {
		e.log.Warn("sequence floor not written to the bootloader environment", "sequence", seq, "err", err)
		return
	}
	e.floor, e.floorKnown = seq, true
}

// bootState reads the boot state from env; a malformed one (a BOOT_ORDER
// naming unknown slots, a counter that is not a number) is repaired
// rather than failed on, which used to stop every start of the agent
// and every update until someone fixed the environment by hand.
func (e *Engine) bootState(env bootenv.Env) (slot.State, error) {
	s, err := slot.ParseState(env, e.o.Board.SlotNames())
	if !errors.Is(err, slot.ErrBadState) {
		return s, err
	}
	s, notes, rerr := slot.RepairState(env, e.o.Board.SlotNames())
	if rerr != nil {
		return s, rerr
	}
	e.log.Warn("malformed boot state repaired", "was", notes, "now", s.String())
	return s, nil
}

// ErrRetry wraps a failure that may pass: the release is not blocked, and
// the caller tries the same notice again after a back-off.
var ErrRetry = errors.New("failed for now; retry later")

// suspect tells failures that a network fault or a man in the middle can
// cause, and that may pass, from answers about the release itself:
//
//   - retried: target bytes that do not match their signed length or hash
//     (tampered or truncated in transit, a stale cache), TUF metadata that
//     fails its signature, expiry, version or format checks (forged,
//     replayed or frozen by whoever is in the middle, or a repository
//     half-way through a publish), and a target the current metadata does
//     not list yet (a notice that outran the publish, or frozen metadata);
//   - final: everything about a manifest TUF verified (malformed, another
//     board, arch or class, an old or rolled-back sequence, an agent too
//     old, nothing that applies), the slot checks of this device, and a
//     health verdict. Those cannot change for the same release.
//
// Transfer errors are retried too, by the caller's shorter back-off
// (transient).
func suspect(err error) bool {
	for _, target := range []error{
		tuf.ErrHash, tuf.ErrLength, tuf.ErrSignature, tuf.ErrExpired, tuf.ErrRollback,
		tuf.ErrMalformed, tuf.ErrUnknownTarget,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// beforeBootloader reports whether u is still fetching or writing the
// inactive slot: nothing was applied and the bootloader is untouched.
func beforeBootloader(u *journal.Update) bool {
	switch u.Step {
	case journal.StepPlanned, journal.StepDownloading, journal.StepDownloaded, journal.StepInstalling, journal.StepInstalled:
		return true
	}
	return false
}

// retryLater ends an update that failed in a way that may pass: like an
// abort (staging dropped, the fleet told "failed" with the reason), but
// the outcome is marked for retry, so the same notice is tried again.
func (e *Engine) retryLater(rec journal.Record, cause error) error {
	cause = fmt.Errorf("%w "+transport.RetrySuffix, cause)
	if err := e.abort(rec, cause); err != nil && !errors.Is(err, ErrFailed) {
		return err
	}
	r := e.o.Journal.Record()
	if r.Last != nil {
		r.Last.Retry = true
		if err := e.save(r); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrRetry, cause)
}

// suspectFailure reports a release whose metadata or manifest did not
// verify in a way that may pass (nothing was journalled yet).
func (e *Engine) suspectFailure(release string, cause error) error {
	cause = fmt.Errorf("%w "+transport.RetrySuffix, cause)
	e.log.Warn("release not verified; will retry", "release", release, "err", cause)
	rec := e.o.Journal.Record()
	e.o.Report(transport.Status{
		State:     transport.StateFailed,
		Release:   release,
		Reason:    cause.Error(),
		Slot:      e.booted(),
		Installed: rec.Installed.Name,
	})
	return fmt.Errorf("%w: %w", ErrRetry, cause)
}
