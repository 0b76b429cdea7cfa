package klp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/manifest"
)

// ErrComponent: the component handed to the Applier is not a kernel
// live patch, or its module is not among the files, or differs from the
// manifest's hash.
var ErrComponent = errors.New("klp: not a usable kernel patch component")

// Applier is the update engine's applier of kernel live-patch components
// (agent/engine.LiveApplier): it checks, loads and reverts them through a
// System, and keeps what it loaded (the module bytes and the kernel
// release) under its directory, so that Restore can load them again
// after a reboot into the same kernel. Its methods must not run
// concurrently.
type Applier struct {
	sys      *System
	dir      string
	deadline time.Duration
	log      *slog.Logger
	// OnLoad, when set, receives every completed Load (benchmarks).
	OnLoad func(*Result)
}

// Active is one patch the Applier loaded and keeps loaded.
type Active struct {
	Name      string   `json:"name"`             // the livepatch name (sysfs)
	Component string   `json:"component"`        // manifest component name
	Release   string   `json:"release"`          // kernel release it is for
	SHA256    []byte   `json:"sha256"`           // of the module
	Params    []string `json:"params,omitempty"` // module parameters it was loaded with
	// Replaced names the patches the kernel replaced when it loaded this
	// one (read from sysfs, not taken from the manifest's replace flag).
	Replaced []string  `json:"replaced,omitempty"`
	Loaded   time.Time `json:"loaded"`
}

type applierState struct {
	Patches []Active `json:"patches"`
}

// NewApplier returns an Applier keeping its state in dir (created when
// needed), loading through sys with the given transition deadline (0
// means DefaultDeadline).
func NewApplier(dir string, sys *System, deadline time.Duration, log *slog.Logger) *Applier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	return &Applier{sys: sys, dir: dir, deadline: deadline, log: log}
}

func (a *Applier) statePath() string { return filepath.Join(a.dir, "state.json") }

func (a *Applier) modulePath(name string) string { return filepath.Join(a.dir, name+".ko") }

// State returns the patches the Applier keeps loaded.
func (a *Applier) State() ([]Active, error) {
	b, err := os.ReadFile(a.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("klp: state: %w", err)
	}
	var st applierState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("klp: state %s: %w", a.statePath(), err)
	}
	return st.Patches, nil
}

func (a *Applier) save(ps []Active) error {
	b, err := json.MarshalIndent(applierState{Patches: ps}, "", "  ")
	if err != nil {
		return fmt.Errorf("klp: state: %w", err)
	}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return fmt.Errorf("klp: state: %w", err)
	}
	if err := atomicfile.WriteFile(a.statePath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("klp: state: %w", err)
	}
	return nil
}

func kernelPatch(c *manifest.Component) (*manifest.KernelPatch, error) {
	if c == nil || c.Kind != manifest.KindKernelPatch || c.KernelPatch == nil {
		return nil, fmt.Errorf("%w: component is not a kernel live patch", ErrComponent)
	}
	return c.KernelPatch, nil
}

// Check reports whether c can be loaded into the running kernel: the
// kernel has livepatch support and is the release c is built for. The
// module's own checks (livepatch=Y, vermagic) run in Apply, before
// finit_module.
func (a *Applier) Check(_ context.Context, c *manifest.Component) error {
	kp, err := kernelPatch(c)
	if err != nil {
		return err
	}
	k, err := a.sys.Facts()
	if err != nil {
		return err
	}
	if !k.Livepatch {
		return fmt.Errorf("%w (release %s has no /sys/kernel/livepatch)", ErrUnsupported, k.Release)
	}
	if kp.Release != k.Release {
		return fmt.Errorf("%w: module built for %s, running %s", ErrWrongKernel, kp.Release, k.Release)
	}
	return nil
}

