package daemon_test

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/tuf/repo"
)

// stormSize notices arrive in one burst.
const stormSize = 1000

// A burst of 1,000 notices used to cost the TUF repository a refresh per
// notice the agent picked up. Notices coalesce (only the newest waits) and
// refreshes are paced: the burst costs a bounded few, and the newest
// notice is still acted on.
func TestNoticeStormIsCoalescedAndPaced(t *testing.T) {
	b := mqtttest.StartMosquitto(t)
	r := agenttest.NewRepo(t, repo.Options{})
	f := agenttest.Watch(t, b.URL())
	const id = "storm-1"
	dev := agenttest.NewDevice(t, r, id, agenttest.DeviceOptions{Broker: b.URL()})
	boot(t, dev)
	done, _ := runAgent(t, dev)
	waitState(t, f, id, done, transport.StateIdle)
	base := r.Refreshes.Load()

	pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("storm-fleet"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(0)
	start := time.Now()
	var last paho.Token
	for i := range stormSize {
		name := fmt.Sprintf("storm-%d", i)
		payload, err := transport.EncodeNotice(transport.Notice{Release: name, Manifest: agenttest.ManifestTarget(name), Time: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		last = pub.Publish(transport.NotifyTopic(id), 1, false, payload)
	}
	if !last.WaitTimeout(30*time.Second) || last.Error() != nil {
		t.Fatalf("publish: %v", last.Error())
	}
	// The newest notice is acted on: the agent reports on it (it is not
	// published, so it fails for now and is retried later).
	newest := fmt.Sprintf("storm-%d", stormSize-1)
	waitFor(t, f, id, done, func(s transport.Status) bool { return s.Release == newest })
	time.Sleep(time.Second) // what the burst still sets off
	n := r.Refreshes.Load() - base
	elapsed := time.Since(start)
	t.Logf("%d notices in a burst: %d TUF refreshes in %v", stormSize, n, elapsed.Round(time.Millisecond))
	// One refresh per pacing interval (10 s), plus the first.
	if limit := int64(elapsed/(10*time.Second)) + 2; n > limit {
		t.Fatalf("%d refreshes for a burst of %d notices in %v, want at most %d", n, stormSize, elapsed, limit)
	}
}
