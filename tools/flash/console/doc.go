// Package console is the technician's side of graft-agent's serial debug
// console: find the port (a path, or a USB adapter by VID:PID[:serial]),
// run one console command through the machine mode and get its result,
// unlock the device's changing commands with an operator key, and attach a
// terminal to the line — raw, logged with timestamps, and reconnected when
// the adapter is unplugged and plugged back.
package console
