// Package memtrim gives the kernel back the agent binary's clean pages
// once the agent is idle. Package init and start-up touch most of a Go
// binary's text, rodata and pclntab, and the kernel's fault-around maps 16
// pages per touch, so an idle agent keeps several megabytes of its own file
// resident that it will not touch again until the next update.
//
// Trim advises those mappings out with MADV_PAGEOUT (Linux 5.4+); on older
// kernels it uses MADV_DONTNEED, but only on read-only mappings with no
// anonymous pages, where dropping a page can only mean reading it back from
// the file. It never touches a writable mapping, the heap or a stack, and
// it never fails the agent: a refusal is returned for the log.
package memtrim
