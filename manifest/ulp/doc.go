// Package ulp is graft's userspace live-patch bundle: the Go types, a
// strict CBOR codec, and the pure rules for linking a bundle's code into a
// process and redirecting a function's entry (relocations, trampolines,
// entry prefixes) on amd64, arm64 and arm (ARM and Thumb-2).
//
// A bundle carries its own checksum (SHA-256 over its bytes, verified
// before decoding), the hash of every byte of each function it replaces,
// the range of each function no thread may be inside while it is patched,
// and whether the builder proved no pointer into the patch can escape.
//
// A bundle is built on the fleet side (graft-fleet patch build) by
// comparing an original and a fixed build of the affected source function
// by function, and applied by the agent (agent/ulp) to every process that
// maps the target build. The wire format is specified in docs/ulp.md.
//
// The package is pure: it never does I/O, never touches a process, and
// never logs. Both sides import it so that they agree on what a bundle
// means.
package ulp
