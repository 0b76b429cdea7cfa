// Package simboard is the simulated board's firmware and power supply: it
// lays out the board's slot files and U-Boot environment, and at every
// "boot" runs the bootloader step of RAUC's U-Boot script (package slot's
// Select) on the very environment the agent writes, then writes the kernel
// command line the agent reads its booted slot from.
//
// The demo and the end-to-end tests use it. It is never linked into
// graft-agent.
package simboard
