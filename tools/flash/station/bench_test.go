package station_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/tools/flash/flashtest"
)

// TestProvisionBench prints provisioning times (make bench): one device,
// then a station of 4 in parallel, each split into serial control time
// (every step but the image) and image time (TUF fetch over loopback
// HTTP, slot write, read back). Figures only; nothing is asserted on
// time.
func TestProvisionBench(t *testing.T) {
	if os.Getenv("GRAFT_BENCH") == "" {
		t.Skip("GRAFT_BENCH=1 runs the provisioning benchmark")
	}
	f := newFixture(t)
	const size = 6 << 20
	f.image = agenttest.Image("bench-1", true, size)
	f.release = "bench-1"
	f.repo.Publish(t, agenttest.Release{Name: f.release, Sequence: 5, Boards: []string{flashtest.BoardName}, Image: f.image})
	s := f.station(t, nil)
	for _, n := range []int{1, 4} {
		var ports []string
		for i := range n {
			d := flashtest.NewDevice(t, fmt.Sprintf("bench%d-%d", n, i))
			d.Start()
			ports = append(ports, d.Port)
		}
		start := time.Now()
		res := s.Run(context.Background(), ports, nil)
		wall := time.Since(start)
		var ctl, img int64
		for _, r := range res {
			if !r.Good() {
				t.Fatalf("%+v", r)
			}
			ctl += r.ControlMillis
			img += r.ImageMillis
		}
		fmt.Printf("flash-bench: %d device(s), %d MiB image: wall %v; per device: serial control %d ms, image %d ms (fetch+write+read back, %.1f MiB/s)\n",
			n, size>>20, wall.Round(time.Millisecond), ctl/int64(n), img/int64(n), float64(size)/(1<<20)/(float64(img)/float64(n)/1000))
	}
}
