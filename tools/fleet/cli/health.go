package cli

import (
	"fmt"
	"strings"

	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// healthHeader and healthColumns are the latest telemetry's columns in
// `status` and `devices`.
const healthHeader = "UPTIME\tTEMP\tLOAD\tMEM FREE\tDISK FREE\tHEALTH"

func healthColumns(t *transport.Telemetry) string {
	if t == nil {
		return "-\t-\t-\t-\t-\t-"
	}
	f := store.Figures(*t)
	col := func(v *float64, format func(float64) string) string {
		if v == nil {
			return "-"
		}
		return format(*v)
	}
	uptime := "-"
	if t.Uptime > 0 {
		uptime = fmt.Sprintf("%dh%02dm", t.Uptime/3600, t.Uptime%3600/60)
	}
	health := "-"
	if h := t.Health; h != nil {
		health = "ok"
		if !h.OK {
			health = "failed"
		}
	}
	return strings.Join([]string{
		uptime,
		col(f.TempC, func(c float64) string { return fmt.Sprintf("%.1fC", c) }),
		col(f.Load1, func(l float64) string { return fmt.Sprintf("%.2f", l) }),
		col(f.MemAvail, bytesText),
		col(f.DiskFree, bytesText),
		health,
	}, "\t")
}

func bytesText(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1fG", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0fM", b/(1<<20))
	}
	return fmt.Sprintf("%.0fK", b/(1<<10))
}
