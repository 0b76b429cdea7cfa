package mqtt_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
)

// hugeNotice is the size of the retained notice the attacker leaves: as
// big as a default mosquitto takes without complaint.
const hugeNotice = 100 << 20

// allocLimit bounds what the session may allocate while it reads past the
// huge notice and handles a valid one: paho alone used to allocate the
// whole packet (and the agent about 185 MB in all).
const allocLimit = 16 << 20

// A 100 MB retained notice on the device's topic: dropped from its fixed
// header on every connect, without reading it into memory and without
// dropping the connection; a later valid notice is handed on.
func TestOversizedRetainedNoticeIsDroppedUnread(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub not installed (apt-get install mosquitto-clients)")
	}
	b := mqtttest.StartMosquitto(t)
	const dev = "dev-huge"
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte{0xa2}, hugeNotice), 0o600); err != nil {
		t.Fatal(err)
	}
	// Published from another process, so that only the agent's side of
	// the transfer counts in this process's allocations.
	pub := exec.CommandContext(waitCtx(t), "mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(port(b)),
		"-t", transport.NotifyTopic(dev), "-q", "1", "-r", "-f", big)
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	f := newFleet(t, b.URL(), "fleet", false, transport.OnlineTopic(dev))
	t.Cleanup(func() { f.publish(transport.NotifyTopic(dev), nil, true) }) // clear it

	for round := 1; round <= 2; round++ { // the second connect gets the retained notice again
		t.Run(fmt.Sprint("connect ", round), func(t *testing.T) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)

			ctx, cancel := context.WithCancel(t.Context())
			got := make(chan transport.Notice, 10)
			drops := &countingHandler{Handler: testLogger(t).Handler(), msg: "mqtt: dropped an oversized message before reading it", n: new(atomic.Int32)}
			s, err := mqtt.Start(ctx, mqtt.Config{Broker: b.URL(), DeviceID: dev, Logger: slog.New(drops),
				ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
				OnNotice: func(n transport.Notice) { got <- n }})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				cancel()
				cctx, ccancel := context.WithTimeout(context.Background(), waitLimit)
				defer ccancel()
				s.Close(cctx)
			}()
			if err := s.WaitConnected(waitCtx(t)); err != nil {
				t.Fatal(err)
			}
			// The broker sends the retained notice right after SUBACK; a
			// valid notice published now comes after it on the connection.
			valid := transport.Notice{Release: fmt.Sprint("v", round), Manifest: "releases/v/manifest.cbor", Sequence: 2}
			f.publish(transport.NotifyTopic(dev)+"", mustEncode(t, valid), false)
			select {
			case n := <-got:
				if n != valid {
					t.Fatalf("notice %+v, want %+v", n, valid)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the valid notice after the huge one never came")
			}
			if !s.Connected() {
				t.Fatal("session dropped its connection over the huge notice")
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %.1f MiB while a %d MiB retained notice went by (heap in use %.1f MiB)",
				float64(alloc)/(1<<20), hugeNotice>>20, float64(after.HeapInuse)/(1<<20))
			if alloc > allocLimit {
				t.Fatalf("allocated %d bytes for a %d-byte notice, limit %d", alloc, hugeNotice, allocLimit)
			}
			if n := drops.n.Load(); n != 1 {
				t.Fatalf("%d oversized messages dropped, want the retained one", n)
			}
		})
	}
}

// countingHandler counts the log records with one message.
type countingHandler struct {
	slog.Handler
	msg string
	n   *atomic.Int32
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(as), msg: h.msg, n: h.n}
}

func port(b *mqtttest.Broker) int {
	_, p, _ := net.SplitHostPort(b.Addr())
	n, _ := strconv.Atoi(p)
	return n
}
