package serve_test

import (
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/serve"
)

// TestPlainListenerLoopbackOnly: the plain listener, which lets every
// client in, cannot be put on another address, and there is none by
// default once a CA is given.
func TestPlainListenerLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		s, err := serve.Start(t.Context(), serve.Options{
			MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), MQTTAddr: addr, HTTPAddr: "127.0.0.1:0",
		})
		if !errors.Is(err, serve.ErrPlainNotLoopback) {
			if s != nil {
				s.Close()
			}
			t.Errorf("plain listener on %s: %v, want ErrPlainNotLoopback", addr, err)
		}
	}
}

// TestRetainedQuota: a client that would hold more retained topics than
// its quota is disconnected, and the extra message is not retained.
func TestRetainedQuota(t *testing.T) {
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		RetainedPerClient: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	lost := make(chan struct{})
	c := paho.NewClient(paho.NewClientOptions().AddBroker(s.MQTTURL()).SetClientID("op").SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	for _, topic := range []string{"graft/v1/dev/a/notify", "graft/v1/dev/b/notify", "graft/v1/dev/a/notify"} {
		if tok := c.Publish(topic, 1, true, []byte("n")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s within the quota: %v", topic, tok.Error())
		}
	}
	c.Publish("graft/v1/dev/c/notify", 1, true, []byte("n"))
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a client over its retained quota stayed connected")
	}
	got := map[string]bool{}
	r := connect(t, s.MQTTURL(), "reader")
	done := make(chan struct{}, 8)
	r.Subscribe("graft/v1/dev/+/notify", 1, func(_ paho.Client, m paho.Message) { got[m.Topic()] = true; done <- struct{}{} })
	<-done
	<-done
	// The control after the retained ones: a live message.
	connect(t, s.MQTTURL(), "w").Publish("graft/v1/dev/z/notify", 1, false, []byte("n")).WaitTimeout(10 * time.Second)
	<-done
	if got["graft/v1/dev/c/notify"] || !got["graft/v1/dev/a/notify"] || !got["graft/v1/dev/b/notify"] {
		t.Fatalf("retained after the quota: %v", got)
	}
	// Clearing one makes room again.
	c2 := connect(t, s.MQTTURL(), "op")
	if tok := c2.Publish("graft/v1/dev/a/notify", 1, true, []byte{}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := c2.Publish("graft/v1/dev/c/notify", 1, true, []byte("n")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil || !c2.IsConnectionOpen() {
		t.Fatalf("publish after clearing: %v", tok.Error())
	}
}
