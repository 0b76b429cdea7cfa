// Package cli is the graft-agent command line: the daemon (`run`) and the
// commands beside it for the operator and the bench (status, install from a
// directory, mark-good, slots, bootenv, the TUF client on its own).
//
// Each command parses its flags and calls into the agent's packages; no
// update logic lives here.
package cli
