package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/graft-dev/graft/manifest"
)

// ErrLiveOnly means a release needs an image on a board that has no A/B
// slots (boards.Board.LiveOnly: a server). Only live components apply
// there.
var ErrLiveOnly = errors.New("this board takes live patches only: it has no A/B slots for an image")

// planLiveOnly is MakePlan for a board without a bootloader or slots. A
// release applies when all its live components apply here and now; a
// fallback image is never installed (the live path's failure is then the
// release's failure). A release that only an image would carry out is
// refused with the reason.
func planLiveOnly(m *manifest.Manifest, f Facts) (Plan, error) {
	var live []*manifest.Component
	var images []string
	for i := range m.Components {
		switch c := &m.Components[i]; {
		case c.Kind.Live():
			live = append(live, c)
		case c.Kind == manifest.KindImage:
			images = append(images, c.Name)
		}
	}
	refuse := func(why string) (Plan, error) {
		return Plan{}, fmt.Errorf("%w: board %s: %s: %w", ErrRefused, f.Board.Name, why, ErrLiveOnly)
	}
	if len(live) == 0 {
		return refuse(fmt.Sprintf("release %s carries only the image %s", m.Name, strings.Join(images, ", ")))
	}
	if f.Policy == PolicyImageOnly {
		return refuse(fmt.Sprintf("policy %s asks for the image instead of %d live component(s)", PolicyImageOnly, len(live)))
	}
	var reasons []string
	for _, c := range live {
		if err := f.LiveCheck[c.Name]; err != nil {
			reasons = append(reasons, fmt.Sprintf("%s %s: %v", c.Kind, c.Name, err))
		}
	}
	if len(reasons) > 0 {
		return refuse("not live: " + strings.Join(reasons, "; ") + ", and no image can be installed instead")
	}
	names := make([]string, len(live))
	for i, c := range live {
		names[i] = describe(c)
	}
	p := Plan{Path: PathLive, From: f.Booted, Target: f.Booted, Live: live,
		Why: "every live component applies here and now: " + strings.Join(names, ", ")}
	if len(images) > 0 {
		p.Why += fmt.Sprintf("; image %s not installed (board %s is live-only)", strings.Join(images, ", "), f.Board.Name)
	}
	return p, nil
}
