package klp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Errors of loading, reverting and unloading.
var (
	// ErrLoad: finit_module failed. The message carries the errno and the
	// kernel log lines since the load started; the errno is wrapped too
	// (errors.Is(err, syscall.ENOEXEC)).
	ErrLoad = errors.New("klp: kernel refused the module")
	// ErrStalled: a transition did not complete by its deadline. A load
	// that stalls has been reversed and the module unloaded; a revert that
	// stalls has been reversed, so the patch stays enabled.
	ErrStalled = errors.New("klp: transition did not complete by the deadline")
	// ErrLoaded: a module or patch with the module's name is loaded.
	ErrLoaded = errors.New("klp: already loaded")
	// ErrNotLoaded: no patch of that name in /sys/kernel/livepatch.
	ErrNotLoaded = errors.New("klp: no such patch loaded")
	// ErrUnload: delete_module failed (the errno is wrapped too).
	ErrUnload = errors.New("klp: unloading the module failed")
)

// DefaultDeadline is the transition deadline when none is given.
const DefaultDeadline = time.Minute

// kmsgLines is how many kernel log lines an error quotes at most.
const kmsgLines = 20

// System loads, reverts and lists live patches of the running kernel.
// The zero value uses /sys, /dev/kmsg and uname. Its methods must not run
// concurrently with each other (livepatch transitions are global to the
// kernel).
type System struct {
	SysDir   string                 // sysfs mount point; "" means /sys
	KmsgPath string                 // kernel log device; "" means /dev/kmsg
	Release  func() (string, error) // running release; nil means uname -r
	// Vermagic returns the running kernel's module vermagic; nil checks
	// only the vermagic's release field.
	Vermagic func() (string, error)
	Logger   *slog.Logger     // nil discards
	Now      func() time.Time // clock for the measured durations; nil means time.Now
	Poll     time.Duration    // sysfs polling interval; 0 means 10 ms
	// Modules loads and deletes modules; nil means the running kernel
	// (memfd_create + finit_module, delete_module). Tests give the fake
	// kernel of agent/klp/klptest, which keeps a fake sysfs in step.
	Modules Modules
}

// Modules is the kernel's module loader as System uses it.
type Modules interface {
	// Load hands exactly these bytes to the kernel with the module
	// parameters params ("" for none; "name=value name2=value2").
	Load(name string, module []byte, params string) error
	// Delete deletes the module without waiting for its users; an error
	// for which retryUnload is true (EBUSY, EAGAIN) is retried.
	Delete(name string) error
}

// kernelModules is the running kernel's module loader.
type kernelModules struct{}

func (kernelModules) Load(name string, module []byte, params string) error {
	return loadModule(name, module, params)
}

func (kernelModules) Delete(name string) error { return unloadModule(name) }

func (s *System) modules() Modules {
	if s.Modules == nil {
		return kernelModules{}
	}
	return s.Modules
}

// LoadOptions says what a Load expects.
type LoadOptions struct {
	Name     string        // expected module name; "" accepts the module's own
	Release  string        // kernel release the patch is for; "" means the module's vermagic release
	Deadline time.Duration // for the transition (and for reversing it); 0 means DefaultDeadline
	// Params are the module parameters handed to finit_module
	// ("name=value" each; checked by manifest.CheckModuleParams).
	Params []string
}

// Result is a completed Load, with what each part of it took. The
// kernel enables the patch inside the module's init, which runs in
// finit_module; on a quiet 6.1 kernel the whole consistency-model
// transition usually completes there too, so SysfsWait is often 0.
type Result struct {
	Name string
	// CheckTime: the agent's checks, from the verified bytes to the
	// finit_module call (parse .modinfo, release and vermagic, sysfs).
	CheckTime time.Duration
	// FinitTime: the finit_module call, as the agent times it: the
	// kernel relocates the module, runs its init (klp_enable_patch),
	// and returns.
	FinitTime time.Duration
	// SysfsWait: from finit_module returning to the agent first reading
	// /sys/kernel/livepatch/<name>/transition as 0 (polled every
	// System.Poll).
	SysfsWait time.Duration
	// KernelTransition: the kernel's own account, from its log
	// timestamps: from "enabling patch" to "patching complete". 0 when
	// the kernel log is unreadable or lacks either line.
	KernelTransition time.Duration
	// DoneInInit: the kernel logged "patching complete" before
	// finit_module returned (the log's clock against CLOCK_MONOTONIC read
	// as it returned): the transition completed inside module init, and
	// SysfsWait only measures the agent reading sysfs. False also when
	// the log does not say.
	DoneInInit bool
	// Replaced names the patches that were enabled before this Load and
	// are not after it: the kernel replaced them (the module was built
	// with .replace = true, whatever a manifest said). Their modules have
	// been unloaded.
	Replaced []string
	// Enabled names every patch enabled in sysfs after the Load, this one
	// included: what the kernel runs now.
	Enabled []string
}

