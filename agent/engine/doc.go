// Package engine is graft's update engine: for each release it runs
// Plan → Apply → Verify → Commit or Revert, and journals every step before
// and after, so that killing the agent at any instant and starting it again
// resumes the update or rolls it back cleanly.
//
// The engine decides; it does no I/O of its own. Trust (TUF), the
// bootloader environment, the slot writer, health checks, reboots and
// reports all come in through Options, so the same engine runs on a device,
// on the simulated board, and in tests.
//
// It must never write the booted slot, never act on a manifest that TUF did
// not verify, and never install a sequence number at or below the installed
// one.
package engine
