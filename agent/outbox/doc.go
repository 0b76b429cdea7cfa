// Package outbox is the agent's durable queue of status events waiting to
// reach the fleet. Each event is one file in a directory, named by a
// zero-padded counter so that names sort in arrival order, and written
// atomically (agent/atomicfile) before Add returns; so an event survives a
// broker outage, an agent restart and a power cut. The MQTT session
// (transport/mqtt) drains it through its Queue interface and removes an
// event only once the broker acknowledged it.
//
// The queue is bounded: past its limit the oldest events are dropped, with
// a log line, so a device cut off for months cannot fill its disk.
//
// It must never interpret the payloads it stores, and never remove an
// event that was not acknowledged or dropped for the bound.
package outbox
