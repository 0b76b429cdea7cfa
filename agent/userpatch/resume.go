package userpatch

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The registers a thread gets back after injected system calls must make
// it resume as the kernel would have resumed it from its stop:
//
//   - A system call interrupted by the stop: x86_64 decides how to restart
//     it (the same call, or restart_syscall for -ERESTART_RESTARTBLOCK
//     with its remaining time) from the registers the tracer gives back,
//     so restoring them is enough. arm64 rewinds the PC to the `svc`
//     before the tracer sees the stop and switches x8 to restart_syscall
//     only on its way back to user space, which an injected call
//     cancels. There the thread is first run into the system call
//     (PTRACE_SYSCALL), where the kernel's choice is visible in x8, the
//     call is skipped, and x8 gets that choice back at the end. 32-bit
//     ARM restarts inside the kernel without returning to user space;
//     the same run into the call shows its choice (PTRACE_GET_SYSCALL_INFO)
//     and r7 gets it back, so that the `svc` runs restart_syscall.
//   - A restartable sequence (rseq) the thread is inside: the kernel
//     aborts it to its abort handler whenever the thread is preempted or
//     gets a signal, and clears the thread's rseq_cs on any return to
//     user space outside it — which the injected call is. The thread is
//     aborted first, as the kernel would.

// atRestart reports whether th is parked on a system call instruction
// the kernel may have rewound to restart a call (see above; never on
// x86_64).
func (s *stopped) atRestart(th *thread) bool {
	insn := svcAt(&th.regs)
	if len(insn) == 0 {
		return false
	}
	b, err := s.read(regPC(&th.regs), len(insn))
	return err == nil && string(b) == string(insn)
}

// injectRegs returns the registers th gets back after the injected
// system calls, preparing th for them when it is parked on a restart.
// It runs once per stop and thread; the signal mask is already set.
func (s *stopped) injectRegs(th *thread) (regs, error) {
	if th.prepared {
		return th.regs, nil
	}
	if err := s.abortRseq(th); err != nil {
		return regs{}, err
	}
	if s.atRestart(th) {
		nr, err := s.runIntoSyscall(th)
		if err != nil {
			_ = unix.PtraceSetRegs(th.tid, &th.regs) // back on its call, at least
			return regs{}, err
		}
		setSyscallNR(&th.regs, nr)
	}
	th.prepared = true
	return th.regs, nil
}

// runIntoSyscall runs th, parked on a system call instruction, into the
// call, reads the number the kernel is about to run (its restart
// choice), skips the call and stops th at its exit.
func (s *stopped) runIntoSyscall(th *thread) (uint64, error) {
	const sysGood = 0x80 | int(syscall.SIGTRAP)
	if err := unix.PtraceSetOptions(th.tid, unix.PTRACE_O_TRACESYSGOOD); err != nil {
		return 0, fmt.Errorf("userpatch: pid %d: ptrace options: %w", s.pid, gone(err))
	}
	others := s.others(th)
	var nr uint64
	var err error
	entered := false
	for range maxSyscallStops {
		if err := unix.PtraceSyscall(th.tid, 0); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: run into the system call: %w", s.pid, gone(err))
		}
		th.stopped = false
		var ws unix.WaitStatus
		if err := collectOne(th, others, &ws); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: run into the system call: %w", s.pid, err)
		}
		switch {
		case ws>>16 != 0:
			continue // an interrupt's stop: run on
		case int(ws.StopSignal()) != sysGood:
			th.keep(int(ws.StopSignal()))
			continue
		}
		var r regs
		if err := unix.PtraceGetRegs(th.tid, &r); err != nil {
			return 0, fmt.Errorf("userpatch: pid %d: registers: %w", s.pid, gone(err))
		}
		if !entered {
			if nr, err = entryNR(th.tid, &r); err != nil {
				return 0, fmt.Errorf("userpatch: pid %d: system call number: %w", s.pid, gone(err))
			}
			entered = true
			if err := skipSyscall(th.tid); err != nil {
				return 0, fmt.Errorf("userpatch: pid %d: skip the system call: %w", s.pid, gone(err))
			}
			continue
		}
		return nr, nil // at the skipped call's exit
	}
	return 0, fmt.Errorf("userpatch: pid %d: thread %d did not reach its system call in %d stops: %w", s.pid, th.tid, maxSyscallStops, ErrInject)
}

// others are the threads of s but th.
func (s *stopped) others(th *thread) []*thread {
	out := make([]*thread, 0, len(s.threads))
	for _, o := range s.threads {
		if o != th {
			out = append(out, o)
		}
	}
	return out
}

// abortRseq moves th to the abort handler of the restartable sequence
// it is inside, if any, and clears its rseq_cs, as the kernel does.
func (s *stopped) abortRseq(th *thread) error {
	var cfg struct {
		ptr       uint64
		size, sig uint32
		flags     uint32
		_         uint32
	}
	if err := ptraceData(unix.PTRACE_GET_RSEQ_CONFIGURATION, th.tid, unsafe.Sizeof(cfg), unsafe.Pointer(&cfg)); err != nil || cfg.ptr == 0 {
		return nil // no rseq (or a kernel before 5.13, which cannot say)
	}
	b, err := s.read(cfg.ptr+8, 8) // struct rseq: u32 cpu_id_start, u32 cpu_id, u64 rseq_cs
	if err != nil {
		return nil
	}
	cs := binary.LittleEndian.Uint64(b)
	if cs == 0 {
		return nil
	}
	d, err := s.read(cs, 32) // struct rseq_cs: u32 version, u32 flags, u64 start_ip, post_commit_offset, abort_ip
	if err != nil {
		return nil
	}
	start, post, abort := binary.LittleEndian.Uint64(d[8:]), binary.LittleEndian.Uint64(d[16:]), binary.LittleEndian.Uint64(d[24:])
	if pc := regPC(&th.regs); pc < start || pc-start >= post {
		return nil
	}
	setPC(&th.regs, abort)
	return s.write(cfg.ptr+8, make([]byte, 8))
}
