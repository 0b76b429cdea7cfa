// Package ledger is the factory's audit trail: one append-only record per
// provisioning attempt (device ID, SoC serial, MAC, certificate
// fingerprint, release, station, time, outcome and reason) in an embedded
// SQLite database (modernc.org/sqlite, pure Go). Triggers make the table
// append-only; Append refuses a second identity for a SoC serial that is
// already provisioned unless the record is forced.
//
// It is a station-side package: it must never be linked into graft-agent.
package ledger
