package userpatch

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// thread is one seized, stopped thread.
type thread struct {
	tid     int
	tgid    int          // its process (pid, or a process sharing its memory)
	kept    []keptSignal // signals the thread stopped with: delivered again at detach
	stopped bool         // in a ptrace stop (as far as the tracer knows)
	sigStop bool         // that stop is a signal-delivery-stop (a signal can be given back there)
	dead    bool         // exited and reaped
	regs    regs
	// prepared: injectRegs made th ready for injected calls this stop
	prepared bool
}

// keptSignal is a signal a thread dequeued while seized, with the
// siginfo it was sent with: given back as it was sent.
type keptSignal struct {
	sig  int
	info siginfo
}

// siginfo is the kernel's siginfo_t (128 bytes on every arch), opaque
// but for its first fields.
type siginfo [128]byte

// code is si_code (the third int on every Linux arch).
func (si *siginfo) code() int32 {
	return int32(uint32(si[8]) | uint32(si[9])<<8 | uint32(si[10])<<16 | uint32(si[11])<<24)
}

// stopped is a process with every thread seized and stopped. Its methods
// run on the tracer thread that created it.
type stopped struct {
	pid     int
	threads []*thread
	mem     *os.File // /proc/PID/mem: reads and writes, even to read-only code
	inj     *thread  // the thread injected system calls run on (injector)
	began   time.Time
}

// maxStopRounds bounds how often the thread list is re-read while threads
// keep appearing.
const maxStopRounds = 64

// stopAll seizes and stops every thread of pid, re-reading the thread list
// until no new thread appears. A process traced by someone else gives
// ErrTraced; one that exits gives ErrGone. On error nothing stays seized.
func stopAll(pid int) (_ *stopped, err error) {
	s := &stopped{pid: pid}
	defer func() {
		if err != nil {
			s.detach()
		}
	}()
	seen := map[int]bool{}
	// Processes sharing the address space (a vfork child and its
	// parent, any CLONE_VM process) run the same code: theirs are
	// stopped and scanned too.
	sharers := mmSharers(pid)
	s.began = time.Now() // the process is stopped from here on
	for round := 0; ; round++ {
		if round == maxStopRounds {
			return nil, fmt.Errorf("userpatch: pid %d: threads still appearing after %d rounds: %w", pid, round, ErrBusy)
		}
		tids, err := tasks(pid)
		if err != nil {
			return nil, err
		}
		tgid := map[int]int{}
		for _, o := range sharers {
			if more, err := tasks(o); err == nil {
				for _, tid := range more {
					tgid[tid] = o
				}
				tids = append(tids, more...)
			}
		}
		var fresh []int
		for _, tid := range tids {
			if !seen[tid] {
				seen[tid] = true
				fresh = append(fresh, tid)
			}
		}
		// Seize and interrupt every new thread first, then wait for all:
		// the threads stop in parallel instead of one scheduler slice
		// after another.
		var pending []*thread
		for _, tid := range fresh {
			th, err := seize(tid)
			if th != nil {
				th.tgid = cmp.Or(tgid[tid], pid)
				// Attached: from here on detach must see it.
				s.threads = append(s.threads, th)
				pending = append(pending, th)
			}
			if errors.Is(err, ErrGone) {
				continue // a thread that exited meanwhile
			}
			if err != nil {
				return nil, err
			}
		}
		if err := collect(pending, s.threads, time.Now().Add(stopTimeout)); err != nil {
			return nil, fmt.Errorf("userpatch: pid %d: %w", pid, err)
		}
		s.threads = slices.DeleteFunc(s.threads, func(th *thread) bool { return th.dead })
		added := len(fresh) > 0
		if !added {
			break
		}
	}
	if len(s.threads) == 0 {
		return nil, fmt.Errorf("userpatch: pid %d: no threads left: %w", pid, ErrGone)
	}
	for _, th := range s.threads {
		if err := unix.PtraceGetRegs(th.tid, &th.regs); err != nil {
			return nil, fmt.Errorf("userpatch: pid %d: registers of thread %d: %w", pid, th.tid, gone(err))
		}
	}
	mem, err := os.OpenFile(filepath.Join(procDir, strconv.Itoa(pid), "mem"), os.O_RDWR, 0)
	if err != nil {
		return nil, procErr(err)
	}
	s.mem = mem
	return s, nil
}

