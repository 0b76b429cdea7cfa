package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf"
)

// LiveApplier applies one kind of live component. agent/klp (kernel, via a small adapter you write) and agent/userpatch (userspace) implement it.
type LiveApplier interface {
	// Check reports whether c can be applied live here and now. A non-nil error's message is the reason the status report shows.
	Check(ctx context.Context, c *manifest.Component) error
	// Apply applies c from verified local copies of its TUF targets (target name → path) and returns a one-line summary for the status report.
	Apply(ctx context.Context, c *manifest.Component, files map[string]string) (string, error)
	// Revert undoes c.
	Revert(ctx context.Context, c *manifest.Component) error
}

// LiveInventory is implemented by live appliers that can tell, from
// the device itself, which components are in force now (agent/klp reads
// /sys/kernel/livepatch). The engine's account of live components
// (journal.Record.Live) follows it at every start and after every apply,
// never what a manifest declared (such as a kernel patch's replace flag).
type LiveInventory interface {
	ActiveComponents() ([]string, error)
}

// ErrNoApplier means this agent has no LiveApplier for a component's kind.
var ErrNoApplier = errors.New("no applier")

// ErrLiveTarget means a live target's bytes differ from the manifest's
// hash (TUF verified them against the repository's own).
var ErrLiveTarget = errors.New("live target does not match the manifest")

// applier returns the applier of c's kind.
func (e *Engine) applier(c *manifest.Component) (LiveApplier, error) {
	a := e.o.Live[c.Kind]
	if a == nil {
		return nil, fmt.Errorf("this agent cannot apply %s components: %w", c.Kind, ErrNoApplier)
	}
	return a, nil
}

// liveChecks asks each live component's applier whether it can be
// applied here and now.
func (e *Engine) liveChecks(ctx context.Context, m *manifest.Manifest) map[string]error {
	if e.o.Policy == PolicyImageOnly {
		return nil
	}
	out := map[string]error{}
	for i := range m.Components {
		c := &m.Components[i]
		if !c.Kind.Live() {
			continue
		}
		a, err := e.applier(c)
		if err == nil {
			err = a.Check(ctx, c)
		}
		if err != nil {
			out[c.Name] = err
			e.log.Info("live component cannot be applied here", "component", c.Name, "kind", c.Kind.String(), "why", err)
		}
	}
	return out
}

// liveComponents returns the live components of the update's manifest, in
// manifest order.
func liveComponents(u *journal.Update) ([]*manifest.Component, error) {
	m, err := manifest.Decode(u.Manifest)
	if err != nil {
		return nil, err
	}
	var out []*manifest.Component
	for i := range m.Components {
		if c := &m.Components[i]; c.Kind.Live() {
			out = append(out, c)
		}
	}
	return out, nil
}

// liveTarget is one TUF target a live component is applied from.
type liveTarget struct {
	name   string
	sha256 []byte
}

func targetsOf(c *manifest.Component) []liveTarget {
	switch {
	case c.KernelPatch != nil:
		return []liveTarget{{c.KernelPatch.Target, c.KernelPatch.SHA256}}
	case c.UserPatch != nil:
		var ts []liveTarget
		for _, b := range c.UserPatch.Bundles {
			ts = append(ts, liveTarget{b.Target, b.SHA256})
		}
		return ts
	}
	return nil
}

