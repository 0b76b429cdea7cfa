// Package console is graft-agent's serial debug console: a technician's
// way into a device that is off the network. One line carries two modes at
// once, told apart by transport/serialframe: text lines are commands typed
// at the "graft>" prompt, frames are the same commands from a script
// (graft-flash console exec), answered with their exit code and output.
//
// Read-only commands are open. Commands that change the device need an
// unlock: a challenge-response in which an operator key the fleet CA
// issued (role admin) signs the device's one-time challenge (Guard, a pure
// core: bytes and a clock in, a decision out). Every unlocked action is
// reported through the agent's status history.
//
// The console never blocks the agent: it runs in its own goroutine or
// process, input lines are bounded, output to a wedged terminal is dropped
// after a write timeout, and the log it shows is a bounded ring.
package console
