// Package provision is graft-agent's provisioning mode: the device side of
// factory provisioning over the serial console (docs/flash.md). Booted
// from the provisioning initramfs, the agent answers a station's requests,
// framed by transport/serialframe:
//
//	hello     board, device-tree compatible, SoC serial, MACs, storage, state
//	identity  generate the device key (it never leaves the device) and a CSR
//	install   certificate, agent config, broker CA, TUF root
//	image     fetch the release through TUF from the station's repository
//	          server (the network carries the image; serial only control),
//	          write slot A (and B), read back and hash
//	finish    bootloader environment (both copies where the board has two),
//	          read back; mark the device provisioned
//	reboot    boot the new system
//
// Every step is idempotent and resumable: its progress is kept in the data
// directory (provision.json, the TUF staging file), so a station that lost
// the line, or a device that lost power, runs the same request again and
// the step picks up where it stood. A device is reported provisioned only
// after everything was written and read back.
//
// It never sends a private key, never writes a slot with bytes TUF did not
// verify, and never provisions an already provisioned device again unless
// the station forces it.
package provision
