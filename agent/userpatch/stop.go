package userpatch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// thread is one seized, stopped thread.
type thread struct {
	tid     int
	sig     int  // a signal the thread stopped with, delivered again at detach
	stopped bool // in a ptrace stop (as far as the tracer knows)
	dead    bool // exited and reaped
	regs    regs
}

// stopped is a process with every thread seized and stopped. Its methods
// run on the tracer thread that created it.
type stopped struct {
	pid     int
	threads []*thread
	mem     *os.File // /proc/PID/mem: reads and writes, even to read-only code
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
	for round := 0; ; round++ {
		if round == maxStopRounds {
			return nil, fmt.Errorf("userpatch: pid %d: threads still appearing after %d rounds: %w", pid, round, ErrBusy)
		}
		tids, err := tasks(pid)
		if err != nil {
			return nil, err
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
		// EPERM means another tracer, or a thread already exiting.
		if errors.Is(err, syscall.EPERM) {
			if st, serr := readStat(tid); serr == nil && st.TracerPID != 0 {
				return nil, fmt.Errorf("userpatch: thread %d is traced by pid %d: %w: %w", tid, st.TracerPID, ErrTraced, err)
			}
			return nil, fmt.Errorf("userpatch: thread %d is exiting: %w: %w", tid, ErrGone, err)
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
		th.stopped = true
		if ws>>16 == 0 && th.sig == 0 {
			th.sig = int(ws.StopSignal()) // it stopped for a signal of its own
		}
	}
	return true
}

// reapIfDead reaps a stopped thread that was killed meanwhile. Only for
// threads already known to be stopped: for them the only news can be
// their death.
func reapIfDead(th *thread) { poll(th) }

// detach lets every thread go, giving back a signal it stopped with. A
// thread that is no longer in a stop was killed meanwhile (SIGKILL wakes
// a tracee): it is reaped, or its process could never be.
func (s *stopped) detach() {
	var killed []*thread
	for _, th := range s.threads {
		if th.dead {
			continue
		}
		_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.tid), 0, uintptr(th.sig), 0, 0)
		if errno == syscall.ESRCH {
			th.stopped = false
			killed = append(killed, th)
		}
	}
	// A killed thread exits promptly; one that stops again instead
	// (a last event) is detached again.
	deadline := time.Now().Add(stopTimeout)
	for len(killed) > 0 && time.Now().Before(deadline) {
		_ = collect(killed, nil, deadline)
		killed = slices.DeleteFunc(killed, func(th *thread) bool {
			if th.dead {
				return true
			}
			_, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.tid), 0, 0, 0, 0)
			th.stopped = false
			return errno != syscall.ESRCH
		})
	}
	s.threads = nil
	if s.mem != nil {
		s.mem.Close()
		s.mem = nil
	}
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
			th.stopped = true
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

// maxSyscallStops bounds the stops an injected system call may take
// (signals arriving meanwhile are kept for detach).
const maxSyscallStops = 16

// syscall runs one system call in the process, on its first thread, with
// trapCode written at scratch (an executable address of the process whose
// bytes are restored afterwards). All other threads stay stopped.
func (s *stopped) syscall(scratch, nr uint64, args ...uint64) (uint64, error) {
	th := s.threads[0]
	saved := th.regs
	orig, err := s.read(scratch, len(trapCode))
	if err != nil {
		return 0, err
	}
	if err := s.write(scratch, trapCode); err != nil {
		return 0, err
	}
	defer s.write(scratch, orig) //nolint:errcheck // best effort; the read proved the page writable
	var a [6]uint64
	copy(a[:], args)
	r := saved
	prepSyscall(&r, scratch, nr, a)
	if err := unix.PtraceSetRegs(th.tid, &r); err != nil {
		return 0, fmt.Errorf("userpatch: pid %d: set registers: %w", s.pid, gone(err))
	}
	defer unix.PtraceSetRegs(th.tid, &saved) //nolint:errcheck // a gone thread needs no registers
	others := s.threads[1:]
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
		if sig := int(ws.StopSignal()); sig != int(syscall.SIGTRAP) {
			if th.sig == 0 {
				th.sig = sig // the process's own signal: delivered at detach
			}
			continue
		}
		if err := unix.PtraceGetRegs(th.tid, &r); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: registers: %w", s.pid, gone(err))
		}
		if pc := regPC(&r); pc != trapPC(scratch) {
			return 0, fmt.Errorf("userpatch: pid %d: SIGTRAP at %#x, not at the injected breakpoint %#x: %w", s.pid, pc, trapPC(scratch), ErrInject)
		}
		v, errno := retErr(syscallResult(&r))
		if errno != 0 {
			return 0, fmt.Errorf("userpatch: pid %d: injected syscall %d: %w: %w", s.pid, nr, ErrInject, errno)
		}
		return v, nil
	}
	return 0, fmt.Errorf("userpatch: pid %d: injected syscall %d did not finish in %d stops: %w", s.pid, nr, maxSyscallStops, ErrInject)
}
