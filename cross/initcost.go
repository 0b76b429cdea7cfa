package cross

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// InitCost is what a binary's package initialisation costs, summed over
// the lines GODEBUG=inittrace=1 prints.
type InitCost struct {
	Packages int
	Clock    float64 // milliseconds (noisy; for make bench only)
	Bytes    int64   // heap bytes allocated
	Allocs   int64   // heap allocations
}

// MeasureInit runs binary args... with GODEBUG=inittrace=1 and sums the
// init lines (the exit status is ignored: only init matters).
func MeasureInit(ctx context.Context, binary string, args ...string) (InitCost, error) {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	return ParseInitTrace(stderr.Bytes())
}

// ParseInitTrace sums lines like
// "init net/http @4.6 ms, 0.070 ms clock, 4712 bytes, 49 allocs".
func ParseInitTrace(b []byte) (InitCost, error) {
	var c InitCost
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 11 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		ms, err1 := strconv.ParseFloat(f[4], 64)
		by, err2 := strconv.ParseInt(f[7], 10, 64)
		al, err3 := strconv.ParseInt(f[9], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return c, fmt.Errorf("cross: inittrace line %q", sc.Text())
		}
		c.Packages++
		c.Clock += ms
		c.Bytes += by
		c.Allocs += al
	}
	if c.Packages == 0 {
		return c, fmt.Errorf("cross: no inittrace lines")
	}
	return c, nil
}
