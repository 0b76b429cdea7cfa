// Package health runs the checks that decide whether a freshly booted slot
// is kept: by default the broker is reachable and a TUF refresh succeeds,
// plus any commands the device's config adds. All checks share one
// deadline; the first failure names the check.
//
// Checks only observe. They never touch the bootloader or the journal.
package health