// Total is the agent's whole time for the Load: checks, finit_module
// and the wait for sysfs.
func (r *Result) Total() time.Duration { return r.CheckTime + r.FinitTime + r.SysfsWait }

// Patch is one entry of /sys/kernel/livepatch.
type Patch struct {
	Name       string
	Enabled    bool
	Transition bool
}

func (s *System) sysDir() string {
	if s.SysDir == "" {
		return "/sys"
	}
	return s.SysDir
}

func (s *System) lpDir() string { return filepath.Join(s.sysDir(), "kernel", "livepatch") }

func (s *System) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *System) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *System) poll() time.Duration {
	if s.Poll <= 0 {
		return 10 * time.Millisecond
	}
	return s.Poll
}

// Facts reads what CheckModule needs to know about the running kernel.
func (s *System) Facts() (KernelFacts, error) {
	var k KernelFacts
	rel := s.Release
	if rel == nil {
		rel = uname
	}
	r, err := rel()
	if err != nil {
		return k, fmt.Errorf("klp: kernel release: %w", err)
	}
	k.Release = r
	fi, err := os.Stat(s.lpDir())
	switch {
	case err == nil:
		k.Livepatch = fi.IsDir()
	case !errors.Is(err, fs.ErrNotExist):
		return k, fmt.Errorf("klp: %w", err)
	}
	if s.Vermagic != nil {
		if k.Vermagic, err = s.Vermagic(); err != nil {
			return k, fmt.Errorf("klp: kernel vermagic: %w", err)
		}
	}
	return k, nil
}

// Check decides whether the module inf may be loaded as a live patch for
// wantRelease into the running kernel (see CheckModule).
func (s *System) Check(inf *Info, wantRelease string) error {
	k, err := s.Facts()
	if err != nil {
		return err
	}
	return CheckModule(inf, k, wantRelease)
}

// List returns the patches in /sys/kernel/livepatch, by name. A kernel
// without livepatch support is ErrUnsupported.
func (s *System) List() ([]Patch, error) {
	ents, err := os.ReadDir(s.lpDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s", ErrUnsupported, s.lpDir())
	}
	if err != nil {
		return nil, fmt.Errorf("klp: list: %w", err)
	}
	var ps []Patch
	for _, e := range ents {
		p, err := s.patch(e.Name())
		if errors.Is(err, ErrNotLoaded) {
			continue // freed while listing
		}
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// patch reads one patch's state; a missing directory is ErrNotLoaded.
func (s *System) patch(name string) (Patch, error) {
	p := Patch{Name: name}
	for _, a := range []struct {
		file string
		v    *bool
	}{{"enabled", &p.Enabled}, {"transition", &p.Transition}} {
		b, err := os.ReadFile(filepath.Join(s.lpDir(), name, a.file))
		// ENODEV: the kernel is removing the directory (a patch being
		// freed after its unpatching transition).
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
			return p, fmt.Errorf("%w: %s", ErrNotLoaded, name)
		}
		if err != nil {
			return p, fmt.Errorf("klp: patch %s: %w", name, err)
		}
		if *a.v, err = parseSysfsBool(b); err != nil {
			return p, fmt.Errorf("klp: patch %s %s: %w", name, a.file, err)
		}
	}
	return p, nil
}

func (s *System) setEnabled(name string, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(s.lpDir(), name, "enabled"), []byte(v), 0); err != nil {
		return fmt.Errorf("klp: write %s to %s/enabled: %w", v, name, err)
	}
	return nil
}

