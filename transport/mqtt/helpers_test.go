package mqtt_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
)

// waitLimit bounds every wait for something that must happen; reaching it
// fails the test (it is a hang guard, not a timing assertion).
const waitLimit = 15 * time.Second

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// logBuffer collects a component's logs and prints them if the test fails.
func testLogger(t *testing.T) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("session log:\n%s", buf.String())
			mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// fleet is the fleet side of the wire in tests: a plain paho client that
// reconnects by itself and subscribes on each connect.
type fleet struct {
	t    *testing.T
	c    paho.Client
	msgs chan message
	seen map[string]int // status EventIDs received, for de-duplication
}

type message struct {
	topic   string
	payload []byte
}

// newFleet connects a fleet peer to url. persistent peers (CleanSession
// false) get the messages published while they were away.
func newFleet(t *testing.T, url, id string, persistent bool, filters ...string) *fleet {
	t.Helper()
	return newFleetWith(t, url, id, persistent, nil, filters...)
}

// newFleetTLS connects a non-persistent fleet peer over TLS.
func newFleetTLS(t *testing.T, url, id string, cfg *tls.Config, filters ...string) *fleet {
	t.Helper()
	return newFleetWith(t, url, id, false, cfg, filters...)
}

func newFleetWith(t *testing.T, url, id string, persistent bool, tlsCfg *tls.Config, filters ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, msgs: make(chan message, 1000), seen: map[string]int{}}
	subscribed := make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetCleanSession(!persistent).
		SetAutoReconnect(true).SetMaxReconnectInterval(100 * time.Millisecond).
		SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			f.msgs <- message{m.Topic(), bytes.Clone(m.Payload())}
		}).
		SetOnConnectHandler(func(c paho.Client) {
			var err error
			if len(filters) > 0 {
				subs := map[string]byte{}
				for _, s := range filters {
					subs[s] = 1
				}
				tok := c.SubscribeMultiple(subs, nil)
				tok.Wait()
				err = tok.Error()
			}
			select {
			case subscribed <- err:
			default:
			}
		})
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	f.c = paho.NewClient(opts)
	if tok := f.c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("fleet connect: %v", tok.Error())
	}
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("fleet subscribe: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("fleet did not subscribe")
	}
	t.Cleanup(func() { f.c.Disconnect(0) })
	return f
}

func (f *fleet) publish(topic string, payload []byte, retained bool) {
	f.t.Helper()
	tok := f.c.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		f.t.Fatalf("fleet publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message on topic, skipping others.
func (f *fleet) next(topic string) []byte {
	f.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case m := <-f.msgs:
			if m.topic == topic {
				return m.payload
			}
		case <-deadline:
			f.t.Fatalf("no message on %s", topic)
		}
	}
}

// waitOnline reads the online topic until it carries want.
func (f *fleet) waitOnline(device string, want bool) {
	f.t.Helper()
	for {
		v, err := transport.DecodeOnline(f.next(transport.OnlineTopic(device)))
		if err != nil {
			f.t.Fatalf("online payload: %v", err)
		}
		if v == want {
			return
		}
	}
}

// events reads status messages of device until every ID in want was seen,
// de-duplicating on EventID as the fleet does (a retained status comes
// again on each subscribe; a redelivered event comes twice). It returns the
// IDs new to this fleet peer in order of first arrival, and how often each
// arrived during this call.
func (f *fleet) events(device string, want ...string) (order []string, count map[string]int) {
	f.t.Helper()
	count = map[string]int{}
	missing := map[string]bool{}
	for _, id := range want {
		missing[id] = true
	}
	for len(missing) > 0 {
		st, err := transport.DecodeStatus(f.next(transport.StatusTopic(device)))
		if err != nil {
			f.t.Fatalf("status payload: %v", err)
		}
		if st.Device != device {
			f.t.Fatalf("status of %q on %q's topic", st.Device, device)
		}
		if f.seen[st.EventID] == 0 {
			order = append(order, st.EventID)
		}
		f.seen[st.EventID]++
		count[st.EventID]++
		delete(missing, st.EventID)
	}
	return order, count
}

// notices collects what a session hands to OnNotice.
type notices chan transport.Notice

func (n notices) next(t *testing.T) transport.Notice {
	t.Helper()
	select {
	case v := <-n:
		return v
	case <-time.After(waitLimit):
		t.Fatal("no notice delivered")
		return transport.Notice{}
	}
}

func startSession(t *testing.T, cfg mqtt.Config) (*mqtt.Session, notices) {
	t.Helper()
	got := make(notices, 100)
	cfg.OnNotice = func(n transport.Notice) { got <- n }
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = 20 * time.Millisecond
		cfg.ReconnectMax = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s, err := mqtt.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, got
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	var b []byte
	var err error
	switch v := v.(type) {
	case transport.Notice:
		b, err = transport.EncodeNotice(v)
	case transport.Status:
		b, err = transport.EncodeStatus(v)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}
