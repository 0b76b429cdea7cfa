package cross

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
)

// Budget for graft-agent's package initialisation, recorded when the
// sigstore chain and the counted regexps left (77 KiB, 371 allocations
// measured; before: 622 KiB and 6,246). Heap bytes and allocation counts
// are deterministic for a given build, unlike time, so they can fail a test.
const (
	initBudgetBytes  = 100 << 10
	initBudgetAllocs = 600
)

// TestAgentInitBudget fails when graft-agent's package init allocates
// more than its budget: a new package-level regexp, table or protobuf
// registry would show here first.
func TestAgentInitBudget(t *testing.T) {
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "graft-agent")
	if err := Build(ctx, Target{Name: "host", GOARCH: runtime.GOARCH}, "github.com/graft-dev/graft/agent/cmd/graft-agent", bin, "", false); err != nil {
		t.Fatal(err)
	}
	c, err := MeasureInit(ctx, bin, "--help")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("graft-agent init: %d packages, %d bytes, %d allocs, %.2f ms", c.Packages, c.Bytes, c.Allocs, c.Clock)
	if c.Bytes > initBudgetBytes || c.Allocs > initBudgetAllocs {
		t.Errorf("graft-agent package init allocates %d bytes in %d allocations; budget %d bytes, %d allocations", c.Bytes, c.Allocs, initBudgetBytes, initBudgetAllocs)
	}
}

func TestParseInitTrace(t *testing.T) {
	c, err := ParseInitTrace([]byte("init net/http @4.6 ms, 0.070 ms clock, 4712 bytes, 49 allocs\nnoise\ninit unicode @0.8 ms, 0.030 ms clock, 11400 bytes, 16 allocs\n"))
	if err != nil || c.Packages != 2 || c.Bytes != 16112 || c.Allocs != 65 {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := ParseInitTrace([]byte("nothing")); err == nil {
		t.Fatal("no lines accepted")
	}
}
