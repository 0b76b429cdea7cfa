package userpatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/manifest/ulp"
)

// Options tune how hard Apply and Revert try.
type Options struct {
	// Deadline bounds the retries while a function is busy (a thread
	// runs in, or will return into, the bytes a trampoline overwrites).
	// Zero means DefaultDeadline.
	Deadline time.Duration
	// MaxStack bounds how many bytes of each thread's stack are scanned
	// for return addresses. Zero means DefaultMaxStack.
	MaxStack uint64
	// Intent, when set, is called once per Apply, outside any stop,
	// after the patch is mapped and before any trampoline is written,
	// with the Applied as it will be (Mem, Sites): the manager journals
	// it, so that a crash in between is reconciled at restart by
	// looking at what the process holds. An error ends the Apply.
	Intent func(*Applied) error
}

// Defaults for Options.
const (
	DefaultDeadline = 5 * time.Second
	DefaultMaxStack = 8 << 20
	firstBackoff    = 200 * time.Microsecond
	maxBackoff      = 50 * time.Millisecond
)

func (o Options) withDefaults() Options {
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.MaxStack == 0 {
		o.MaxStack = DefaultMaxStack
	}
	return o
}

// Site is one redirected function entry in one process.
type Site struct {
	Symbol string `json:"symbol"`
	Addr   uint64 `json:"addr"`  // where the trampoline is written
	Orig   []byte `json:"orig"`  // the bytes it replaced
	Tramp  []byte `json:"tramp"` // the trampoline
}

