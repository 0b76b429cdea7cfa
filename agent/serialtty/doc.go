// Package serialtty opens a serial tty for the agent's framed protocols
// (provisioning, the debug console): raw mode at a baud rate, 8N1, no flow
// control, so frames pass unchanged and the kernel's line editing, echo
// and signals stay out. It is a few termios calls on golang.org/x/sys, so
// the device binary needs no serial library.
package serialtty
