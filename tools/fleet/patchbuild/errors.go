package patchbuild

import "errors"

// Refusals. Every error Build and BuildFiles return wraps one of these
// (or, for a bundle ulp rejects, one of ulp's errors).
var (
	// ErrInput: a file is not an ELF of the expected kind (the target is
	// not a shared object or executable, an object is not relocatable).
	ErrInput = errors.New("patchbuild: bad input")
	// ErrNoBuildID: the target has no NT_GNU_BUILD_ID note.
	ErrNoBuildID = errors.New("patchbuild: target has no GNU build ID")
	// ErrArch: an object is for another architecture than the target.
	ErrArch = errors.New("patchbuild: architecture mismatch")
	// ErrFlags: an object was not compiled with the required flags
	// (-ffunction-sections: one function per .text.<name> section).
	ErrFlags = errors.New("patchbuild: object not built with the required flags")
	// ErrNoChange: no function's code or relocations differ.
	ErrNoChange = errors.New("patchbuild: nothing changed")
	// ErrLayout: the fixed build changes a data layout the running target
	// keeps (a global changed size, a struct member moved).
	ErrLayout = errors.New("patchbuild: data layout changed")
	// ErrTooShort: a replaced function is shorter than a trampoline.
	ErrTooShort = errors.New("patchbuild: function too short for a trampoline")
	// ErrUnresolved: a symbol the patch needs is not in the target.
	ErrUnresolved = errors.New("patchbuild: symbol not found in target")
	// ErrAmbiguous: a local symbol name has several addresses in the
	// target and nothing tells them apart.
	ErrAmbiguous = errors.New("patchbuild: ambiguous symbol")
	// ErrBinding: the patch refers to a symbol the process may bind to
	// another definition than the target's (exported with default
	// visibility: a copy in the program, an interposing library), and
	// the target has no GOT entry the patch could go through.
	ErrBinding = errors.New("patchbuild: run-time binding unknown")
	// ErrUnsupported: code the bundle format cannot express (a relocation
	// type outside ulp's tables, TLS, anonymous writable data, ...).
	ErrUnsupported = errors.New("patchbuild: unsupported")
)