// liveDownload fetches every live target through TUF (verified length
// and hashes) into staging and checks it against the manifest's hash.
func (e *Engine) liveDownload(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	comps, err := liveComponents(u)
	if err != nil {
		return err
	}
	if err := e.o.Source.Refresh(ctx); err != nil {
		return fmt.Errorf("TUF refresh: %w", err)
	}
	if u.Step != journal.StepDownloading {
		u.Step = journal.StepDownloading
		if err := e.save(rec); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(e.o.StagingDir, 0o700); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	for _, c := range comps {
		for _, t := range targetsOf(c) {
			if p, ok := u.Files[t.name]; ok && fileHas(p, t.sha256) {
				continue
			}
			dest := filepath.Join(e.o.StagingDir, stagingName(u.Release.Name, t.name))
			path, err := e.o.Source.Download(ctx, t.name, tuf.DownloadOptions{Dest: dest})
			if err != nil {
				return fmt.Errorf("download %s: %w", t.name, err)
			}
			if !fileHas(path, t.sha256) {
				os.Remove(path)
				return fmt.Errorf("%w: %s (component %s)", ErrLiveTarget, t.name, c.Name)
			}
			if u.Files == nil {
				u.Files = map[string]string{}
			}
			u.Files[t.name] = path
			if err := e.save(rec); err != nil {
				return err
			}
		}
	}
	u.Step = journal.StepApplying
	return e.save(rec)
}

// fileHas reports whether the file at path hashes to sum.
func fileHas(path string, sum []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return bytes.Equal(h.Sum(nil), sum)
}

// liveApply applies the live components one by one, journalling each
// before and after. A component that fails sends the update to
// Unapplying.
func (e *Engine) liveApply(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	comps, err := liveComponents(u)
	if err != nil {
		return err
	}
	for _, c := range comps {
		if slices.Contains(u.Applied, c.Name) {
			continue
		}
		a, err := e.applier(c)
		if err == nil {
			u.Applying = c.Name
			if err = e.save(rec); err != nil {
				return err
			}
			e.log.Info("applying live component", "release", u.Release.Name, "component", c.Name, "kind", c.Kind.String())
			var summary string
			summary, err = a.Apply(ctx, c, u.Files)
			if err == nil {
				u.Applied, u.Applying = append(u.Applied, c.Name), ""
				u.Summaries = append(u.Summaries, summary)
				e.reconcileLive(&rec) // a patch this one replaced is gone now
				if err := e.save(rec); err != nil {
					return err
				}
				e.log.Info("live component applied", "component", c.Name, "summary", summary)
				e.report(rec, u, transport.StateInstalling, summary, 0, 0)
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err() // resumed later: Apply is idempotent
			}
			// A failed Apply leaves nothing applied (the applier's
			// contract); only an apply cut off by a crash is undone.
			u.Applying = ""
		}
		u.Reason = fmt.Sprintf("%s %s: %v", c.Kind, c.Name, err)
		u.Step = journal.StepUnapplying
		e.log.Warn("live apply failed; reverting what was applied", "release", u.Release.Name, "err", u.Reason)
		return e.save(rec)
	}
	u.Step = journal.StepVerifying
	return e.save(rec)
}

// unapply reverts the live components of the update applied so far (the
// one in flight first, then the others in reverse order), then falls
// back to the image, or ends the update.
func (e *Engine) unapply(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	comps, err := liveComponents(u)
	if err != nil {
		return err
	}
	byName := map[string]*manifest.Component{}
	for _, c := range comps {
		byName[c.Name] = c
	}
	undo := slices.Clone(u.Applied)
	if u.Applying != "" && !slices.Contains(undo, u.Applying) {
		undo = append(undo, u.Applying)
	}
	var failed []string
	for i := len(undo) - 1; i >= 0; i-- {
		c := byName[undo[i]]
		if c == nil {
			continue
		}
		a, err := e.applier(c)
		if err == nil {
			err = a.Revert(ctx, c)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.log.Error("reverting live component failed", "component", c.Name, "err", err)
			failed = append(failed, fmt.Sprintf("reverting %s failed: %v", c.Name, err))
			continue
		}
		e.log.Info("live component reverted", "component", c.Name)
		u.Applied = slices.DeleteFunc(u.Applied, func(n string) bool { return n == c.Name })
		if u.Applying == c.Name {
			u.Applying = ""
		}
		if err := e.save(rec); err != nil {
			return err
		}
	}
	reason := u.Reason
	if len(undo) > 0 && len(failed) == 0 {
		reason += fmt.Sprintf("; reverted %s", strings.Join(undo, ", "))
	}
	if len(failed) > 0 {
		reason += "; " + strings.Join(failed, "; ")
	}
	e.dropFiles(u)
	switch {
	case u.HealthFailed:
		return e.liveRolledBack(rec, reason)
	case u.Fallback != "" && len(failed) == 0:
		why := fmt.Sprintf("live path failed: %s; image %s on the inactive slot instead", reason, u.Fallback)
		e.log.Warn("falling back to the image", "release", u.Release.Name, "image", u.Fallback, "why", reason)
		u.Path, u.Image, u.Release.Slot, u.Why = PathAB, u.Fallback, u.FallbackSlot, why
		u.Reason, u.Applied, u.Applying, u.Summaries, u.Files = "", nil, "", nil, nil
		u.Deferred = ""
		u.Step = journal.StepPlanned
		if err := e.save(rec); err != nil {
			return err
		}
		e.report(rec, u, transport.StateDownloading, why, 0, 0)
		return nil
	}
	return e.abort(rec, errors.New(reason))
}

// liveVerify runs the health checks after a live apply, then commits or
// reverts.
func (e *Engine) liveVerify(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	if e.o.Health != nil {
		e.report(rec, u, transport.StateVerifying, "", 0, 0)
		if err := e.o.Health.Check(ctx, u.From); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			u.HealthFailed, u.Reason = true, fmt.Sprintf("health checks after the live apply: %v", err)
			u.Step = journal.StepUnapplying
			return e.save(rec)
		}
	}
	return e.liveCommit(rec)
}

