// Package repo is graft's fleet-side TUF repository: it generates the role
// keys, creates and signs root, targets, snapshot and timestamp metadata
// with go-tuf/v2's metadata API, adds and removes target files, and
// publishes new versions. graft-fleet's "repo" commands drive it; the
// directory it writes is what `graft-fleet serve`, a web server, object
// storage or a USB stick serves to devices.
//
// Layout of a repository directory:
//
//	keys/<role>-<n>.json     ed25519 private keys, mode 0600 (Open refuses wider),
//	                         sealed with a passphrase (scrypt, XChaCha20-Poly1305)
//	keys/pending/            keys of a rotation waiting for its root
//	pending/root.json        a root version waiting for offline signatures
//	metadata/                what devices fetch: 1.root.json, root.json,
//	                         timestamp.json, snapshot.json, targets.json and
//	                         each delegated <role>.json, plus N.snapshot.json,
//	                         N.targets.json and N.<role>.json with consistent
//	                         snapshots
//	targets/                 target files (HASH.NAME per listed hash with
//	                         consistent snapshots, NAME otherwise)
//	staged/                  changes made by AddTarget/RemoveTarget, not yet
//	                         published
//	repo.json                expiry settings
//
// It must never make a target visible to devices before Publish, never
// write metadata signed by fewer keys than the root's threshold, never
// write a key file readable by others, and never run on a device (it holds
// private keys; the device side is package tuf).
package repo
