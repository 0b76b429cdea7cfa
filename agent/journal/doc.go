// Package journal keeps the agent's one versioned state record: what is
// installed, and the update in flight with the step it has reached. Every
// change is written atomically (temp file, fsync, rename, directory fsync),
// so after a power cut the record is either the one before a step or the
// one after it.
//
// The journal only stores; it never decides what a step means. That is the
// engine's job.
package journal
