package userpatch

// The registers a thread gets back after injected system calls must make
// it resume as the kernel would have resumed it from its stop.

// atRestart reports whether th is parked on a system call instruction
// the kernel rewound to restart it (arm64 and arm rewind the PC before
// the tracer sees the stop; x86_64 only after, from the registers the
// tracer gives back, so restoring them is enough there).
func (s *stopped) atRestart(th *thread) bool {
	if len(svcInsn) == 0 {
		return false
	}
	pc := regPC(&th.regs)
	b, err := s.read(pc, len(svcInsn))
	return err == nil && string(b) == string(svcInsn)
}

// injectRegs returns the registers th gets back after the injected
// system calls.
func (s *stopped) injectRegs(th *thread) (regs, error) {
	return th.regs, nil
}
