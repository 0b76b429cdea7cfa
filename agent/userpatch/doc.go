// Package userpatch applies userspace live patches (manifest/ulp bundles)
// to running processes with ptrace: it finds every process that maps the
// target build (by GNU build ID, read through /proc/PID/map_files so a
// library replaced on disk is still recognised), stops all of its
// threads, maps the bundle's code near the target, links it, checks the
// target's bytes, and redirects each replaced function's entry with a
// trampoline — only when no thread's PC and no word on any thread's stack
// lies inside the bytes being overwritten; otherwise it resumes the
// process, backs off and retries until a deadline.
//
// Per-architecture facts (registers, the injected system call, the
// breakpoint that ends it) live in regs_<GOARCH>.go; a process is patched
// only by an agent of its own architecture.
//
// The package must never leave a half-written trampoline: every write of
// code happens with all threads stopped, and an error before the first
// trampoline is written unmaps the patch again.
package userpatch
