// Package rollout is the pure decision core of staged rollouts: which
// devices are in which wave (stable, by a hash of the device ID and the
// rollout ID), what a device's status means for its outcome, whether a
// failure threshold tripped, when a silent device has timed out, when a
// wave has soaked long enough for the next, and who may be notified now
// under --max-concurrent and the maintenance window.
//
// It takes values and a time and returns decisions. It must never read a
// clock, touch the database or talk to a broker: the controller in
// tools/fleet/rolloutctl does that and stores every decision before
// acting on it.
package rollout