// mmSharers lists the other processes whose memory is pid's (kcmp
// KCMP_VM): a vfork child while it runs, its parent, CLONE_VM children.
func mmSharers(pid int) []int {
	all, err := pids()
	if err != nil {
		return nil
	}
	const kcmpVM = 1
	var out []int
	for _, o := range all {
		if o == pid {
			continue
		}
		r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(o), kcmpVM, 0, 0, 0)
		if errno != 0 || r != 0 {
			continue
		}
		// Kernel threads and exited processes have no memory at all,
		// which kcmp finds equal to that of a process exiting now.
		if m, err := readMaps(o); err == nil && len(m) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// gone wraps ESRCH as ErrGone, keeping the errno.
func gone(err error) error {
	if errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

// seize attaches to one thread and asks it to stop; collect waits. A
// non-nil thread is attached, even when an error comes with it.
func seize(tid int) (*thread, error) {
	if err := unix.PtraceSeize(tid); err != nil {
		// EPERM means another tracer, a thread already exiting, or that
		// the kernel does not let this agent trace the process.
		if errors.Is(err, syscall.EPERM) {
			st, serr := readStat(tid)
			switch {
			case serr == nil && st.TracerPID != 0:
				return nil, fmt.Errorf("userpatch: thread %d is traced by pid %d: %w: %w", tid, st.TracerPID, ErrTraced, err)
			case serr != nil || st.State == "Z" || st.State == "X":
				return nil, fmt.Errorf("userpatch: thread %d is exiting: %w: %w", tid, ErrGone, err)
			}
			return nil, fmt.Errorf("userpatch: seize thread %d: %s: %w: %w", tid, deniedWhy(), ErrDenied, err)
		}
		return nil, fmt.Errorf("userpatch: seize thread %d: %w", tid, gone(err))
	}
	th := &thread{tid: tid}
	if err := unix.PtraceInterrupt(tid); err != nil {
		// Attached but dying: collect and detach reap it.
		return th, fmt.Errorf("userpatch: interrupt thread %d: %w", tid, gone(err))
	}
	return th, nil
}

// deniedWhy names what may deny ptrace here: Yama's scope when it is
// set, and the capability the agent needs.
func deniedWhy() string {
	why := "the agent lacks CAP_SYS_PTRACE for it, or it is another user's or not dumpable"
	if b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope"); err == nil {
		if v := strings.TrimSpace(string(b)); v != "0" {
			why = "Yama ptrace_scope is " + v + " (kernel.yama.ptrace_scope), or " + why
		}
	}
	return why
}

// stopTimeout bounds how long threads may take to stop (or an injected
// system call to return).
const stopTimeout = 3 * time.Second

// collect polls the threads in want until each has stopped or exited,
// reaping the threads in others that exit meanwhile. Polling, not a
// blocking wait: when a traced process dies, its leader's exit is
// reported only after the tracer has reaped every other thread, so a
// blocking wait for one thread could wait forever.
func collect(want, others []*thread, deadline time.Time) error {
	var b backoff
	for {
		waiting := 0
		for _, th := range want {
			if th.stopped || th.dead {
				continue
			}
			if !poll(th) {
				waiting++
			}
		}
		for _, th := range others {
			if th.stopped && !th.dead {
				reapIfDead(th)
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d threads did not stop in %v: %w", waiting, stopTimeout, ErrBusy)
		}
		b.wait()
	}
}

// backoff paces polling: a few immediate retries (a running thread stops
// within microseconds of an interrupt), then short sleeps — the stop
// time of the whole process is what the poll interval adds to.
type backoff struct{ n int }

func (b *backoff) wait() {
	b.n++
	switch {
	case b.n <= 4:
		runtime.Gosched()
	case b.n <= 1000:
		time.Sleep(20 * time.Microsecond)
	default:
		time.Sleep(time.Millisecond)
	}
}

// poll checks th for a stop or an exit without blocking; it reports
// whether th is settled (stopped or dead).
func poll(th *thread) bool {
	var ws unix.WaitStatus
	wpid, err := unix.Wait4(th.tid, &ws, unix.WALL|unix.WNOHANG, nil)
	switch {
	case errors.Is(err, syscall.EINTR) || (err == nil && wpid == 0):
		return false
	case err != nil || ws.Exited() || ws.Signaled():
		th.dead, th.stopped = true, false
	case ws.Stopped():
		th.stopped, th.sigStop = true, ws>>16 == 0
		if th.sigStop {
			th.keep(int(ws.StopSignal())) // it stopped for a signal of its own
		}
	}
	return true
}

// keep records the signal th is in a signal-delivery-stop for, with its
// siginfo; the signal is suppressed now and given back at detach.
func (th *thread) keep(sig int) {
	k := keptSignal{sig: sig}
	if err := ptraceData(unix.PTRACE_GETSIGINFO, th.tid, 0, unsafe.Pointer(&k.info)); err != nil {
		// No siginfo (a thread killed meanwhile): a plain signal.
		k.info = siginfo{}
	}
	th.kept = append(th.kept, k)
}

// ptraceData is a ptrace request that passes a pointer as data.
func ptraceData(req, tid int, addr uintptr, data unsafe.Pointer) error {
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, uintptr(data), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// reapIfDead reaps a stopped thread that was killed meanwhile. Only for
// threads already known to be stopped: for them the only news can be
// their death.
func reapIfDead(th *thread) { poll(th) }

// detachGrace is how long detach waits for a killed thread to exit, or a
// thread that never stopped to stop, before it gives up on detaching it
// itself and retires the tracer thread (which unlinks every tracee).
const detachGrace = 500 * time.Millisecond

// detach lets every thread go, giving back the signals it stopped with,
// each with the siginfo it was sent with. A thread that is no longer in a
// stop was killed meanwhile (SIGKILL wakes a tracee) and is reaped, or
// its process could never be; a thread that never stopped (uninterruptible
// sleep, a vfork parent) cannot be detached by request: the tracer thread
// is retired instead (markStale), which unlinks it and drops its pending
// interrupt, so it never enters a stop nobody ends.
func (s *stopped) detach() {
	var left []*thread
	for _, th := range s.threads {
		if th.dead {
			continue
		}
		if !th.stopped || !th.release(s.pid) {
			th.stopped = false
			left = append(left, th)
		}
	}
	// A killed thread exits promptly; one that stops after all is
	// detached then.
	deadline := time.Now().Add(detachGrace)
	var b backoff
	for len(left) > 0 && time.Now().Before(deadline) {
		left = slices.DeleteFunc(left, func(th *thread) bool {
			if !poll(th) {
				return false
			}
			return th.dead || th.release(s.pid)
		})
		if len(left) > 0 {
			b.wait()
		}
	}
	if len(left) > 0 {
		markStale()
	}
	s.threads = nil
	if s.mem != nil {
		s.mem.Close()
		s.mem = nil
	}
}

// release detaches a stopped thread, giving back its kept signals: the
// first through the stop itself when it is a signal-delivery-stop (with
// its siginfo set again: the stop may be the injected breakpoint's), the
// others queued again to the thread. It reports false when the thread
// was not in a stop after all (killed meanwhile).
func (th *thread) release(pid int) bool {
	kept := th.kept
	sig := 0
	if th.sigStop && len(kept) > 0 {
		k := kept[0]
		if k.info != (siginfo{}) {
			_ = ptraceData(unix.PTRACE_SETSIGINFO, th.tid, 0, unsafe.Pointer(&k.info))
		}
		sig, kept = k.sig, kept[1:]
	}
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.tid), 0, uintptr(sig), 0, 0)
	if errno == syscall.ESRCH {
		return false
	}
	th.stopped = false
	for _, k := range kept {
		requeue(cmp.Or(th.tgid, pid), th.tid, k)
	}
	th.kept = nil
	return true
}

// requeue sends a kept signal to the thread again: with its siginfo when
// the kernel allows that (a sigqueue'd signal, si_code < 0), as a plain
// tgkill otherwise.
func requeue(tgid, tid int, k keptSignal) {
	if k.info != (siginfo{}) && k.info.code() < 0 {
		_, _, errno := unix.Syscall6(unix.SYS_RT_TGSIGQUEUEINFO, uintptr(tgid), uintptr(tid), uintptr(k.sig), uintptr(unsafe.Pointer(&k.info)), 0, 0)
		if errno == 0 {
			return
		}
	}
	_ = unix.Tgkill(tgid, tid, syscall.Signal(k.sig))
}

func (s *stopped) read(addr uint64, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := s.mem.ReadAt(b, int64(addr)); err != nil {
		return nil, fmt.Errorf("userpatch: pid %d: read %d bytes at %#x: %w", s.pid, n, addr, memErr(err))
	}
	return b, nil
}

func (s *stopped) write(addr uint64, b []byte) error {
	if _, err := s.mem.WriteAt(b, int64(addr)); err != nil {
		return fmt.Errorf("userpatch: pid %d: write %d bytes at %#x: %w", s.pid, len(b), addr, memErr(err))
	}
	return nil
}

// collectOne waits (polling) for th's next stop and returns its status;
// ErrGone when th exits instead.
func collectOne(th *thread, others []*thread, ws *unix.WaitStatus) error {
	deadline := time.Now().Add(stopTimeout)
	var b backoff
	for {
		wpid, err := unix.Wait4(th.tid, ws, unix.WALL|unix.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR) || (err == nil && wpid == 0):
		case err != nil || ws.Exited() || ws.Signaled():
			th.dead = true
			return fmt.Errorf("thread %d ended: %w", th.tid, ErrGone)
		case ws.Stopped():
			th.stopped, th.sigStop = true, *ws>>16 == 0
			return nil
		}
		for _, o := range others {
			if o.stopped && !o.dead {
				reapIfDead(o)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thread %d did not stop in %v: %w", th.tid, stopTimeout, ErrBusy)
		}
		b.wait()
	}
}

// memErr marks the errors of /proc/PID/mem that mean the process is
// exiting: once its address space is torn down, reads end at once (EOF)
// and writes find nothing (0 bytes: io.ErrUnexpectedEOF).
func memErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

// maxSyscallStops bounds the stops an injected system call may take.
// Signals are blocked in the thread meanwhile, so only an unblockable
// one (SIGSTOP) or a SIGTRAP sent by someone else can add a stop.
const maxSyscallStops = 16

// injector picks the thread injected system calls run on: one that
// stopped without a signal of its own, and is not parked on a system
// call the kernel is about to restart, when there is one.
func (s *stopped) injector() *thread {
	if s.inj != nil {
		return s.inj
	}
	best, score := s.threads[0], -1
	for _, th := range s.threads {
		sc := 0
		if len(th.kept) == 0 {
			sc += 2
		}
		if !s.atRestart(th) {
			sc++
		}
		if sc > score {
			best, score = th, sc
		}
	}
	s.inj = best
	return best
}

// sigmask reads or sets a stopped thread's blocked-signal mask.
func sigmask(tid int, set bool, mask *uint64) error {
	req := unix.PTRACE_GETSIGMASK
	if set {
		req = unix.PTRACE_SETSIGMASK
	}
	return ptraceData(req, tid, 8, unsafe.Pointer(mask))
}

// blockDuringInjection is the mask an injected system call runs under:
// every signal but SIGTRAP stays queued in the kernel, with its siginfo,
// for the process to take after detach. SIGTRAP stays open because the
// kernel forces the injected breakpoint's SIGTRAP, resetting its handler
// to the default when it finds it blocked.
const blockDuringInjection = ^uint64(0) &^ (1 << (syscall.SIGTRAP - 1))

// syscall runs one system call in the process, on the injector thread,
// with trapCode written at scratch (an executable address of the process
// whose bytes are restored afterwards). All other threads stay stopped.
func (s *stopped) syscall(scratch, nr uint64, args ...uint64) (uint64, error) {
	th := s.injector()
	orig, err := s.read(scratch, len(trapCode))
	if err != nil {
		return 0, err
	}
	if err := s.write(scratch, trapCode); err != nil {
		return 0, err
	}
	defer s.write(scratch, orig) //nolint:errcheck // best effort; the read proved the page writable
	var mask uint64
	if err := sigmask(th.tid, false, &mask); err != nil {
		return 0, fmt.Errorf("userpatch: pid %d: signal mask: %w", s.pid, gone(err))
	}
	block := mask | blockDuringInjection
	if err := sigmask(th.tid, true, &block); err != nil {
		return 0, fmt.Errorf("userpatch: pid %d: signal mask: %w", s.pid, gone(err))
	}
	defer sigmask(th.tid, true, &mask) //nolint:errcheck // a gone thread needs no mask
	saved, err := s.injectRegs(th)
	if err != nil {
		return 0, err
	}
	var a [6]uint64
	copy(a[:], args)
	r := saved
	prepSyscall(&r, scratch, nr, a)
	if err := unix.PtraceSetRegs(th.tid, &r); err != nil {
		return 0, fmt.Errorf("userpatch: pid %d: set registers: %w", s.pid, gone(err))
	}
	defer unix.PtraceSetRegs(th.tid, &saved) //nolint:errcheck // a gone thread needs no registers
	others := s.others(th)
	for range maxSyscallStops {
		if err := unix.PtraceCont(th.tid, 0); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: continue: %w", s.pid, gone(err))
		}
		th.stopped = false
		var ws unix.WaitStatus
		if err := collectOne(th, others, &ws); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: injected syscall %d: %w", s.pid, nr, err)
		}
		if ws>>16 != 0 {
			continue // a pending interrupt's stop: run on
		}
		if err := unix.PtraceGetRegs(th.tid, &r); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: registers: %w", s.pid, gone(err))
		}
		sig := int(ws.StopSignal())
		if sig != int(syscall.SIGTRAP) || regPC(&r) != trapPC(scratch) || !s.ownTrap(th) {
			th.keep(sig) // the process's own signal: given back at detach
			continue
		}
		v, errno := retErr(syscallResult(&r))
		if errno != 0 {
			return 0, fmt.Errorf("userpatch: pid %d: injected syscall %d: %w: %w", s.pid, nr, ErrInject, errno)
		}
		return v, nil
	}
	return 0, fmt.Errorf("userpatch: pid %d: injected syscall %d did not finish in %d stops: %w", s.pid, nr, maxSyscallStops, ErrInject)
}

// ownTrap reports whether th's SIGTRAP came from the injected breakpoint
// (the kernel's, si_code > 0) rather than from a kill or sigqueue.
func (s *stopped) ownTrap(th *thread) bool {
	var si siginfo
	if err := ptraceData(unix.PTRACE_GETSIGINFO, th.tid, 0, unsafe.Pointer(&si)); err != nil {
		return true
	}
	return si.code() > 0
}
