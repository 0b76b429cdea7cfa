// Package metrics is the fleet's Prometheus view (`/metrics` on
// `graft-fleet serve`): a collector that reads the fleet's database at
// each scrape. Device counts by online state, board, release and update
// state; failures and rollbacks by reason class; rollout progress; and
// per-device health series for at most a capped number of devices
// (docs/telemetry.md). Fleet-side only: graft-agent never links it.
package metrics
