package userpatch

import (
	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/manifest/ulp"
)

// x86_64: the System V syscall convention, `syscall; int3` as the injected
// code, and orig_rax = -1 so that the kernel's syscall-restart logic leaves
// an injected call alone (and applies again to the restored registers).

const (
	nativeArch = ulp.AMD64
	wordSize   = 8
	pageSize   = 4096
)

// trapCode is executed at the scratch address: the system call, then a
// breakpoint that stops the thread with SIGTRAP.
var trapCode = []byte{0x0f, 0x05, 0xcc}

// trapPC is where the thread stops after trapCode: after the int3.
func trapPC(scratch uint64) uint64 { return scratch + 3 }

type regs = unix.PtraceRegs

func regPC(r *regs) uint64 { return r.Rip }
func regSP(r *regs) uint64 { return r.Rsp }

// regLR: x86_64 keeps return addresses on the stack only.
func regLR(r *regs) uint64 { return 0 }

func prepSyscall(r *regs, scratch, nr uint64, args [6]uint64) {
	r.Rip = scratch
	r.Rax = nr
	r.Orig_rax = ^uint64(0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = args[0], args[1], args[2], args[3], args[4], args[5]
}

func syscallResult(r *regs) uint64 { return r.Rax }

const (
	sysMmap     = unix.SYS_MMAP
	sysMunmap   = unix.SYS_MUNMAP
	sysMprotect = unix.SYS_MPROTECT
)

// mmapOffset: the last mmap argument is a byte offset here.
func mmapOffset(off uint64) uint64 { return off }

// svcAt: none; see atRestart.
func svcAt(*regs) []byte { return nil }

func setPC(r *regs, pc uint64) { r.Rip = pc }

// entryNR, setSyscallNR and skipSyscall serve the arm restart path only
// (atRestart is false here).
func entryNR(_ int, r *regs) (uint64, error) { return r.Orig_rax, nil }
func setSyscallNR(r *regs, nr uint64)        { r.Orig_rax = nr }
func skipSyscall(tid int) error {
	var r regs
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		return err
	}
	r.Orig_rax = ^uint64(0)
	return unix.PtraceSetRegs(tid, &r)
}
