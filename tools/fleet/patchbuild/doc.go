// Package patchbuild builds a userspace live-patch bundle (manifest/ulp)
// the Ksplice way: it compares the relocatable objects of an original and
// a fixed build of the affected source function by function, keeps the
// functions whose code or relocations changed, and links their references
// against the exact target ELF (its .dynsym, .symtab or a separate debug
// file), so the agent only has to add the load addresses.
//
// The core (BuildFiles) takes parsed *elf.File values and returns a bundle
// and a report; Build is the thin edge that opens files by path. It refuses
// what it cannot patch safely — nothing changed, a changed data layout, a
// function too short for a trampoline, an object of another arch, a symbol
// the target lacks (statics are matched by name, compilation unit and
// size), a preemptible symbol whose run-time binding it cannot follow, a
// relocation ulp cannot apply — with an error wrapping one of the Err*
// sentinels and naming what failed. What it cannot refuse it makes safe:
// a function whose own branches land in the bytes a trampoline overwrites
// gets the whole function as its guard (golang.org/x/arch decodes it).
//
// It must never guess: no symbol is resolved by a fuzzy match, no
// relocation type is translated unless its meaning is kept exactly, and it
// never writes files, runs compilers or logs.
package patchbuild
