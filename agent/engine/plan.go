package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/manifest"
)

// Paths an update can take.
const (
	PathAB   = "ab"
	PathLive = "live"
)

// Policies: how the engine chooses between the live path and the image
// (config's update.policy).
const (
	PolicyLiveFirst         = "live-first"           // live when every live component applies here, else the image
	PolicyImageOnly         = "image-only"           // always the image
	PolicyLiveNowImageLater = "live-now-image-later" // live now, and the image at the maintenance window
)

var (
	// ErrRefused wraps every reason a release is not applied here.
	ErrRefused = errors.New("refused")
	// ErrRolledBack means the release was tried on this device and rolled back.
	ErrRolledBack = errors.New("release was rolled back on this device")
	// ErrNothingToApply means no component of the release fits this board.
	ErrNothingToApply = errors.New("no component applies to this board")
	// ErrNotLive means a live component cannot be applied here and the
	// release names no image to fall back to.
	ErrNotLive = errors.New("cannot be applied live and the release gives no fallback image")
)

// Plan is what the engine will do with one release on this device.
type Plan struct {
	Path   string // PathAB or PathLive
	Why    string // why this path, for the report
	Image  *manifest.Image
	Group  boards.SlotGroup
	From   string // booted slot
	Target string // slot to write; the booted slot on the live path

	// ImageName is the image component Image is (A/B path).
	ImageName string
	// Live are the live components to apply, in manifest order (live path).
	Live []*manifest.Component
	// Fallback is the image component installed if the live path fails,
	// FallbackSlot the slot it goes to; "" when the release names none.
	Fallback, FallbackSlot string
	// Deferred is the image component the live-now-image-later policy
	// installs at the maintenance window; "" for none.
	Deferred string
}

// Facts are what the planner knows about the device, gathered at the edge.
type Facts struct {
	Device     manifest.Device // board, arch, class, installed sequence, agent version
	RolledBack uint64          // highest sequence rolled back here
	Board      boards.Board
	Booted     string // booted slot name
	Policy     string // PolicyLiveFirst ("" too), PolicyImageOnly or PolicyLiveNowImageLater
	// LiveCheck holds, per live component name, why it cannot be applied
	// live here and now (the appliers' Check); nil or absent: it can.
	LiveCheck map[string]error
}

