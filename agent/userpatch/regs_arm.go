package userpatch

import (
	"errors"
	"syscall"

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

// svcInsn: empty — 32-bit ARM restarts an interrupted call inside the
// kernel (local_restart) and its restart choice is not in the registers
// a tracer reads; the arm64 way (resume.go) is not taken here yet.
var svcInsn []byte

func setPC(r *regs, pc uint64) { r.Uregs[15] = uint32(pc) }

// syscallNR, setSyscallNR and skipSyscall: the arm restart path is not
// taken (svcInsn is empty; see resume.go).
func syscallNR(r *regs) uint64        { return uint64(r.Uregs[7]) }
func setSyscallNR(r *regs, nr uint64) { r.Uregs[7] = uint32(nr) }
func skipSyscall(tid int) error       { return errors.ErrUnsupported }
