// Package store is the fleet's memory: an embedded SQLite database
// (modernc.org/sqlite, pure Go, so CGO_ENABLED=0 holds) owned by
// `graft-fleet serve`. It keeps every device as it last reported itself,
// every status event de-duplicated by its event ID, and rollouts with
// their per-device progress.
//
// One process writes (serve; WAL journal, one connection); other
// graft-fleet commands open the same file read-only. The schema is
// versioned and migrated forward on Open; a file written by a newer
// graft-fleet is refused rather than guessed at.
//
// store decides nothing: which devices are in a wave, or whether a
// threshold tripped, is tools/fleet/rollout's. It must never be linked
// into graft-agent (cross/deps_test.go).
package store
