// Package klp applies, reverts and lists kernel live patches: livepatch
// modules (.ko files whose .modinfo says livepatch=Y) loaded with
// finit_module and watched through /sys/kernel/livepatch until the
// kernel's consistency-model transition completes.
//
// The checks are pure (module.go: ParseModule reads an ELF relocatable's
// .modinfo; CheckModule decides whether a module may be loaded into a
// kernel described by KernelFacts). System is the thin I/O layer around
// them: sysfs, uname, /dev/kmsg, memfd_create, finit_module and
// delete_module (sys_linux.go).
//
// It must never hand the kernel a module that failed a check (a module
// for another release, one without livepatch=Y, anything that is not a
// module): the refusal and its reason come from here, before
// finit_module. It must never leave a patch half-applied: a transition
// that does not complete by its deadline is reversed and the module
// unloaded. It does not verify signatures or hashes: callers pass bytes
// they have already verified (TUF), and it loads exactly those bytes.
package klp
