package userpatch

import (
	"errors"
	"syscall"
)

// Errors. Every error of this package wraps one of these (and, for a
// failed system call, the syscall.Errno too).
var (
	// ErrGone: the process (or thread) exited.
	ErrGone = errors.New("userpatch: process gone")
	// ErrTraced: another tracer (a debugger) is attached.
	ErrTraced = errors.New("userpatch: process already traced")
	// ErrDenied: the kernel refused to let the agent trace the process
	// (Yama's ptrace_scope, a missing CAP_SYS_PTRACE, another user's or
	// a non-dumpable process): a failure with its reason, never "gone".
	ErrDenied = errors.New("userpatch: not permitted to trace the process")
	// ErrBusy: a thread kept executing, or returning into, the bytes a
	// trampoline overwrites until the deadline.
	ErrBusy = errors.New("userpatch: function busy until the deadline")
	// ErrMismatch: the process's bytes at a replaced function are not
	// the ones the bundle was built against.
	ErrMismatch = errors.New("userpatch: target bytes differ from the bundle")
	// ErrWrongBuild: the process does not map the bundle's target build.
	ErrWrongBuild = errors.New("userpatch: process does not map the target build")
	// ErrWrongArch: the bundle is for another architecture than this agent.
	ErrWrongArch = errors.New("userpatch: bundle for another architecture")
	// ErrInject: a system call injected into the process failed.
	ErrInject = errors.New("userpatch: injected system call failed")
	// ErrProcfs: /proc said something this package cannot read.
	ErrProcfs = errors.New("userpatch: unreadable /proc entry")
	// ErrNoBuildID: an ELF file without a GNU build ID.
	ErrNoBuildID = errors.New("userpatch: no build ID")
	// ErrNotApplied: a revert of a patch the process does not carry.
	ErrNotApplied = errors.New("userpatch: patch not applied")
)

var errESRCH = syscall.ESRCH
