package userpatch

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/manifest/ulp"
)

// arm64: arguments in x0..x5, the number in x8, `svc #0; brk #0` as the
// injected code. The kernel rewinds an interrupted system call before the
// tracer sees the thread, so restoring the saved registers restarts it.

const (
	nativeArch = ulp.ARM64
	wordSize   = 8
)

// pageSize: arm64 kernels run 4, 16 or 64 KiB pages; the mapping code
// asks the system.
var pageSize = uint64(unix.Getpagesize())

var trapCode = []byte{
	0x01, 0x00, 0x00, 0xd4, // svc #0
	0x00, 0x00, 0x20, 0xd4, // brk #0
}

// trapPC: a BRK leaves the PC on itself.
func trapPC(scratch uint64) uint64 { return scratch + 4 }

type regs = unix.PtraceRegs

func regPC(r *regs) uint64 { return r.Pc }
func regSP(r *regs) uint64 { return r.Sp }
func regLR(r *regs) uint64 { return r.Regs[30] }

func prepSyscall(r *regs, scratch, nr uint64, args [6]uint64) {
	r.Pc = scratch
	r.Regs[8] = nr
	copy(r.Regs[:6], args[:])
}

func syscallResult(r *regs) uint64 { return r.Regs[0] }

const (
	sysMmap     = unix.SYS_MMAP
	sysMunmap   = unix.SYS_MUNMAP
	sysMprotect = unix.SYS_MPROTECT
)

func mmapOffset(off uint64) uint64 { return off }

// svcAt is `svc #0`, where the kernel parks a thread whose system call
// it restarts.
func svcAt(*regs) []byte { return []byte{0x01, 0x00, 0x00, 0xd4} }

func setPC(r *regs, pc uint64) { r.Pc = pc }

// entryNR is the system call number at a syscall-entry stop: x8, which
// the kernel set to restart_syscall when it restarts a call that way.
func entryNR(_ int, r *regs) (uint64, error) { return r.Regs[8], nil }

func setSyscallNR(r *regs, nr uint64) { r.Regs[8] = nr }

// skipSyscall makes the call a thread is stopped at the entry of a no-op
// (the NT_ARM_SYSTEM_CALL register set to -1).
func skipSyscall(tid int) error {
	nr := int32(-1)
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(&nr)), Len: 4}
	return ptraceData(unix.PTRACE_SETREGSET, tid, 0x404, unsafe.Pointer(&iov)) // NT_ARM_SYSTEM_CALL
}