// liveCommit records the live release as installed on the booted slot.
func (e *Engine) liveCommit(rec journal.Record) error {
	u := rec.Update
	comps, err := liveComponents(u)
	if err != nil {
		return err
	}
	now := e.o.Now().UTC()
	for i, c := range comps {
		// A component of the same name is superseded. Which earlier
		// kernel patches a new one replaced is the kernel's answer, not
		// the manifest's (reconcileLive, below).
		rec.Live = slices.DeleteFunc(rec.Live, func(l journal.Live) bool { return l.Component.Name == c.Name })
		summary := ""
		if i < len(u.Summaries) {
			summary = u.Summaries[i]
		}
		rec.Live = append(rec.Live, journal.Live{Release: u.Release.Name, Sequence: u.Release.Sequence, Component: *c, Summary: summary, Time: now})
	}
	e.reconcileLive(&rec)
	rec.Deferred = nil
	if u.Deferred != "" {
		rec.Deferred = &journal.Deferred{Release: u.Release, ManifestTarget: u.ManifestTarget, Manifest: u.Manifest, Image: u.Deferred}
		rec.Deferred.Release.Slot = ""
	}
	rec.Installed = u.Release
	rec.Update = nil
	reason := "live: " + strings.Join(u.Summaries, "; ")
	rec.Last = &journal.Outcome{Release: u.Release.Name, Sequence: u.Release.Sequence, State: string(transport.StateCommitted), Path: u.Path, Reason: reason, Time: now}
	if err := e.save(rec); err != nil {
		return err
	}
	e.dropFiles(u)
	e.log.Info("committed live", "release", u.Release.Name, "components", len(comps), "deferred_image", u.Deferred)
	e.report(rec, u, transport.StateCommitted, reason, 0, 0)
	return nil
}

// reconcileLive drops from rec.Live the components that the appliers
// able to tell (LiveInventory) no longer have in force: a kernel patch
// that a later one replaced, or one that did not survive a reboot. It
// reports whether it changed rec. An applier that cannot answer now
// leaves its components as they are.
func (e *Engine) reconcileLive(rec *journal.Record) bool {
	active := map[manifest.ComponentKind][]string{}
	for kind, a := range e.o.Live {
		inv, ok := a.(LiveInventory)
		if !ok {
			continue
		}
		names, err := inv.ActiveComponents()
		if err != nil {
			e.log.Warn("live components in force unknown", "kind", kind.String(), "err", err)
			continue
		}
		active[kind] = names
	}
	n := len(rec.Live)
	rec.Live = slices.DeleteFunc(rec.Live, func(l journal.Live) bool {
		names, ok := active[l.Component.Kind]
		if ok && !slices.Contains(names, l.Component.Name) {
			e.log.Info("live component no longer in force; dropped from the record", "component", l.Component.Name, "release", l.Release)
			return true
		}
		return false
	})
	return len(rec.Live) != n
}

