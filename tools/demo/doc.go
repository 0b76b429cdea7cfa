// Package demo is `make demo`: one device on the simulated board, a fleet
// server, and two releases. v2 goes to the inactive slot over MQTT and
// TUF, is tried once, passes its health checks and is kept; v3 fails its
// health check and the device falls back to v2 and reports why.
//
// It drives the real binaries (graft-fleet, graft-agent) as a user would,
// and plays the board's bootloader and power supply with package simboard.
// The same Run is the end-to-end test.
package demo
