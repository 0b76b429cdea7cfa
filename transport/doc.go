// Package transport is graft's wire contract between the fleet and its
// devices: MQTT topic names under Prefix and the CBOR messages carried on
// them (Notice, Status, Telemetry, the online flag).
//
// Messages use integer map keys, core deterministic encoding, and strict
// decoding: the size limit is checked before any parsing, duplicate keys,
// indefinite lengths, tags and deep nesting are refused, unknown keys below
// 256 are refused and unknown keys from 256 up are ignored (room for
// extensions that old agents may skip).
//
// This package is pure: it never opens a connection, reads a file or
// decides anything about an update. A Notice is a hint; it must never be
// treated as authority over what a device installs (that is TUF's job).
package transport
