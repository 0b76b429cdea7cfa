package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/transport"
)

// ErrNoPrevious: the other slot holds no release that ran here (never
// written, or written by an update that did not commit) or is marked bad,
// so there is nothing known-good to roll back to.
var ErrNoPrevious = errors.New("the other slot holds no release to roll back to")

// previous is what the journal records as the other slot's release when
// next is committed: what ran before it. The factory image has no name,
// but its slot is known: the one the update left.
func (e *Engine) previous(installed, next journal.Release) journal.Release {
	if installed.Slot != "" || next.Slot == "" {
		return installed
	}
	if s, err := slot.Other(e.o.Board.SlotNames(), next.Slot); err == nil {
		installed.Slot = s
	}
	return installed
}

// Rollback boots the release in the other slot by hand (the serial
// console's rollback): with no update in flight, the other slot holding
// the release that ran before (journal's Previous) and still bootable (in
// BOOT_ORDER with attempts left), it puts that slot first (the booted one stays
// as its fallback), records the swap and who asked in the journal, reports
// it as rolled back, and reboots. The boot state is written before the
// journal, so a power cut between the two boots the other slot and the
// start-up check reads it as a fallback: the same outcome.
func (e *Engine) Rollback(ctx context.Context, who string) (string, error) {
	if e.o.Board.LiveOnly() {
		return "", fmt.Errorf("%w: board %s has no A/B slots", ErrNoPrevious, e.o.Board.Name)
	}
	booted, _, err := e.o.Machine.Booted()
	if err != nil {
		return "", fmt.Errorf("booted slot: %w", err)
	}
	rec := e.o.Journal.Record()
	if u := rec.Update; u != nil {
		return "", fmt.Errorf("%w: release %s is at step %s; let it finish or fail first", ErrBusy, u.Release.Name, u.Step)
	}
	target, err := slot.Other(e.o.Board.SlotNames(), booted)
	if err != nil {
		return "", err
	}
	env, err := e.o.Env.Load()
	if err != nil {
		return "", fmt.Errorf("boot environment: %w", err)
	}
	st, err := slot.ParseState(env, e.o.Board.SlotNames())
	if err != nil {
		return "", err
	}
	if !slices.Contains(st.Order, target) || st.Left[target] == 0 {
		return "", fmt.Errorf("%w: slot %s is marked bad (%s)", ErrNoPrevious, target, st)
	}
	prev := rec.Previous
	if prev.Slot != target {
		return "", fmt.Errorf("%w: the journal knows of no release that ran in slot %s", ErrNoPrevious, target)
	}
	if err := e.editBootState(func(s slot.State) slot.State {
		return s.MarkGood(target, e.o.Board.Bootloader.Attempts) // first; the booted slot stays its fallback
	}); err != nil {
		return "", err
	}
	left := rec.Installed
	reason := fmt.Sprintf("rolled back by hand from the serial console by %s: slot %s (%s) to slot %s (%s)", who, left.Slot, left.Name, prev.Slot, prev.Name)
	rec.Installed, rec.Previous = prev, left
	rec.Last = &journal.Outcome{Release: left.Name, Sequence: left.Sequence, State: string(transport.StateRolledBack), Reason: reason, Time: e.o.Now().UTC()}
	if err := e.save(rec); err != nil {
		return "", err
	}
	e.o.Report(transport.Status{State: transport.StateRolledBack, Release: left.Name, Sequence: left.Sequence, Reason: reason, Slot: booted, Installed: prev.Name})
	e.log.Warn("rollback by hand", "from", left.Slot, "to", prev.Slot, "by", who)
	return prev.Slot, e.o.Machine.Reboot(ctx)
}
