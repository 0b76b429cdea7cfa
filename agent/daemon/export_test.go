package daemon

import "time"

// SetFaultRecheck shortens how often a faulty data directory is tried
// again; it returns the function that restores it.
func SetFaultRecheck(d time.Duration) func() {
	old := faultRecheck
	faultRecheck = d
	return func() { faultRecheck = old }
}
