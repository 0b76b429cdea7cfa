// Package cli is the graft-flash command line: ports, initramfs,
// provision and ledger. tools/flash/cmd/graft-flash is a thin main.
package cli
