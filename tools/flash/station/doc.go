// Package station is graft-flash's provisioning station: it serves the
// release's TUF repository to the factory network, and drives each device
// on a serial port through the provisioning protocol (agent/provision over
// transport/serialframe) in parallel — hello, ID from a template, CSR
// signed by the fleet CA, certificate/config/broker CA/TUF root, image
// fetched by the device through TUF, boot state, reboot — recording every
// attempt in the ledger.
//
// Each device ends in one Result: provisioned, failed (with the step and
// the device's reason; a rerun resumes) or refused. A device is recorded
// provisioned only after it said every step was written and read back.
package station