// MakePlan decides how a verified manifest is applied on this device. It is
// pure: the same manifest and facts give the same plan or the same refusal.
//
// A release without live components takes the A/B path. With live
// components, the live path is taken when every one of them can be
// applied here and now and the policy allows it; otherwise the release's
// fallback image (named by the live components) goes to the inactive
// slot, and without one the release is refused.
func MakePlan(m *manifest.Manifest, f Facts) (Plan, error) {
	if err := manifest.Check(m, f.Device); err != nil {
		return Plan{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if m.Sequence <= f.RolledBack {
		return Plan{}, fmt.Errorf("%w: %s (sequence %d): %w", ErrRefused, m.Name, m.Sequence, ErrRolledBack)
	}
	if f.Board.LiveOnly() {
		return planLiveOnly(m, f)
	}
	var live []*manifest.Component
	for i := range m.Components {
		if c := &m.Components[i]; c.Kind.Live() {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return planImage(m, f, "", "release carries no live component: full image on the inactive slot")
	}
	fallback, err := fallbackOf(m, live, f.Board)
	if err != nil {
		return Plan{}, err
	}
	if f.Policy == PolicyImageOnly {
		if fallback == "" {
			return Plan{}, fmt.Errorf("%w: policy %s, and release %s carries live components without a fallback image", ErrRefused, PolicyImageOnly, m.Name)
		}
		return planImage(m, f, fallback, fmt.Sprintf("policy %s: image %s on the inactive slot instead of %d live component(s)", PolicyImageOnly, fallback, len(live)))
	}
	var reasons []string
	for _, c := range live {
		if err := f.LiveCheck[c.Name]; err != nil {
			reasons = append(reasons, fmt.Sprintf("%s %s: %v", c.Kind, c.Name, err))
		}
	}
	if len(reasons) > 0 {
		why := strings.Join(reasons, "; ")
		if fallback == "" {
			return Plan{}, fmt.Errorf("%w: %s: %w", ErrRefused, why, ErrNotLive)
		}
		return planImage(m, f, fallback, fmt.Sprintf("not live: %s; image %s on the inactive slot instead", why, fallback))
	}
	p := Plan{Path: PathLive, From: f.Booted, Target: f.Booted, Live: live, Fallback: fallback}
	names := make([]string, len(live))
	for i, c := range live {
		names[i] = describe(c)
	}
	p.Why = "every live component applies here and now: " + strings.Join(names, ", ")
	if fallback != "" {
		fp, err := planImage(m, f, fallback, "")
		if err != nil {
			return Plan{}, err
		}
		p.FallbackSlot = fp.Target
		if f.Policy == PolicyLiveNowImageLater {
			p.Deferred = fallback
			p.Why += fmt.Sprintf("; policy %s: image %s follows at the maintenance window", PolicyLiveNowImageLater, fallback)
		}
	}
	return p, nil
}

// describe names a live component for the report.
func describe(c *manifest.Component) string {
	switch {
	case c.KernelPatch != nil:
		return fmt.Sprintf("kernel live patch %s for %s", c.KernelPatch.Name, c.KernelPatch.Release)
	case c.UserPatch != nil:
		return fmt.Sprintf("userspace live patch %s of %s", c.Name, c.UserPatch.Soname)
	}
	return c.Name
}

// fallbackOf returns the image component the live components fall back
// to: the one they name, which must fit the board. Live components naming
// different images, or an image for a slot group the board lacks, are a
// refusal; none named is "".
func fallbackOf(m *manifest.Manifest, live []*manifest.Component, b boards.Board) (string, error) {
	name := ""
	for _, c := range live {
		fb := c.Fallback()
		if fb == "" {
			continue
		}
		if name != "" && fb != name {
			return "", fmt.Errorf("%w: live components fall back to different images (%s, %s)", ErrRefused, name, fb)
		}
		name = fb
	}
	if name == "" {
		return "", nil
	}
	for _, c := range live {
		if c.Fallback() == "" {
			// One component without a fallback: the image does not carry
			// its fix, so the release cannot fall back as a whole.
			return "", nil
		}
	}
	img := m.Component(name).Image // Validate: an image component
	if _, err := b.Group(img.SlotGroup); err != nil {
		return "", fmt.Errorf("%w: fallback image %s: %w", ErrRefused, name, err)
	}
	return name, nil
}

// planImage plans the A/B path with image component name ("" = the first
// image that fits the board).
func planImage(m *manifest.Manifest, f Facts, name, why string) (Plan, error) {
	for i := range m.Components {
		c := &m.Components[i]
		if c.Kind != manifest.KindImage || c.Image == nil || (name != "" && c.Name != name) {
			continue
		}
		img := c.Image
		g, err := f.Board.Group(img.SlotGroup)
		if err != nil {
			continue
		}
		target, err := otherSlot(g, f.Booted)
		if err != nil {
			return Plan{}, err
		}
		return Plan{
			Path:      PathAB,
			Why:       why,
			Image:     img,
			ImageName: c.Name,
			Group:     g,
			From:      f.Booted,
			Target:    target,
		}, nil
	}
	return Plan{}, fmt.Errorf("%w: %w (board %s)", ErrRefused, ErrNothingToApply, f.Board.Name)
}

func otherSlot(g boards.SlotGroup, booted string) (string, error) {
	names := make([]string, len(g.Slots))
	for i, s := range g.Slots {
		names[i] = s.Name
	}
	target, err := slot.Other(names, booted)
	if err != nil {
		return "", fmt.Errorf("%w: slot group %q: %w", ErrRefused, g.Name, err)
	}
	return target, nil
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