// liveRolledBack ends a live update whose health checks failed.
func (e *Engine) liveRolledBack(rec journal.Record, reason string) error {
	u := rec.Update
	rec.RolledBack = max(rec.RolledBack, u.Release.Sequence)
	rec.Update = nil
	rec.Last = &journal.Outcome{Release: u.Release.Name, Sequence: u.Release.Sequence, State: string(transport.StateRolledBack), Path: u.Path, Reason: reason, Time: e.o.Now().UTC()}
	if err := e.save(rec); err != nil {
		return err
	}
	e.log.Warn("live release rolled back", "release", u.Release.Name, "reason", reason)
	e.report(rec, u, transport.StateRolledBack, reason, 0, 0)
	return nil
}

// dropFiles removes the staged live targets; the appliers keep their own
// copies of what they need later.
func (e *Engine) dropFiles(u *journal.Update) {
	for _, p := range u.Files {
		os.Remove(p)
	}
}

// retireLive reverts the live components of release (their fix is now in
// the booted image) and drops them from the record. A component whose
// revert fails stays recorded.
func (e *Engine) retireLive(ctx context.Context, rec *journal.Record, release string) {
	keep := rec.Live[:0]
	for _, l := range rec.Live {
		if l.Release != release {
			keep = append(keep, l)
			continue
		}
		c := l.Component
		a, err := e.applier(&c)
		if err == nil {
			err = a.Revert(ctx, &c)
		}
		if err != nil {
			e.log.Error("retiring live component failed; it stays", "component", c.Name, "err", err)
			keep = append(keep, l)
			continue
		}
		e.log.Info("live component retired: the image carries its fix", "component", c.Name, "release", release)
	}
	rec.Live = keep
}

// InstallDeferred installs the image the live-now-image-later policy
// deferred to the maintenance window, if there is one and nothing else is
// in flight. The daemon calls it when the window opens.
func (e *Engine) InstallDeferred(ctx context.Context) error {
	rec := e.o.Journal.Record()
	d := rec.Deferred
	if d == nil || rec.Update != nil {
		return nil
	}
	booted, _, err := e.o.Machine.Booted()
	if err != nil {
		return fmt.Errorf("booted slot: %w", err)
	}
	rec.Deferred = nil
	m, err := manifest.Decode(d.Manifest)
	var p Plan
	if err == nil {
		p, err = planImage(m, Facts{Board: e.o.Board, Booted: booted}, d.Image,
			fmt.Sprintf("policy %s: maintenance window: image %s folds the live fix of %s into the base", PolicyLiveNowImageLater, d.Image, d.Release.Name))
	}
	if err != nil {
		if serr := e.save(rec); serr != nil {
			return serr
		}
		return e.refuse(d.Release.Name, d.Release.Sequence, err)
	}
	rel := d.Release
	rel.Slot = p.Target
	rec.Update = &journal.Update{
		Release: rel, From: booted, ManifestTarget: d.ManifestTarget, Manifest: d.Manifest,
		Path: PathAB, Why: p.Why, Step: journal.StepPlanned, Started: e.o.Now().UTC(),
		Image: p.ImageName, Later: true,
	}
	if err := e.save(rec); err != nil {
		return err
	}
	e.log.Info("planned deferred image", "release", rel.Name, "image", p.ImageName, "to", p.Target)
	e.report(rec, rec.Update, transport.StateDownloading, p.Why, 0, 0)
	return e.run(ctx)
}
