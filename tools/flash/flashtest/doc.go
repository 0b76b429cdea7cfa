// Package flashtest holds the provisioning tests' fixtures: pty pairs
// (the station opens the slave with go.bug.st/serial, like a USB-serial
// adapter; the device speaks on the master, like its UART), blank devices
// on the simulated board running graft-agent's provisioning mode in
// process, and a line that injects console noise.
package flashtest
