package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/tuf/repo"
)

// liveFlags are release add's live components.
type liveFlags struct {
	kernelPatch, kernelRelease, patchName string
	replace                               bool
	moduleParams                          stringList
	userPatches                           stringList
	soname                                string
}

func (l *liveFlags) any() bool { return l.kernelPatch != "" || len(l.userPatches) > 0 }

// check refuses flags given without the ones they need.
func (l *liveFlags) check() error {
	if l.kernelPatch != "" {
		if l.kernelRelease == "" || l.patchName == "" {
			return usagef("--kernel-patch needs --kernel-release and --patch-name")
		}
	} else if l.kernelRelease != "" || l.patchName != "" || l.replace || len(l.moduleParams) > 0 {
		return usagef("--kernel-release, --patch-name, --replace and --module-param go with --kernel-patch")
	}
	if len(l.userPatches) > 0 && l.soname == "" {
		return usagef("--user-patch needs --soname")
	}
	if len(l.userPatches) == 0 && l.soname != "" {
		return usagef("--soname goes with --user-patch")
	}
	return nil
}

// components reads the live files and returns the components of release
// name, falling back to the image component fallback ("" = none).
func (l *liveFlags) components(name, fallback string) ([]manifest.Component, []release.LiveTarget, error) {
	var comps []manifest.Component
	var targets []release.LiveTarget
	if l.kernelPatch != "" {
		mod, err := os.ReadFile(l.kernelPatch)
		if err != nil {
			return nil, nil, err
		}
		c, t, err := release.KernelPatchComponent(name, release.KernelPatch{
			Module: mod, KernelRelease: l.kernelRelease, PatchName: l.patchName, Replace: l.replace, Params: l.moduleParams,
		}, fallback)
		if err != nil {
			return nil, nil, err
		}
		comps, targets = append(comps, c), append(targets, t)
	}
	if len(l.userPatches) > 0 {
		var bundles [][]byte
		for _, p := range l.userPatches {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, nil, err
			}
			bundles = append(bundles, b)
		}
		c, ts, err := release.UserPatchComponent(name, l.soname, bundles, fallback)
		if err != nil {
			return nil, nil, err
		}
		comps, targets = append(comps, c), append(targets, ts...)
	}
	return comps, targets, nil
}

// addLiveOnly publishes a release of live components without an image.
func addLiveOnly(r *repo.Repo, spec release.Spec, comps []manifest.Component, targets []release.LiveTarget) (*release.Built, error) {
	m := release.NewManifest(spec)
	m.Components = comps
	enc, err := m.Encode()
	if err != nil {
		return nil, err
	}
	if _, err := manifest.Decode(enc); err != nil {
		return nil, fmt.Errorf("encoded manifest does not decode: %w", err)
	}
	var added []string
	fail := func(err error) (*release.Built, error) {
		for _, t := range added {
			if rerr := r.RemoveTarget(t); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	for _, t := range targets {
		if _, err := r.AddTarget(t.Name, bytesReader(t.Data), nil); err != nil {
			return fail(err)
		}
		added = append(added, t.Name)
	}
	mt := release.ManifestTarget(spec.Name)
	if _, err := r.AddTarget(mt, bytesReader(enc), nil); err != nil {
		return fail(err)
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return &release.Built{Manifest: m, ManifestTarget: mt}, nil
}

// printLive prints a release with live components.
func printLive(e *env, b *release.Built, asJSON bool) error {
	m := b.Manifest
	type comp struct {
		Name     string   `json:"name"`
		Kind     string   `json:"kind"`
		Targets  []string `json:"targets"`
		Fallback string   `json:"fallback,omitempty"`
	}
	var cs []comp
	for _, c := range m.Components {
		x := comp{Name: c.Name, Kind: c.Kind.String(), Fallback: c.Fallback()}
		switch {
		case c.Image != nil:
			x.Targets = []string{c.Image.Target}
		case c.KernelPatch != nil:
			x.Targets = []string{c.KernelPatch.Target}
		case c.UserPatch != nil:
			for _, bd := range c.UserPatch.Bundles {
				x.Targets = append(x.Targets, bd.Target)
			}
		}
		cs = append(cs, x)
	}
	if asJSON {
		return writeJSON(e.stdout, map[string]any{
			"name": m.Name, "version": m.Version, "class": m.DeviceClass, "sequence": m.Sequence,
			"manifest_target": b.ManifestTarget, "components": cs,
		})
	}
	if _, err := fmt.Fprintf(e.stdout, "published release %s (version %s, sequence %d)\n  manifest %s\n", m.Name, m.Version, m.Sequence, b.ManifestTarget); err != nil {
		return err
	}
	for _, c := range cs {
		fb := ""
		if c.Fallback != "" {
			fb = ", falls back to " + c.Fallback
		}
		if _, err := fmt.Fprintf(e.stdout, "  %s %s: %v%s\n", c.Kind, c.Name, c.Targets, fb); err != nil {
			return err
		}
	}
	return nil
}
