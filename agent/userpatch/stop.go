package userpatch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// thread is one seized, stopped thread.
type thread struct {
	tid  int
	sig  int // a signal the thread stopped with, delivered again at detach
	regs regs
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
			if errors.Is(err, ErrGone) {
				continue // a thread that exited meanwhile
			}
			if err != nil {
				return nil, err
			}
			pending = append(pending, th)
		}
		for _, th := range pending {
			sig, event, err := waitStop(th.tid)
			if errors.Is(err, ErrGone) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if event == 0 {
				th.sig = sig // it stopped for a signal of its own first
			}
			s.threads = append(s.threads, th)
		}
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

// seize attaches to one thread and asks it to stop; waitStop waits.
func seize(tid int) (*thread, error) {
	if err := unix.PtraceSeize(tid); err != nil {
		if errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("userpatch: thread %d: %w: %w", tid, ErrTraced, err)
		}
		return nil, fmt.Errorf("userpatch: seize thread %d: %w", tid, gone(err))
	}
	if err := unix.PtraceInterrupt(tid); err != nil {
		return nil, fmt.Errorf("userpatch: interrupt thread %d: %w", tid, gone(err))
	}
	return &thread{tid: tid}, nil
}

// waitStop waits for tid's next stop and returns the stop signal and the
// ptrace event (0 for a signal-delivery stop).
func waitStop(tid int) (sig, event int, err error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("userpatch: wait for thread %d: %w: %w", tid, ErrGone, err)
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return 0, 0, fmt.Errorf("userpatch: thread %d ended (%v): %w", tid, ws, ErrGone)
		case ws.Stopped():
			return int(ws.StopSignal()), int(ws) >> 16, nil
		}
	}
}

// detach lets every thread go, giving back a signal it stopped with.
func (s *stopped) detach() {
	for _, th := range s.threads {
		// A thread that died meanwhile cannot be detached: nothing to do.
		_, _, _ = unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.tid), 0, uintptr(th.sig), 0, 0)
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
		return nil, fmt.Errorf("userpatch: pid %d: read %d bytes at %#x: %w", s.pid, n, addr, err)
	}
	return b, nil
}

func (s *stopped) write(addr uint64, b []byte) error {
	if _, err := s.mem.WriteAt(b, int64(addr)); err != nil {
		return fmt.Errorf("userpatch: pid %d: write %d bytes at %#x: %w", s.pid, len(b), addr, err)
	}
	return nil
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
	for range maxSyscallStops {
		if err := unix.PtraceCont(th.tid, 0); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: continue: %w", s.pid, gone(err))
		}
		sig, event, err := waitStop(th.tid)
		if err != nil {
			return 0, err
		}
		if event != 0 {
			continue // a pending interrupt's stop: run on
		}
		if sig != int(syscall.SIGTRAP) {
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
