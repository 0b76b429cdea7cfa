package release

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/manifest/ulp"
)

// KernelPatch describes a kernel livepatch module for a release.
type KernelPatch struct {
	Module        []byte // the .ko
	KernelRelease string // uname -r of the kernel it is built for
	PatchName     string // its livepatch name (/sys/kernel/livepatch/<name>); also the component name
	Replace       bool   // an atomic-replace (cumulative) patch
	// Params are module parameters given at load, "name=value" each
	// (manifest.CheckModuleParams).
	Params []string
}

// KernelPatchTarget is the TUF target name of a kernel patch module.
func KernelPatchTarget(release, patchName string) string {
	return Prefix + release + "/kernel/" + patchName + ".ko"
}

// UserPatchTarget is the TUF target name of a userspace patch bundle,
// one per build ID.
func UserPatchTarget(release, soname string, buildID []byte) string {
	return fmt.Sprintf("%s%s/user/%s/%x.ulp", Prefix, release, soname, buildID)
}

// LiveTarget is a live component's file as a TUF target.
type LiveTarget struct {
	Name string
	Data []byte
}

// KernelPatchComponent returns the manifest component for p in release
// name, falling back to the image component fallback ("" for none), and
// its target. The module must at least be an ELF relocatable: the agent
// checks the rest (livepatch=Y, the kernel) before loading it.
func KernelPatchComponent(name string, p KernelPatch, fallback string) (manifest.Component, LiveTarget, error) {
	if !validName(p.PatchName) || p.PatchName == "." || bytes.ContainsAny([]byte(p.PatchName), ".") {
		return manifest.Component{}, LiveTarget{}, fmt.Errorf("%w: patch name %q must be letters, digits, '_' or '-'", ErrInvalidSpec, p.PatchName)
	}
	if p.KernelRelease == "" {
		return manifest.Component{}, LiveTarget{}, fmt.Errorf("%w: kernel patch %s: kernel release is empty", ErrInvalidSpec, p.PatchName)
	}
	if !isRelocatable(p.Module) {
		return manifest.Component{}, LiveTarget{}, fmt.Errorf("%w: kernel patch %s: not an ELF relocatable (a .ko)", ErrInvalidSpec, p.PatchName)
	}
	if err := manifest.CheckModuleParams("module parameters", p.Params); err != nil {
		return manifest.Component{}, LiveTarget{}, fmt.Errorf("%w: kernel patch %s: %w", ErrInvalidSpec, p.PatchName, err)
	}
	var params []string
	if len(p.Params) > 0 {
		params = p.Params
	}
	sum := sha256.Sum256(p.Module)
	t := LiveTarget{Name: KernelPatchTarget(name, p.PatchName), Data: p.Module}
	return manifest.Component{Kind: manifest.KindKernelPatch, Name: p.PatchName, KernelPatch: &manifest.KernelPatch{
		Target: t.Name, SHA256: sum[:], Release: p.KernelRelease, Name: p.PatchName, Replace: p.Replace, Fallback: fallback, Params: params,
	}}, t, nil
}

// UserPatchComponent returns the manifest component for the userspace
// patch bundles (manifest/ulp, one per build of the target) of soname in
// release name, and their targets. The component is called
// "user-<soname>".
func UserPatchComponent(name, soname string, bundles [][]byte, fallback string) (manifest.Component, []LiveTarget, error) {
	if soname == "" {
		return manifest.Component{}, nil, fmt.Errorf("%w: userspace patch without a soname", ErrInvalidSpec)
	}
	if len(bundles) == 0 {
		return manifest.Component{}, nil, fmt.Errorf("%w: userspace patch of %s without bundles", ErrInvalidSpec, soname)
	}
	up := &manifest.UserPatch{Soname: soname, Fallback: fallback}
	var ts []LiveTarget
	for i, raw := range bundles {
		b, err := ulp.Decode(raw)
		if err != nil {
			return manifest.Component{}, nil, fmt.Errorf("%w: bundle %d of %s: %w", ErrInvalidSpec, i+1, soname, err)
		}
		sum := sha256.Sum256(raw)
		t := LiveTarget{Name: UserPatchTarget(name, soname, b.BuildID), Data: raw}
		up.Bundles = append(up.Bundles, manifest.PatchBundle{BuildID: b.BuildID, Target: t.Name, SHA256: sum[:]})
		ts = append(ts, t)
	}
	return manifest.Component{Kind: manifest.KindUserPatch, Name: "user-" + soname, UserPatch: up}, ts, nil
}

// NewManifest returns the manifest of spec without components.
func NewManifest(spec Spec) *manifest.Manifest {
	return &manifest.Manifest{
		Format:          manifest.FormatVersion,
		Name:            spec.Name,
		Version:         spec.Version,
		DeviceClass:     spec.DeviceClass,
		Sequence:        spec.Sequence,
		Boards:          append([]string(nil), spec.Boards...),
		Arch:            spec.Arch,
		MinAgentVersion: spec.MinAgentVersion,
	}
}

// isRelocatable reports whether b starts like an ELF relocatable (e_type
// ET_REL, in either byte order).
func isRelocatable(b []byte) bool {
	if len(b) < 18 || !bytes.HasPrefix(b, []byte("\x7fELF")) {
		return false
	}
	switch b[5] {
	case 1: // little-endian
		return b[16] == 1 && b[17] == 0
	case 2:
		return b[16] == 0 && b[17] == 1
	}
	return false
}
