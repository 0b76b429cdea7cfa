package userpatch

import (
	"encoding/binary"
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/manifest/ulp"
)

// ARMv7 (EABI): arguments in r0..r5, the number in r7. The injected code
// runs in ARM state (the T bit and the IT state are cleared in CPSR for
// it): `svc #0` and the undefined instruction Linux reserves for ptrace
// breakpoints (0xe7f001f0), which stops the thread with SIGTRAP. mmap is
// mmap2 (offset in pages). PTRACE_SINGLESTEP is not available on ARM, and
// not needed.

const (
	nativeArch = ulp.ARM
	wordSize   = 4
	pageSize   = 4096
)

var trapCode = []byte{
	0x00, 0x00, 0x00, 0xef, // svc #0
	0xf0, 0x01, 0xf0, 0xe7, // udf: the ARM Linux ptrace breakpoint
}

func trapPC(scratch uint64) uint64 { return scratch + 4 }

type regs = unix.PtraceRegs

const (
	cpsrT  = 1 << 5
	cpsrIT = 0x0600fc00 // IT[1:0] at 26:25, IT[7:2] at 15:10
)

func regPC(r *regs) uint64 { return uint64(r.Uregs[15]) }
func regSP(r *regs) uint64 { return uint64(r.Uregs[13]) }
func regLR(r *regs) uint64 { return uint64(r.Uregs[14]) }

func prepSyscall(r *regs, scratch, nr uint64, args [6]uint64) {
	r.Uregs[15] = uint32(scratch)
	r.Uregs[16] &^= cpsrT | cpsrIT
	r.Uregs[7] = uint32(nr)
	for i, a := range args {
		r.Uregs[i] = uint32(a)
	}
}

func syscallResult(r *regs) uint64 { return uint64(r.Uregs[0]) }

const (
	sysMmap     = unix.SYS_MMAP2
	sysMunmap   = unix.SYS_MUNMAP
	sysMprotect = unix.SYS_MPROTECT
)

// mmapOffset: mmap2 takes the offset in 4096-byte units.
func mmapOffset(off uint64) uint64 { return off / 4096 }

func retErr(v uint64) (uint64, syscall.Errno) {
	if uint32(v) > ^uint32(4095) {
		return 0, syscall.Errno(-int32(uint32(v)))
	}
	return v, 0
}

// svcAt is `svc #0` in the thread's state (Thumb or ARM), where the
// kernel parks a thread whose system call it restarts.
func svcAt(r *regs) []byte {
	if r.Uregs[16]&cpsrT != 0 {
		return []byte{0x00, 0xdf}
	}
	return []byte{0x00, 0x00, 0x00, 0xef}
}

func setPC(r *regs, pc uint64) { r.Uregs[15] = uint32(pc) }

// entryNR is the system call number at a syscall-entry stop, as the
// kernel will run it (restart_syscall, 0, when it restarts a call that
// way): PTRACE_GET_SYSCALL_INFO, since the kernel restarts inside itself
// and r7 keeps the interrupted call's number.
func entryNR(tid int, _ *regs) (uint64, error) {
	var info [88]byte // struct ptrace_syscall_info: op, arch, ip, sp, then entry.nr at 24
	if err := ptraceData(unix.PTRACE_GET_SYSCALL_INFO, tid, uintptr(len(info)), unsafe.Pointer(&info)); err != nil {
		return 0, err
	}
	if info[0] != unix.PTRACE_SYSCALL_INFO_ENTRY {
		return 0, errors.New("not at a system call entry")
	}
	return binary.LittleEndian.Uint64(info[24:]), nil
}

func setSyscallNR(r *regs, nr uint64) { r.Uregs[7] = uint32(nr) }

// skipSyscall makes the call a thread is stopped at the entry of a no-op
// (PTRACE_SET_SYSCALL to -1).
func skipSyscall(tid int) error {
	const ptraceSetSyscall = 23
	_, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceSetSyscall, uintptr(tid), 0, uintptr(0xffffffff), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
