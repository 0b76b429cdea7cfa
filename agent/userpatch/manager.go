package userpatch

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/manifest/ulp"
)

// Result of one process, as status reports show it.
type Result string

// Results.
const (
	ResultApplied  Result = "applied"
	ResultSkipped  Result = "skipped" // traced by a debugger, or gone meanwhile
	ResultFailed   Result = "failed"
	ResultReverted Result = "reverted"
)

// ProcResult is what happened in one process.
type ProcResult struct {
	PID    int           `json:"pid"`
	Comm   string        `json:"comm"`
	Result Result        `json:"result"`
	Reason string        `json:"reason,omitempty"`
	Stop   time.Duration `json:"stop_ns,omitempty"`
}

// Active is one bundle the agent keeps applied, with the processes that
// carry it. It is what the agent journals: enough to re-apply after a
// restart and to revert.
type Active struct {
	Name    string     `json:"name"`
	BuildID string     `json:"build_id"` // hex
	Soname  string     `json:"soname,omitempty"`
	File    string     `json:"file"` // the verified bundle on local storage
	Procs   []*Applied `json:"procs,omitempty"`
	// Pending are applies journalled before their trampolines were
	// written (Options.Intent): at restart, a process that holds them is
	// carrying the patch, any other one is not.
	Pending []*Applied `json:"pending,omitempty"`
	// State is StateReverting while Remove reverts the patch (journalled
	// first: a restart finishes the revert instead of applying the patch
	// again), StateReverted once it is reverted everywhere: the journal
	// and status say so, rescans leave it alone, and Add of the same
	// bundle applies it again. Empty: active.
	State string `json:"state,omitempty"`
	// Scope is which processes get the patch (the component's).
	Scope  manifest.Scope `json:"scope"`
	bundle *ulp.Bundle
}

// States of an Active besides active ("").
const (
	StateReverting = "reverting"
	StateReverted  = "reverted"
)

// Reverted reports whether the patch was reverted.
func (a *Active) Reverted() bool { return a.State == StateReverted }

// Store persists the active patches (the agent's journal).
type Store interface {
	SavePatches([]Active) error
}

// Manager keeps bundles applied to every process that maps their target
// build, including processes that start later (Rescan). Its methods
// are safe for concurrent use.
type Manager struct {
	p     *Patcher
	store Store
	log   *slog.Logger
	opts  Options
	self  int

	mu     sync.Mutex
	active []*Active
	last   map[string][]ProcResult // per bundle key: the results of the latest pass
	seen   map[procKey]bool        // processes checked and found not to need a bundle
	// failing backs off processes an apply failed in: they are tried
	// again after retry.wait, doubling up to maxRetryWait, not on every
	// rescan (each try stops the process).
	failing map[failKey]*retry
}

type failKey struct {
	proc  procKey
	patch string
}

type retry struct {
	next time.Time
	wait time.Duration
}

// Backoff of a failing process, and the deadline a busy process gets in a
// rescan (the manager's lock is held meanwhile).
const (
	firstRetryWait = 2 * time.Second
	maxRetryWait   = 10 * time.Minute
	rescanDeadline = 250 * time.Millisecond
)

type procKey struct {
	pid   int
	start uint64
}

// NewManager returns a Manager restoring the given active patches (from
// the journal): their bundles are read from their files again and the
// processes still carrying them are kept; Rescan re-applies the rest.
func NewManager(store Store, log *slog.Logger, o Options, restored []Active) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{p: NewPatcher(), store: store, log: log, opts: o, self: os.Getpid(),
		last: map[string][]ProcResult{}, seen: map[procKey]bool{}, failing: map[failKey]*retry{}}
	for _, a := range restored {
		b, err := readBundle(a.File)
		if err != nil && a.State != StateReverted {
			return nil, fmt.Errorf("userpatch: restore %s: %w", a.Name, err)
		}
		a := a
		a.bundle = b
		// Reconcile with what the processes hold: an apply journalled as
		// pending whose trampolines are in place was done (the agent
		// stopped before saving it), the others were not.
		for _, ap := range a.Pending {
			if carries(ap) {
				a.Procs = append(a.Procs, ap)
			}
		}
		a.Pending = nil
		a.Procs = slices.DeleteFunc(a.Procs, func(ap *Applied) bool { return !carries(ap) })
		m.active = append(m.active, &a)
	}
	return m, nil
}

// Close stops the tracer thread.
func (m *Manager) Close() { m.p.Close() }

func readBundle(name string) (*ulp.Bundle, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return ulp.Decode(b)
}

