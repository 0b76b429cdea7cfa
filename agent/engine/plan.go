package engine

import (
	"errors"
	"fmt"

	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/manifest"
)

// Paths an update can take.
const (
	PathAB   = "ab"
	PathLive = "live"
)

var (
	// ErrRefused wraps every reason a release is not applied here.
	ErrRefused = errors.New("refused")
	// ErrRolledBack means the release was tried on this device and rolled back.
	ErrRolledBack = errors.New("release was rolled back on this device")
	// ErrNothingToApply means no component of the release fits this board.
	ErrNothingToApply = errors.New("no component applies to this board")
)

// Plan is what the engine will do with one release on this device.
type Plan struct {
	Path   string // PathAB or PathLive
	Why    string // why this path, for the report
	Image  *manifest.Image
	Group  boards.SlotGroup
	From   string // booted slot
	Target string // slot to write
}

// Facts are what the planner knows about the device, gathered at the edge.
type Facts struct {
	Device     manifest.Device // board, arch, class, installed sequence, agent version
	RolledBack uint64          // highest sequence rolled back here
	Board      boards.Board
	Booted     string // booted slot name
}

// MakePlan decides how a verified manifest is applied on this device. It is
// pure: the same manifest and facts give the same plan or the same refusal.
func MakePlan(m *manifest.Manifest, f Facts) (Plan, error) {
	if err := manifest.Check(m, f.Device); err != nil {
		return Plan{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if m.Sequence <= f.RolledBack {
		return Plan{}, fmt.Errorf("%w: %s (sequence %d): %w", ErrRefused, m.Name, m.Sequence, ErrRolledBack)
	}
	for _, img := range m.Images() {
		g, err := f.Board.Group(img.SlotGroup)
		if err != nil {
			continue
		}
		names := make([]string, len(g.Slots))
		for i, s := range g.Slots {
			names[i] = s.Name
		}
		target, err := slot.Other(names, f.Booted)
		if err != nil {
			return Plan{}, fmt.Errorf("%w: slot group %q: %w", ErrRefused, g.Name, err)
		}
		return Plan{
			Path:   PathAB,
			Why:    "release carries no live component: full image on the inactive slot",
			Image:  img,
			Group:  g,
			From:   f.Booted,
			Target: target,
		}, nil
	}
	return Plan{}, fmt.Errorf("%w: %w (board %s)", ErrRefused, ErrNothingToApply, f.Board.Name)
}

// device returns the device path of slot name in group g.
func device(g boards.SlotGroup, name string) (string, error) {
	for _, s := range g.Slots {
		if s.Name == name {
			return s.Device, nil
		}
	}
	return "", fmt.Errorf("slot group %q has no slot %q", g.Name, name)
}