// Apply loads c's module (from files, keyed by its TUF target name) and
// waits for its transition. A patch of the same name already enabled
// from the same bytes is left as it is (Apply is idempotent). Every
// refusal (not a module, no livepatch=Y, another kernel) happens before
// finit_module; a stalled transition has been reversed when Apply returns
// ErrStalled.
func (a *Applier) Apply(ctx context.Context, c *manifest.Component, files map[string]string) (string, error) {
	kp, err := kernelPatch(c)
	if err != nil {
		return "", err
	}
	path, ok := files[kp.Target]
	if !ok {
		return "", fmt.Errorf("%w: no file for target %s", ErrComponent, kp.Target)
	}
	module, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("klp: module: %w", err)
	}
	if sum := sha256.Sum256(module); !bytes.Equal(sum[:], kp.SHA256) {
		return "", fmt.Errorf("%w: %s does not hash to the manifest's SHA-256", ErrComponent, kp.Target)
	}
	state, err := a.State()
	if err != nil {
		return "", err
	}
	if p, err := a.sys.patch(kp.Name); err == nil && p.Enabled && !p.Transition {
		// Enabled already: by an earlier Apply of these bytes (the kept
		// copy says so; an agent stopped before journalling it), or by
		// someone else, which is a conflict.
		kept, _ := os.ReadFile(a.modulePath(kp.Name))
		if sum := sha256.Sum256(kept); kept == nil || !bytes.Equal(sum[:], kp.SHA256) {
			return "", fmt.Errorf("%w: patch %s is enabled, but not from this module", ErrLoaded, kp.Name)
		}
		state = slices.DeleteFunc(state, func(p Active) bool { return p.Name == kp.Name })
		state = append(state, Active{Name: kp.Name, Component: c.Name, Release: kp.Release, SHA256: kp.SHA256, Params: kp.Params, Loaded: time.Now().UTC()})
		if err := a.save(state); err != nil {
			return "", err
		}
		return fmt.Sprintf("kernel live patch %s already enabled on %s", kp.Name, kp.Release), nil
	}
	// Keep the bytes first: a power cut after the load must not leave a
	// patch that cannot be reloaded.
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return "", fmt.Errorf("klp: %w", err)
	}
	if err := atomicfile.WriteFile(a.modulePath(kp.Name), module, 0o600); err != nil {
		return "", fmt.Errorf("klp: keep module: %w", err)
	}
	res, err := a.sys.Load(ctx, module, LoadOptions{Name: kp.Name, Release: kp.Release, Deadline: a.deadline, Params: kp.Params})
	if err != nil {
		if !slices.ContainsFunc(state, func(p Active) bool { return p.Name == kp.Name }) {
			os.Remove(a.modulePath(kp.Name))
		}
		return "", err
	}
	if a.OnLoad != nil {
		a.OnLoad(res)
	}
	// What the kernel did decides what is kept: the patches it replaced
	// go (whatever the manifest's replace flag said), the ones it stacked
	// on stay.
	state = slices.DeleteFunc(state, func(p Active) bool {
		return p.Name == kp.Name || slices.Contains(res.Replaced, p.Name)
	})
	for _, r := range res.Replaced {
		os.Remove(a.modulePath(r))
	}
	state = append(state, Active{Name: kp.Name, Component: c.Name, Release: kp.Release, SHA256: kp.SHA256, Params: kp.Params, Replaced: res.Replaced, Loaded: time.Now().UTC()})
	if err := a.save(state); err != nil {
		return "", err
	}
	summary := fmt.Sprintf("kernel live patch %s enabled on %s (finit_module %v, sysfs wait %v",
		kp.Name, kp.Release, res.FinitTime.Round(time.Microsecond), res.SysfsWait.Round(time.Microsecond))
	if res.KernelTransition > 0 {
		summary += fmt.Sprintf(", kernel transition %v", res.KernelTransition)
		if res.DoneInInit {
			summary += " inside module init"
		}
	}
	summary += ")"
	switch {
	case len(res.Replaced) > 0:
		summary += fmt.Sprintf(", replaced %v", res.Replaced)
	case kp.Replace && len(state) > 1:
		summary += ", stacked (the manifest said replace; the kernel kept the earlier patches)"
	}
	return summary, nil
}

// Revert disables c's patch and unloads its module; a patch that is not
// loaded is only forgotten (Revert is idempotent).
func (a *Applier) Revert(ctx context.Context, c *manifest.Component) error {
	kp, err := kernelPatch(c)
	if err != nil {
		return err
	}
	if err := a.sys.Revert(ctx, kp.Name, a.deadline); err != nil && !errors.Is(err, ErrNotLoaded) {
		return err
	}
	state, err := a.State()
	if err != nil {
		return err
	}
	state = slices.DeleteFunc(state, func(p Active) bool { return p.Name == kp.Name })
	if err := a.save(state); err != nil {
		return err
	}
	os.Remove(a.modulePath(kp.Name))
	return nil
}