// Load checks module (see Check and LoadOptions), loads exactly these
// bytes with finit_module and waits for the patch's transition to
// complete. A transition still running at the deadline (or when ctx
// ends) is reversed, waited for, the module unloaded, and ErrStalled (or
// the context's error) returned. A module that loads but leaves no
// enabled patch is unloaded again (ErrNotLoaded). A patch that
// replaced others (built with .replace = true) leaves their modules
// loaded but disabled: Load unloads them and names them in
// Result.Replaced.
func (s *System) Load(ctx context.Context, module []byte, opts LoadOptions) (*Result, error) {
	start := s.now()
	inf, err := ParseModule(module)
	if err != nil {
		return nil, err
	}
	if opts.Name != "" && opts.Name != inf.Name {
		return nil, fmt.Errorf("%w: want %s, module is %s", ErrName, opts.Name, inf.Name)
	}
	if err := s.Check(inf, opts.Release); err != nil {
		return nil, err
	}
	name := inf.Name
	if _, err := os.Stat(filepath.Join(s.sysDir(), "module", name)); err == nil {
		return nil, fmt.Errorf("%w: module %s", ErrLoaded, name)
	}
	before, err := s.List()
	if err != nil {
		return nil, err
	}
	deadline := opts.Deadline
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	log := s.log().With("patch", name)

	kmsg := s.openKmsg(log)
	defer kmsg.close()
	called := s.now()
	if err := s.modules().Load(name, module, strings.Join(opts.Params, " ")); err != nil {
		lines := kmsg.read()
		log.Error("finit_module failed", "err", err, "kernel_log", lines)
		return nil, fmt.Errorf("%w: finit_module %s: %w; kernel log: %s", ErrLoad, name, err, quoteLines(lines))
	}
	loaded, loadedMono := s.now(), monotonicUsec()
	res := &Result{Name: name, CheckTime: called.Sub(start), FinitTime: loaded.Sub(called)}
	log.Info("module loaded", "finit_module", res.FinitTime, "params", opts.Params)

	done, werr := s.waitTransition(ctx, name, deadline, false)
	if errors.Is(werr, ErrNotLoaded) {
		// Loaded, but it registered no patch (or the kernel dropped it):
		// nothing of it may stay.
		uerr := s.unload(context.Background(), name, deadline)
		return nil, fmt.Errorf("%w: module %s loaded but has no enabled patch in sysfs; unloaded (%v)", ErrNotLoaded, name, uerr)
	}
	if werr != nil || !done {
		cause := werr
		if cause == nil {
			cause = fmt.Errorf("%w: %s still in transition after %v", ErrStalled, name, deadline)
		}
		log.Warn("transition did not complete; reversing", "err", cause)
		rerr := s.reverseAndUnload(name, deadline)
		lines := kmsg.read()
		if rerr != nil {
			return nil, fmt.Errorf("%w; reversing failed: %w; kernel log: %s", cause, rerr, quoteLines(lines))
		}
		return nil, fmt.Errorf("%w; reversed and unloaded; kernel log: %s", cause, quoteLines(lines))
	}
	res.SysfsWait = s.now().Sub(loaded)
	if took, done, ok := kernelTransition(kmsg.records(), name); ok {
		res.KernelTransition = took
		res.DoneInInit = loadedMono > 0 && done <= loadedMono
	}
	log.Info("patch enabled", "checks", res.CheckTime, "finit_module", res.FinitTime,
		"sysfs_wait", res.SysfsWait, "kernel_transition", res.KernelTransition, "done_in_init", res.DoneInInit)

	for _, old := range before {
		if !old.Enabled {
			continue
		}
		p, err := s.patch(old.Name)
		if err == nil && p.Enabled {
			continue
		}
		if err != nil && !errors.Is(err, ErrNotLoaded) {
			return res, err
		}
		// Replaced: the kernel disables it and frees it asynchronously;
		// its module stays loaded until deleted.
		if err := s.unload(ctx, old.Name, deadline); err != nil {
			return res, fmt.Errorf("klp: unloading replaced patch %s: %w", old.Name, err)
		}
		log.Info("replaced patch unloaded", "replaced", old.Name)
		res.Replaced = append(res.Replaced, old.Name)
	}
	after, err := s.List()
	if err != nil {
		return res, err
	}
	for _, p := range after {
		if p.Enabled {
			res.Enabled = append(res.Enabled, p.Name)
		}
	}
	return res, nil
}