// Applied is one bundle applied to one process: what Revert needs, and
// what status reports show.
type Applied struct {
	Patch     string `json:"patch"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // with PID, names the process across PID reuse
	Comm      string `json:"comm"`
	Base      uint64 `json:"base"`     // the target's load base in the process
	Mem       uint64 `json:"mem"`      // the patch mapping
	MemSize   uint64 `json:"mem_size"` // its size
	Sites     []Site `json:"sites"`
	// NoEscape is the bundle's flag: its mapping may be removed once
	// reverted and no thread is inside (otherwise it is kept, and reused
	// when the same patch is applied to the process again).
	NoEscape bool `json:"no_escape,omitempty"`
	// Sum names the patch's code and data (SHA-256, hex): a kept mapping
	// is reused only for the same patch.
	Sum      string `json:"sum,omitempty"`
	reused   bool   // Mem is a kept mapping of an earlier apply
	intended bool   // Options.Intent was told
	// Stop is how long the process was stopped by the attempt that
	// succeeded; Attempts counts the attempts (retries when busy).
	Stop     time.Duration `json:"stop_ns"`
	Attempts int           `json:"attempts"`
}

// Patcher applies bundles to processes. Its methods are safe for
// concurrent use; they are serialised on one tracer thread.
type Patcher struct {
	t *tracer

	mu   sync.Mutex
	kept map[keptKey]uint64 // reverted patches' mappings still in place, by process and patch
}

// keptKey names a kept mapping: one patch (Applied.Sum) at one load
// base in one process.
type keptKey struct {
	pid   int
	start uint64
	sum   string
	base  uint64
	size  uint64
}

func keyOfApplied(a *Applied) keptKey {
	return keptKey{a.PID, a.StartTime, a.Sum, a.Base, a.MemSize}
}

// keepMapping remembers a reverted patch's mapping for reuse.
func (p *Patcher) keepMapping(a *Applied) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kept == nil {
		p.kept = map[keptKey]uint64{}
	}
	// Entries of processes that are gone go when the map grows.
	if len(p.kept) >= 1024 {
		maps.DeleteFunc(p.kept, func(k keptKey, _ uint64) bool {
			st, err := readStat(k.pid)
			return err != nil || st.StartTime != k.start
		})
	}
	p.kept[keyOfApplied(a)] = a.Mem
}

// takeKept returns and forgets a kept mapping of the patch a names.
func (p *Patcher) takeKept(a *Applied) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := keyOfApplied(a)
	mem, ok := p.kept[k]
	delete(p.kept, k)
	return mem, ok
}

// patchSum names a bundle's code and data.
func patchSum(b *ulp.Bundle) string {
	h := sha256.New()
	h.Write([]byte(b.Name))
	h.Write([]byte{0})
	h.Write(b.Code)
	h.Write(b.Data)
	return hex.EncodeToString(h.Sum(nil))
}

// NewPatcher starts the tracer thread. Close stops it.
func NewPatcher() *Patcher { return &Patcher{t: newTracer()} }

// Close ends the tracer thread.
func (p *Patcher) Close() { p.t.close() }

// Target is a process mapping a build, as Find reports it.
type Target struct {
	PID       int
	StartTime uint64
	Comm      string
	Base      uint64 // load base of the build in the process
	Path      string // the mapped file (may end in " (deleted)")
	ExecEnd   uint64 // end of the build's highest mapping
	maps      []Mapping
	traced    int
}

// locate finds the mapping of the build in pid and its load base.
func locate(pid int, buildID []byte, ids *idCache) (*Target, error) {
	maps, err := readMaps(pid)
	if err != nil {
		return nil, err
	}
	st, err := readStat(pid)
	if err != nil {
		return nil, err
	}
	t := &Target{PID: pid, StartTime: st.StartTime, Comm: st.Comm, maps: maps, traced: st.TracerPID}
	// The loaded copy is the one whose executable PT_LOAD is mapped
	// executable: a read-only mapping of the same file (a crash
	// reporter's, libbacktrace's) is not code the process runs.
	var dev string
	var inode, span uint64
	for _, m := range maps {
		if m.Inode == 0 || !m.Exec() {
			continue
		}
		inf, err := ids.info(pid, m)
		if err != nil || inf == nil || !bytes.Equal(inf.BuildID, buildID) {
			continue
		}
		base, ok := inf.BaseOf(m)
		if !ok {
			continue
		}
		t.Base, t.Path, dev, inode, span = base, m.Path, m.Dev, m.Inode, inf.End-inf.LoadBase
		break
	}
	if t.Path == "" {
		return nil, fmt.Errorf("userpatch: pid %d (%s) maps no file with build %x: %w", pid, st.Comm, buildID, ErrWrongBuild)
	}
	for _, m := range maps {
		if m.Dev == dev && m.Inode == inode && m.Start >= t.Base && m.Start < t.Base+span && m.End > t.ExecEnd {
			t.ExecEnd = m.End
		}
	}
	return t, nil
}

// Apply applies b to process pid: maps and links the patch code, checks
// the target's bytes, and writes the trampolines while no thread is in, or
// will return into, the overwritten bytes — retrying until o.Deadline.
// On any error the process is left as it was.
func (p *Patcher) Apply(ctx context.Context, pid int, b *ulp.Bundle, o Options) (*Applied, error) {
	o = o.withDefaults()
	if b.Arch != nativeArch {
		return nil, fmt.Errorf("userpatch: bundle %s is for %s, this agent patches %s processes: %w", b.Name, b.Arch, nativeArch, ErrWrongArch)
	}
	t, err := locate(pid, b.BuildID, globalIDs)
	if err != nil {
		return nil, err
	}
	if t.traced != 0 {
		return nil, fmt.Errorf("userpatch: pid %d (%s) is traced by pid %d: %w", pid, t.Comm, t.traced, ErrTraced)
	}
	size := b.ImageSize(pageSize)
	want := place(t.maps, t.Base, t.ExecEnd, size, uint64(ulp.NearRange(b.Arch)))
	var image []byte
	if want != 0 {
		if image, err = ulp.Link(b, want, t.Base, pageSize); err != nil {
			return nil, err
		}
	}
	a := &Applied{Patch: b.Name, PID: pid, StartTime: t.StartTime, Comm: t.Comm, Base: t.Base, MemSize: size,
		NoEscape: b.NoEscape, Sum: patchSum(b)}
	deadline := time.Now().Add(o.Deadline)
	backoff := firstBackoff
	for {
		a.Attempts++
		done, err := p.attemptApply(ctx, t, b, a, want, image, o)
		if err == nil && !done && o.Intent != nil && !a.intended && a.Sites != nil {
			// Mapped, nothing written yet: journal, then write.
			a.intended = true
			if err = o.Intent(a); err == nil {
				continue
			}
		}
		if err != nil || done {
			if err != nil && a.Mem != 0 {
				p.unmap(ctx, a)
			}
			if err != nil {
				return nil, err
			}
			return a, nil
		}
		if time.Now().After(deadline) {
			p.unmap(ctx, a)
			return nil, fmt.Errorf("userpatch: pid %d (%s): %s: a thread stayed in the bytes to overwrite for %v (%d attempts): %w",
				pid, t.Comm, b.Name, o.Deadline, a.Attempts, ErrBusy)
		}
		if err := sleep(ctx, backoff); err != nil {
			p.unmap(ctx, a)
			return nil, err
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attemptApply is one stop of the process. It returns done=false when a
// thread was in the way (the process is resumed; try again later).
func (p *Patcher) attemptApply(ctx context.Context, t *Target, b *ulp.Bundle, a *Applied, want uint64, image []byte, o Options) (done bool, err error) {
	err = p.t.do(ctx, func() error {
		s, err := stopAll(t.PID)
		if err != nil {
			return err
		}
		defer func() {
			s.detach()
			a.Stop = time.Since(s.began)
		}()
		if err := checkTargets(s, t.Base, b); err != nil {
			return err
		}
		if a.Mem == 0 {
			p.reuse(s, t, b, a)
		}
		if a.Mem == 0 {
			if err := s.mapPatch(t, b, a, want, &image); err != nil {
				return err
			}
			if err := s.write(a.Mem, image); err != nil {
				return err
			}
		}
		sites := make([]Site, len(b.Funcs))
		guards := make([]region, len(b.Funcs))
		for i, f := range b.Funcs {
			at := t.Base + f.Target + f.Keep
			tr, err := ulp.Trampoline(b.Arch, f.Thumb, at, a.Mem+f.New)
			if err != nil {
				return fmt.Errorf("userpatch: %s: %w", f.Symbol, err)
			}
			if uint64(len(tr))+f.Keep > f.Size {
				return fmt.Errorf("userpatch: %s: a %d-byte trampoline after %d kept bytes overruns the %d-byte function: %w",
					f.Symbol, len(tr), f.Keep, f.Size, ErrMismatch)
			}
			guards[i] = guardOf(t.Base, f, len(tr))
			orig, err := s.read(at, len(tr))
			if err != nil {
				return err
			}
			sites[i] = Site{Symbol: f.Symbol, Addr: at, Orig: orig, Tramp: tr}
		}
		if o.Intent != nil && !a.intended {
			a.Sites = sites // for the intent; written on the next attempt
			return nil
		}
		if busy, err := s.inUse(guards, t.maps, o.MaxStack); err != nil || busy {
			return err
		}
		for _, st := range sites {
			if err := s.write(st.Addr, st.Tramp); err != nil {
				// Put back what was written so far: no half patch.
				for _, w := range sites {
					_ = s.write(w.Addr, w.Orig)
				}
				return err
			}
		}
		a.Sites = sites
		done = true
		return nil
	})
	return done, err
}

// guardOf is the range no thread may be inside while f's trampoline of
// n bytes is written: from after the kept entry bytes to the bundle's
// guard (the whole function when one of its own branches lands in the
// overwritten bytes), and at least the trampoline.
func guardOf(base uint64, f ulp.Func, n int) region {
	return region{base + f.Target + f.Keep, base + f.Target + max(f.Guard, f.Keep+uint64(n))}
}

// reuse takes the mapping a revert of the same patch left in the process,
// when its code is still what the patch linked there holds.
func (p *Patcher) reuse(s *stopped, t *Target, b *ulp.Bundle, a *Applied) {
	mem, ok := p.takeKept(a)
	if !ok {
		return
	}
	img, err := ulp.Link(b, mem, t.Base, pageSize)
	if err != nil || len(img) < len(b.Code) {
		return
	}
	got, err := s.read(mem, len(b.Code))
	if err != nil || !bytes.Equal(got, img[:len(b.Code)]) {
		return
	}
	a.Mem, a.reused = mem, true
}

// checkTargets compares every byte of each replaced function in the
// process with the bundle's hash of the function it was built against.
func checkTargets(s *stopped, base uint64, b *ulp.Bundle) error {
	for _, f := range b.Funcs {
		got, err := s.read(base+f.Target, int(f.Size))
		if err != nil {
			return err
		}
		if sum := sha256.Sum256(got); !bytes.Equal(sum[:], f.Check) {
			return fmt.Errorf("userpatch: pid %d: %s at %#x: its %d bytes are not the ones %s was built against: %w",
				s.pid, f.Symbol, base+f.Target, f.Size, b.Name, ErrMismatch)
		}
	}
	return nil
}

// mapPatch maps the patch image in the stopped process: at want when that
// is still free (MAP_FIXED_NOREPLACE), anywhere otherwise (then the image
// is linked again for where it landed).
func (s *stopped) mapPatch(t *Target, b *ulp.Bundle, a *Applied, want uint64, image *[]byte) error {
	scratch, err := scratchAddr(t)
	if err != nil {
		return err
	}
	const fixedNoReplace = 0x100000 // MAP_FIXED_NOREPLACE
	prot := uint64(unix.PROT_READ | unix.PROT_EXEC)
	flags := uint64(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS)
	var addr uint64
	if want != 0 {
		addr, err = s.syscall(scratch, sysMmap, want, a.MemSize, prot, flags|fixedNoReplace, ^uint64(0), mmapOffset(0))
	}
	if want == 0 || err != nil {
		if err != nil && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EINVAL) {
			return err
		}
		if addr, err = s.syscall(scratch, sysMmap, 0, a.MemSize, prot, flags, ^uint64(0), mmapOffset(0)); err != nil {
			return err
		}
	}
	a.Mem = addr
	if addr != want {
		if *image, err = ulp.Link(b, addr, t.Base, pageSize); err != nil {
			return err
		}
	}
	if len(b.Data) > 0 || b.BSS > 0 {
		off := b.DataOffset(pageSize)
		if _, err := s.syscall(scratch, sysMprotect, addr+off, a.MemSize-off, unix.PROT_READ|unix.PROT_WRITE); err != nil {
			return err
		}
	}
	return nil
}

// scratchAddr is where injected system calls run: the start of the
// target's first executable mapping (its bytes are put back after each
// call, and every thread is stopped meanwhile).
func scratchAddr(t *Target) (uint64, error) {
	for _, m := range t.maps {
		if m.Exec() && m.Start >= t.Base && m.End <= t.ExecEnd {
			return m.Start, nil
		}
	}
	return 0, fmt.Errorf("userpatch: pid %d: the target has no executable mapping: %w", t.PID, ErrWrongBuild)
}

// unmap removes a patch mapping that carries no trampoline (after a
// failed apply). Best effort: a process that exited needs nothing. A
// reused mapping is kept again instead: pointers into it may be around.
func (p *Patcher) unmap(ctx context.Context, a *Applied) {
	if a.Mem == 0 {
		return
	}
	if a.reused {
		p.keepMapping(a)
		a.Mem = 0
		return
	}
	_ = p.t.do(context.WithoutCancel(ctx), func() error {
		s, err := stopAll(a.PID)
		if err != nil {
			return err
		}
		defer s.detach()
		t, err := locateAt(a)
		if err != nil {
			return err
		}
		scratch, err := scratchAddr(t)
		if err != nil {
			return err
		}
		_, err = s.syscall(scratch, sysMunmap, a.Mem, a.MemSize)
		return err
	})
	a.Mem = 0
}

// locateAt re-reads the maps of a patched process.
func locateAt(a *Applied) (*Target, error) {
	maps, err := readMaps(a.PID)
	if err != nil {
		return nil, err
	}
	t := &Target{PID: a.PID, Base: a.Base, maps: maps}
	for _, m := range maps {
		if m.Start == a.Base {
			for _, n := range maps {
				if n.Dev == m.Dev && n.Inode == m.Inode && n.End > t.ExecEnd {
					t.ExecEnd = n.End
				}
			}
		}
	}
	return t, nil
}

// Revert restores the original bytes of every site of a, under the same
// safety check as Apply, and unmaps the patch when no thread can still be
// running in it (otherwise the mapping stays, unused).
func (p *Patcher) Revert(ctx context.Context, a *Applied, o Options) error {
	o = o.withDefaults()
	deadline := time.Now().Add(o.Deadline)
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		done, err := p.attemptRevert(ctx, a, o)
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("userpatch: pid %d (%s): revert %s: a thread stayed in the trampoline bytes for %v (%d attempts): %w",
				a.PID, a.Comm, a.Patch, o.Deadline, attempt, ErrBusy)
		}
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (p *Patcher) attemptRevert(ctx context.Context, a *Applied, o Options) (done bool, err error) {
	st, err := readStat(a.PID)
	if err != nil {
		return false, err
	}
	if st.StartTime != a.StartTime {
		return false, fmt.Errorf("userpatch: pid %d is another process now: %w", a.PID, ErrGone)
	}
	err = p.t.do(ctx, func() error {
		s, err := stopAll(a.PID)
		if err != nil {
			return err
		}
		defer func() {
			s.detach()
			a.Stop = time.Since(s.began)
		}()
		for _, site := range a.Sites {
			got, err := s.read(site.Addr, len(site.Tramp))
			if err != nil {
				return err
			}
			if !bytes.Equal(got, site.Tramp) {
				return fmt.Errorf("userpatch: pid %d: %s at %#x does not hold %s's trampoline: %w", a.PID, site.Symbol, site.Addr, a.Patch, ErrNotApplied)
			}
		}
		if busy, err := s.inUse(regionsOf(a.Sites), nil, o.MaxStack); err != nil || busy {
			return err
		}
		for _, site := range a.Sites {
			if err := s.write(site.Addr, site.Orig); err != nil {
				return err
			}
		}
		done = true
		// The mapping goes only when the builder proved that the patch
		// hands out no pointer into itself (NoEscape) and no thread is
		// in it, including one about to run its first instruction;
		// otherwise it stays, and is reused when the same patch comes
		// again.
		if a.NoEscape {
			inPatch, err := s.inUse([]region{{a.Mem - 1, a.Mem + a.MemSize}}, nil, o.MaxStack)
			if err == nil && !inPatch {
				if t, err := locateAt(a); err == nil {
					if scratch, err := scratchAddr(t); err == nil {
						if _, err := s.syscall(scratch, sysMunmap, a.Mem, a.MemSize); err == nil {
							a.Mem = 0
							return nil
						}
					}
				}
			}
		}
		p.keepMapping(a)
		return nil
	})
	return done, err
}

// region is a half-open address range [lo, hi).
type region struct{ lo, hi uint64 }

func regionsOf(sites []Site) []region {
	out := make([]region, len(sites))
	for i, s := range sites {
		out[i] = region{s.Addr, s.Addr + uint64(len(s.Tramp))}
	}
	return out
}

// inside reports whether v points strictly inside r: a thread at r.lo
// (an instruction boundary before the write) is safe, one past it is not.
func (r region) inside(v uint64) bool { return v > r.lo && v < r.hi }

// syscallInsns are the system call instructions, as the bytes that end
// at a thread's PC while it is stopped in one: the kernel restarts an
// interrupted call by moving the PC back over them.
var syscallInsns = map[string][][]byte{
	ulp.AMD64: {{0x0f, 0x05}},                           // syscall
	ulp.ARM64: {{0x01, 0x00, 0x00, 0xd4}},               // svc #0
	ulp.ARM:   {{0x00, 0x00, 0x00, 0xef}, {0x00, 0xdf}}, // svc #0 (ARM), svc #0 (Thumb)
}

// restartsBefore reports whether the thread stopped at pc may be in a
// system call the kernel restarts at the instruction before pc.
func (s *stopped) restartsBefore(pc uint64) bool {
	for _, insn := range syscallInsns[nativeArch] {
		n := uint64(len(insn))
		if pc < n {
			continue
		}
		if b, err := s.read(pc-n, int(n)); err != nil || bytes.Equal(b, insn) {
			return true // unreadable: assume the worst
		}
	}
	return false
}

// inUse reports whether any thread's PC or link register, or any word on
// any thread's stack (from its SP to the end of its stack mapping), points
// strictly inside one of the regions. It is conservative: a stale word
// that happens to look like such an address also counts. maps, read
// before the stop, saves reading them while the process waits; they are
// read again when a stack is not in them (a thread started since).
func (s *stopped) inUse(rs []region, maps []Mapping, maxStack uint64) (bool, error) {
	hit := func(v uint64) bool {
		if nativeArch == ulp.ARM {
			v &^= 1 // Thumb return addresses carry bit 0
		}
		return slices.ContainsFunc(rs, func(r region) bool { return r.inside(v) })
	}
	// A PC at a region's end counts when the instruction ending there is
	// a system call: an interrupted one restarts inside the region.
	hitPC := func(v uint64) bool {
		return hit(v) || slices.ContainsFunc(rs, func(r region) bool { return v == r.hi && s.restartsBefore(v) })
	}
	fresh := false
	if maps == nil {
		m, err := readMaps(s.pid)
		if err != nil {
			return false, err
		}
		maps, fresh = m, true
	}
	for _, th := range s.threads {
		if hitPC(regPC(&th.regs)) || hit(regLR(&th.regs)) {
			return true, nil
		}
		sp := regSP(&th.regs)
		end, ok := mappingEnd(maps, sp)
		if !ok && !fresh {
			m, err := readMaps(s.pid)
			if err != nil {
				return false, err
			}
			maps, fresh = m, true
			end, ok = mappingEnd(maps, sp)
		}
		if !ok {
			return true, nil // a stack nowhere in the maps: assume the worst
		}
		end = min(end, sp+maxStack)
		if end <= sp {
			continue
		}
		stack, err := s.read(sp, int(end-sp))
		if err != nil {
			return false, err
		}
		for i := 0; i+wordSize <= len(stack); i += wordSize {
			var v uint64
			for j := wordSize - 1; j >= 0; j-- {
				v = v<<8 | uint64(stack[i+j])
			}
			if hit(v) {
				return true, nil
			}
		}
	}
	return false, nil
}

// mappingEnd returns the end of the mapping holding addr.
func mappingEnd(maps []Mapping, addr uint64) (uint64, bool) {
	for _, m := range maps {
		if addr >= m.Start && addr < m.End {
			return m.End, true
		}
	}
	return 0, false
}

// place picks an address for a patch of size bytes in a gap of maps as
// close as possible to the target [lo, hi), so that near trampolines and
// PC-relative references reach it. 0 means no gap is near enough.
func place(maps []Mapping, lo, hi, size, reach uint64) uint64 {
	sorted := slices.Clone(maps)
	slices.SortFunc(sorted, func(a, b Mapping) int { return cmpU64(a.Start, b.Start) })
	best, bestDist := uint64(0), reach
	for i := 0; i+1 < len(sorted); i++ {
		g0, g1 := pageUp(sorted[i].End), sorted[i+1].Start&^(pageSize-1)
		if strings.HasPrefix(sorted[i+1].Path, "[stack") || g1 < g0+size+2*pageSize {
			continue
		}
		// Leave a guard page on each side.
		var cand uint64
		if g1 <= lo {
			cand = g1 - pageSize - pageUp(size)
		} else {
			cand = g0 + pageSize
		}
		var dist uint64
		switch {
		case cand+size <= lo:
			dist = hi - cand
		case cand >= hi:
			dist = cand + size - lo
		default:
			continue
		}
		if dist < bestDist {
			best, bestDist = cand, dist
		}
	}
	return best
}

func pageUp(v uint64) uint64 { return (v + pageSize - 1) &^ (pageSize - 1) }

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
