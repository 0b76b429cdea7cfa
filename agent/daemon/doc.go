// Package daemon wires the agent together at its edge: config → board →
// journal, TUF client, bootloader env, outbox and MQTT session → engine.
// It owns the process-level concerns (the state-directory lock, the
// machine's boot identity and reboot, the retry loop); decisions stay in
// package engine.
package daemon
