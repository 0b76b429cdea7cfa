// Package mqtt is the device's MQTT session: it keeps one connection to the
// fleet's broker up (MQTT 3.1.1, QoS 1, persistent session with the device
// ID as client ID), receives release notices for the device and its groups,
// delivers status events from a durable queue, publishes telemetry, and
// keeps the retained online flag right (true on each connect, false as the
// last will and on Close).
//
// Reconnection is its own loop with jittered, capped exponential backoff
// (paho's automatic reconnect is off: it has no jitter, and a fleet that
// lost its broker must not come back in lock-step). Subscriptions are made
// on every connect, so they survive a broker that lost its sessions.
//
// It must never act on a notice beyond handing it over (notices are hints;
// the engine verifies everything through TUF), never crash or stop on a
// bad incoming payload, and never remove a status event from the queue
// before the broker acknowledged it.
package mqtt