// carries reports whether the process a names still runs and still holds
// a's trampolines (it may have exited, or exec'd another program).
func carries(a *Applied) bool {
	st, err := readStat(a.PID)
	if err != nil || st.StartTime != a.StartTime {
		return false
	}
	f, err := os.Open(fmt.Sprintf("%s/%d/mem", procDir, a.PID))
	if err != nil {
		return false
	}
	defer f.Close()
	for _, s := range a.Sites {
		got := make([]byte, len(s.Tramp))
		if _, err := f.ReadAt(got, int64(s.Addr)); err != nil || !bytes.Equal(got, s.Tramp) {
			return false
		}
	}
	return true
}

func key(name string, id []byte) string { return name + "@" + hex.EncodeToString(id) }

// Add makes b active: it is applied to every running process that maps
// its build now, and to later ones by Rescan. file is where the verified
// bundle is kept (for restarts). The results say what happened per
// process; an error means b was not made active.
func (m *Manager) Add(ctx context.Context, b *ulp.Bundle, file string) ([]ProcResult, error) {
	return m.AddIn(ctx, b, file, manifest.Scope{})
}

// AddIn is Add for the processes in scope sc only; the others are
// reported skipped, "out of scope".
func (m *Manager) AddIn(ctx context.Context, b *ulp.Bundle, file string, sc manifest.Scope) ([]ProcResult, error) {
	if b.Arch != nativeArch {
		return nil, fmt.Errorf("userpatch: bundle %s is for %s, this agent patches %s processes: %w", b.Name, b.Arch, nativeArch, ErrWrongArch)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var a *Active
	for _, x := range m.active {
		if x.Name == b.Name && x.BuildID == hex.EncodeToString(b.BuildID) {
			if !x.Reverted() {
				return m.last[key(x.Name, b.BuildID)], nil // already active
			}
			// Reverted before: active again, from this bundle.
			a = x
			a.State, a.File, a.bundle, a.Soname, a.Scope = "", file, b, b.Soname, sc
			break
		}
	}
	if a == nil {
		a = &Active{Name: b.Name, BuildID: hex.EncodeToString(b.BuildID), Soname: b.Soname, File: file, Scope: sc, bundle: b}
		m.active = append(m.active, a)
	}
	clear(m.seen)
	res := m.pass(ctx, a, m.opts)
	if err := m.save(); err != nil {
		return res, err
	}
	return res, nil
}

// Remove reverts every active bundle called name in every process that
// carries it and marks it reverted (the journal keeps it so, and a later
// Add applies it again). ErrNotApplied when none is active.
func (m *Manager) Remove(ctx context.Context, name string) ([]ProcResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var res []ProcResult
	var errs []error
	// Journal the intent first: a restart then finishes the revert.
	marked := false
	for _, a := range m.active {
		if a.Name == name && !a.Reverted() {
			a.State, marked = StateReverting, true
		}
	}
	if marked {
		if err := m.save(); err != nil {
			return nil, err
		}
	}
	found := false
	keep := m.active[:0]
	for _, a := range m.active {
		if a.Name != name || a.Reverted() {
			keep = append(keep, a)
			continue
		}
		found = true
		var left []*Applied
		for _, ap := range a.Procs {
			err := m.p.Revert(ctx, ap, m.opts)
			switch {
			case err == nil:
				res = append(res, ProcResult{PID: ap.PID, Comm: ap.Comm, Result: ResultReverted, Stop: ap.Stop})
			case errors.Is(err, ErrGone):
				res = append(res, ProcResult{PID: ap.PID, Comm: ap.Comm, Result: ResultSkipped, Reason: "exited"})
			case errors.Is(err, ErrNotApplied):
				res = append(res, ProcResult{PID: ap.PID, Comm: ap.Comm, Result: ResultSkipped, Reason: "no longer carries it (exec'd another image)"})
			default:
				left = append(left, ap)
				errs = append(errs, err)
				res = append(res, ProcResult{PID: ap.PID, Comm: ap.Comm, Result: ResultFailed, Reason: err.Error()})
			}
		}
		a.Procs, a.State = left, ""
		if len(left) == 0 {
			a.State = StateReverted
		}
		keep = append(keep, a) // still carried somewhere: stays active; else reverted
	}
	m.active = keep
	if !found {
		return nil, fmt.Errorf("userpatch: no active patch %q: %w", name, ErrNotApplied)
	}
	if err := m.save(); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// Rescan applies every active bundle to processes that map its build and
// do not carry it yet, and forgets processes that exited. It returns the
// results of the processes it acted on. A process an apply failed in is
// tried again only after a backoff, and a busy one gets a short deadline
// per rescan; the journal is saved only when the processes carrying a
// patch changed.
func (m *Manager) Rescan(ctx context.Context) []ProcResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	var res []ProcResult
	changed := false
	o := m.opts.withDefaults()
	o.Deadline = min(o.Deadline, rescanDeadline)
	for _, a := range m.active {
		if a.State != "" {
			continue // reverted, or being reverted
		}
		n := len(a.Procs)
		// A process that exited is forgotten; one that no longer holds
		// the trampolines (it exec'd: same PID and start time, a new
		// image) is forgotten too, and patched anew by the pass below
		// when its new image maps the build.
		a.Procs = slices.DeleteFunc(a.Procs, func(ap *Applied) bool { return !carries(ap) })
		changed = changed || n != len(a.Procs)
		n = len(a.Procs)
		r := m.pass(ctx, a, o)
		changed = changed || n != len(a.Procs)
		res = append(res, r...)
	}
	now := time.Now()
	maps.DeleteFunc(m.failing, func(k failKey, r *retry) bool {
		return now.After(r.next.Add(maxRetryWait)) // long past: the process is likely gone
	})
	if changed {
		if err := m.save(); err != nil {
			m.log.Error("live patches: journal", "err", err)
		}
	}
	return res
}

// pass applies a to every process that maps its build and does not carry
// it, but for those backing off after a failure. Called with mu held.
func (m *Manager) pass(ctx context.Context, a *Active, o Options) []ProcResult {
	all, err := pids()
	if err != nil {
		m.log.Error("live patches: list processes", "err", err)
		return nil
	}
	carried := map[procKey]bool{}
	for _, ap := range a.Procs {
		carried[procKey{ap.PID, ap.StartTime}] = true
	}
	var res []ProcResult
	for _, pid := range all {
		if pid == m.self || ctx.Err() != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		k := procKey{pid, st.StartTime}
		if carried[k] {
			continue
		}
		fk := failKey{k, a.Name}
		if r := m.failing[fk]; r != nil && time.Now().Before(r.next) {
			continue
		}
		t, err := locate(pid, a.bundle.BuildID, globalIDs)
		if err != nil {
			continue // another program, or gone
		}
		r := ProcResult{PID: pid, Comm: t.Comm}
		if why := outOfScope(pid, a.Scope); why != "" {
			r.Result, r.Reason = ResultSkipped, "out of scope: "+why
			res = append(res, r)
			continue
		}
		intended := false
		o.Intent = func(ap *Applied) error {
			a.Pending, intended = append(a.Pending, ap), true
			return m.save()
		}
		ap, err := m.p.Apply(ctx, pid, a.bundle, o)
		a.Pending = slices.DeleteFunc(a.Pending, func(x *Applied) bool { return x.PID == pid && x.StartTime == st.StartTime })
		if err != nil && intended {
			if serr := m.save(); serr != nil {
				m.log.Error("live patches: journal", "err", serr)
			}
		}
		// A traced process is found so from /proc, without a stop: it
		// is looked at again on every rescan, to be patched as soon as
		// its debugger leaves.
		if err != nil && !errors.Is(err, ErrGone) && !errors.Is(err, ErrTraced) {
			r := m.failing[fk]
			if r == nil {
				r = &retry{wait: firstRetryWait / 2}
				m.failing[fk] = r
			}
			r.wait = min(2*r.wait, maxRetryWait)
			r.next = time.Now().Add(r.wait)
		} else {
			delete(m.failing, fk)
		}
		switch {
		case err == nil:
			a.Procs = append(a.Procs, ap)
			r.Result, r.Stop = ResultApplied, ap.Stop
			m.log.Info("live patch applied", "patch", a.Name, "pid", pid, "comm", t.Comm, "stop", ap.Stop, "attempts", ap.Attempts)
		case errors.Is(err, ErrGone):
			continue
		case errors.Is(err, ErrTraced):
			r.Result, r.Reason = ResultSkipped, err.Error()
			m.log.Warn("live patch skipped", "patch", a.Name, "pid", pid, "err", err)
		default:
			r.Result, r.Reason = ResultFailed, err.Error()
			m.log.Error("live patch failed", "patch", a.Name, "pid", pid, "err", err)
		}
		res = append(res, r)
	}
	m.last[key(a.Name, a.bundle.BuildID)] = res
	return res
}

func (m *Manager) save() error {
	if m.store == nil {
		return nil
	}
	return m.store.SavePatches(m.snapshot())
}

func (m *Manager) snapshot() []Active {
	out := make([]Active, len(m.active))
	for i, a := range m.active {
		out[i] = *a
		out[i].Procs = slices.Clone(a.Procs)
		out[i].Pending = slices.Clone(a.Pending)
	}
	return out
}

// Active returns the active patches and the processes carrying them.
func (m *Manager) Active() []Active {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snapshot()
}

// reverting lists the patches a revert of was journalled but not
// finished (the agent stopped meanwhile).
func (m *Manager) reverting() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, a := range m.active {
		if a.State == StateReverting && !slices.Contains(out, a.Name) {
			out = append(out, a.Name)
		}
	}
	return out
}

func (m *Manager) hasActive() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.ContainsFunc(m.active, func(a *Active) bool { return !a.Reverted() })
}
