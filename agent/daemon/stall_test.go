package daemon_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/transport"
)

// The repository's server stalls mid-image twice (headers and 64 KiB
// sent, then silence with the connection open). The agent used to wait
// for it forever; now it cuts the stalled transfer after the stall
// timeout, resumes from the offset reached, and the update completes.
func TestStalledRepositoryDownloadResumesAndCompletes(t *testing.T) {
	w := newWorld(t)
	const id = "stall-1"
	dev := agenttest.NewDevice(t, w.repo, id, agenttest.DeviceOptions{Broker: w.broker.URL()})
	cfg, err := config.Load(dev.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.StallTimeout = time.Second
	b, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dev.Config, b, 0o644); err != nil {
		t.Fatal(err)
	}
	w.repo.Stalls.Store(2)
	w.fleet.Notify(t, id, "v2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var logs bytes.Buffer
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- power(runCtx, t, dev, "", &logs) }()
	final, err := w.fleet.WaitFinal(ctx, id, "v2")
	stop()
	<-ran
	if err != nil {
		t.Fatalf("%v\nagent log (end):\n%s", err, tail(logs.String(), 40))
	}
	if final.State != transport.StateCommitted {
		t.Fatalf("final %+v, want committed", final)
	}
	if n := w.repo.Stalls.Load(); n > 0 {
		t.Fatalf("%d stalls left unused: the server never stalled the agent", n)
	}
	if !bytes.Equal(dev.Slot("B")[:len(w.image)], w.image) {
		t.Fatal("slot B does not hold v2")
	}
}