// Revert disables the patch name, waits for the transition and unloads
// its module. A transition still running at the deadline is reversed
// (the patch stays enabled) and ErrStalled returned.
func (s *System) Revert(ctx context.Context, name string, deadline time.Duration) error {
	if !validName(name) {
		return fmt.Errorf("%w: %q", ErrNotLoaded, name)
	}
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	log := s.log().With("patch", name)
	p, err := s.patch(name)
	if err != nil {
		return err
	}
	if p.Enabled {
		if err := s.setEnabled(name, false); err != nil {
			return err
		}
	}
	done, err := s.waitTransition(ctx, name, deadline, true)
	if err != nil || !done {
		if err == nil {
			err = fmt.Errorf("%w: disabling %s still in transition after %v", ErrStalled, name, deadline)
		}
		if rerr := s.setEnabled(name, true); rerr != nil {
			return fmt.Errorf("%w; reversing failed: %w", err, rerr)
		}
		log.Warn("revert did not complete; reversed, patch stays enabled", "err", err)
		return fmt.Errorf("%w; reversed, the patch stays enabled", err)
	}
	if err := s.unload(ctx, name, deadline); err != nil {
		return err
	}
	log.Info("patch reverted and unloaded")
	return nil
}

// waitTransition polls the patch until its transition is over, the
// deadline passes (false, nil) or ctx ends (false, ctx error). When
// disabling (gone true), a patch whose directory is gone has completed
// its transition and been freed; when enabling, that is ErrNotLoaded,
// and so is a completed transition that left the patch disabled.
func (s *System) waitTransition(ctx context.Context, name string, deadline time.Duration, gone bool) (bool, error) {
	return s.waitFor(ctx, deadline, func() (bool, error) {
		p, err := s.patch(name)
		switch {
		case errors.Is(err, ErrNotLoaded) && gone:
			return true, nil
		case err != nil:
			return false, err
		case p.Transition:
			return false, nil
		case !gone && !p.Enabled:
			return false, fmt.Errorf("%w: %s completed its transition disabled", ErrNotLoaded, name)
		}
		return true, nil
	})
}

// waitFor calls cond every poll interval until it is true, returns an
// error, the deadline passes or ctx ends.
func (s *System) waitFor(ctx context.Context, deadline time.Duration, cond func() (bool, error)) (bool, error) {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	tick := time.NewTicker(s.poll())
	defer tick.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return ok, err
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("klp: waiting for the transition: %w", ctx.Err())
		case <-timer.C:
			return false, nil
		case <-tick.C:
		}
	}
}

// reverseAndUnload reverses a stalled enabling transition, waits for the
// reversal and unloads the module. It does not take the caller's context:
// a patch must not be left half-applied because a caller gave up.
func (s *System) reverseAndUnload(name string, deadline time.Duration) error {
	ctx := context.Background()
	if err := s.setEnabled(name, false); err != nil {
		return err
	}
	done, err := s.waitTransition(ctx, name, deadline, true)
	if err != nil {
		return err
	}
	if !done {
		return fmt.Errorf("%w: reversing %s still in transition after %v", ErrStalled, name, deadline)
	}
	return s.unload(ctx, name, deadline)
}

// unload waits for the kernel to free the disabled patch (its sysfs
// directory goes away and it drops its module reference), then deletes
// the module, retrying while it is busy.
func (s *System) unload(ctx context.Context, name string, deadline time.Duration) error {
	var last error
	ok, err := s.waitFor(ctx, deadline, func() (bool, error) {
		if _, err := os.Stat(filepath.Join(s.lpDir(), name)); err == nil {
			return false, nil
		}
		last = s.modules().Delete(name)
		if last == nil || !retryUnload(last) {
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if !ok {
		if last == nil {
			last = errors.New("patch still in sysfs")
		}
		return fmt.Errorf("%w: %s after %v: %w", ErrUnload, name, deadline, last)
	}
	if last != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnload, name, last)
	}
	return nil
}

// Unload deletes the module name (delete_module, not waiting). It is for
// modules that are not patches, such as a patch's target module; patches
// go through Revert.
func (s *System) Unload(name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: %q", ErrUnload, name)
	}
	if err := s.modules().Delete(name); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnload, name, err)
	}
	return nil
}

// openKmsg opens the kernel log positioned at its end; without one, the
// errors just carry no kernel log.
func (s *System) openKmsg(log *slog.Logger) *kmsgReader {
	p := s.KmsgPath
	if p == "" {
		p = "/dev/kmsg"
	}
	r, err := openKmsg(p)
	if err != nil {
		log.Debug("no kernel log", "err", err)
		return nil
	}
	return r
}

func quoteLines(lines []string) string {
	if len(lines) == 0 {
		return "(none)"
	}
	if len(lines) > kmsgLines {
		lines = lines[len(lines)-kmsgLines:]
	}
	return strings.Join(slices.Clone(lines), " | ")
}
