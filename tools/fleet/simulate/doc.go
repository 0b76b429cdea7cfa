// Package simulate runs many devices in one process for rehearsals,
// tests and benchmarks: each is the real agent (agent/daemon: engine,
// journal, TUF client, MQTT session) on its own simulated board
// (agent/simboard), against a real broker and repository. Devices are
// named PREFIX-00001, PREFIX-00002, …; globs over those IDs choose which
// fail their health checks and which go silent (their downloads hang
// forever, so they never report an outcome).
//
// It is fleet-side tooling: it must never be linked into graft-agent.
package simulate
