// Package telemetry is the device's phone-home report: it samples /proc and
// /sys with small parsers (uptime, load, memory, the agent's own RSS,
// thermal zones, space per mount), adds what the agent knows (slot, boot
// count, live patches, last update, last health check, MQTT reconnects),
// and sends a transport.Telemetry every interval (jittered) and at once
// after a change that matters. Offline, encoded reports wait in a bounded
// queue of their own beside the status outbox: the oldest are dropped and
// counted, and status events never compete with them for room.
package telemetry
