package cross

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// previousAgentBytes are graft-agent's stripped sizes as landed before the
// footprint work (main at c39b316, sigstore's chain linked), so make bench
// prints each figure next to the one it replaces.
var previousAgentBytes = map[string]int64{
	"arm64": 12058786,
	"armv7": 12386466,
	"amd64": 12972194,
}

// Targets of the footprint issue, printed beside the figures.
const (
	targetARM64Bytes = 9 << 20
	targetInitBytes  = 100 << 10
	targetInitMs     = 1.5
)

// TestFootprintBench prints graft-agent's stripped size per architecture
// against the previous release's, and its package-init cost
// (GODEBUG=inittrace=1, summed over packages; the median of 5 runs for
// time). Figures only: nothing is asserted but that they were measured.
func TestFootprintBench(t *testing.T) {
	if os.Getenv("GRAFT_BENCH") == "" {
		t.Skip("set GRAFT_BENCH=1 (make bench)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	for _, tgt := range Targets {
		out := filepath.Join(dir, tgt.Name)
		if err := Build(ctx, tgt, "github.com/graft-dev/graft/agent/cmd/graft-agent", out, "", false); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		prev := previousAgentBytes[tgt.Name]
		line := fmt.Sprintf("footprint: graft-agent %-5s %6.2f MiB stripped, was %6.2f MiB (%.2fx)", tgt.Name, mib(fi.Size()), mib(prev), float64(fi.Size())/float64(prev))
		if tgt.Name == "arm64" {
			line += fmt.Sprintf("; target <= 9 MiB: %.2f of it", float64(fi.Size())/targetARM64Bytes)
		}
		fmt.Println(line)
	}
	host := filepath.Join(dir, "host")
	if err := Build(ctx, Target{Name: "host", GOARCH: runtime.GOARCH}, "github.com/graft-dev/graft/agent/cmd/graft-agent", host, "", false); err != nil {
		t.Fatal(err)
	}
	var runs []InitCost
	for range 5 {
		c, err := MeasureInit(ctx, host, "--help")
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, c)
	}
	ms := make([]float64, len(runs))
	for i, r := range runs {
		ms[i] = r.Clock
	}
	med := median(ms)
	c := runs[0]
	fmt.Printf("footprint: package init (%s, %d packages): %.2f ms median of 5 (target 1.5 ms: %.2f of it), %.1f KiB (target 100 KiB: %.2f), %d allocations; was 3.5 ms, 622 KiB, 6,246 allocations\n",
		runtime.GOARCH, c.Packages, med, med/targetInitMs, float64(c.Bytes)/1024, float64(c.Bytes)/targetInitBytes, c.Allocs)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
