// Package atomicfs holds the durable file helpers shared by the tuf
// packages: whole-file replacement (temp file, fsync, rename, fsync of the
// directory) and directory fsync.
//
// It must never write a destination file in place, and it must never be
// imported from outside graft's tuf tree (it is internal for that reason;
// the agent has its own agent/atomicfile).
package atomicfs