// Restored is what Restore did with one kept patch.
type Restored struct {
	Active
	// Reloaded: loaded again (false when it was still loaded: an agent
	// restart within one boot).
	Reloaded bool
	// Dropped says why the patch was forgotten instead: another kernel
	// runs, or loading failed. "" when it is active.
	Dropped string
}

// Restore runs at agent start. Patches kept for the running kernel
// release are loaded again (after a reboot) or found still loaded (an
// agent restart); patches for another release are dropped — that kernel
// is gone — and so are patches that fail to load. The state is updated
// to what is active.
func (a *Applier) Restore(ctx context.Context) ([]Restored, error) {
	state, err := a.State()
	if err != nil || len(state) == 0 {
		return nil, err
	}
	k, err := a.sys.Facts()
	if err != nil {
		return nil, err
	}
	var out []Restored
	var keep []Active
	for _, p := range state {
		r := Restored{Active: p}
		switch {
		case p.Release != k.Release:
			r.Dropped = fmt.Sprintf("built for %s, running %s", p.Release, k.Release)
		case !k.Livepatch:
			r.Dropped = fmt.Sprintf("kernel %s has no livepatch support", k.Release)
		default:
			if sp, err := a.sys.patch(p.Name); err == nil && sp.Enabled {
				keep = append(keep, p)
				break
			}
			module, err := os.ReadFile(a.modulePath(p.Name))
			if err == nil {
				if sum := sha256.Sum256(module); !bytes.Equal(sum[:], p.SHA256) {
					err = fmt.Errorf("%w: kept module %s changed", ErrComponent, a.modulePath(p.Name))
				}
			}
			var res *Result
			if err == nil {
				res, err = a.sys.Load(ctx, module, LoadOptions{Name: p.Name, Release: p.Release, Deadline: a.deadline, Params: p.Params})
			}
			if err != nil {
				r.Dropped = fmt.Sprintf("reload failed: %v", err)
				break
			}
			if a.OnLoad != nil {
				a.OnLoad(res)
			}
			r.Reloaded = true
			// A patch reloaded after the one it replaced (the order
			// the kernel last saw them in) replaces it again.
			for _, gone := range res.Replaced {
				keep = slices.DeleteFunc(keep, func(k Active) bool { return k.Name == gone })
				if i := slices.IndexFunc(out, func(o Restored) bool { return o.Name == gone }); i >= 0 {
					out[i].Reloaded, out[i].Dropped = false, "replaced by "+p.Name
				}
				os.Remove(a.modulePath(gone))
			}
			keep = append(keep, p)
		}
		if r.Dropped != "" {
			os.Remove(a.modulePath(p.Name))
			a.log.Warn("kernel live patch dropped", "patch", p.Name, "why", r.Dropped)
		} else if r.Reloaded {
			a.log.Info("kernel live patch reloaded", "patch", p.Name, "release", p.Release)
		}
		out = append(out, r)
	}
	if err := a.save(keep); err != nil {
		return out, err
	}
	return out, nil
}

// ActiveComponents names the components whose patches the kernel has
// enabled now (/sys/kernel/livepatch), by the Applier's own account of
// what it loaded for which component. The update engine follows it
// rather than a manifest's replace flag (engine.LiveInventory).
func (a *Applier) ActiveComponents() ([]string, error) {
	ps, err := a.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range ps {
		if p.Enabled && p.Component != "" && !slices.Contains(out, p.Component) {
			out = append(out, p.Component)
		}
	}
	return out, nil
}

// Loaded is one patch of List: what sysfs shows, with what the Applier
// knows of it.
type Loaded struct {
	Patch
	Component string   // "" for a patch graft did not load
	Params    []string // module parameters graft loaded it with
}

// List returns the patches in /sys/kernel/livepatch, each with the
// component the Applier loaded it for. A kernel without livepatch
// support lists nothing.
func (a *Applier) List() ([]Loaded, error) {
	ps, err := a.sys.List()
	if errors.Is(err, ErrUnsupported) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	state, err := a.State()
	if err != nil {
		return nil, err
	}
	out := make([]Loaded, len(ps))
	for i, p := range ps {
		out[i] = Loaded{Patch: p}
		if j := slices.IndexFunc(state, func(s Active) bool { return s.Name == p.Name }); j >= 0 {
			out[i].Component, out[i].Params = state[j].Component, state[j].Params
		}
	}
	return out, nil
}
