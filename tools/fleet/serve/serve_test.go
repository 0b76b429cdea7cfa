package serve_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/serve"
)

// start runs a server on free loopback ports over fresh directories.
func start(t *testing.T) (*serve.Server, string, string) {
	t.Helper()
	meta, targets := t.TempDir(), t.TempDir()
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: meta, TargetsDir: targets,
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, meta, targets
}

func connect(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func TestBrokerRetainsAndDelivers(t *testing.T) {
	s, _, _ := start(t)

	pub := connect(t, s.MQTTURL(), "pub")
	tok := pub.Publish("graft/v1/dev/d1/status", 1, true, []byte("hello"))
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	// A client that subscribes later still gets the retained message.
	got := make(chan paho.Message, 1)
	sub := connect(t, "tcp://"+s.MQTTAddr(), "sub")
	tok = sub.Subscribe("graft/v1/dev/+/status", 1, func(_ paho.Client, m paho.Message) { got <- m })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case m := <-got:
		if m.Topic() != "graft/v1/dev/d1/status" || string(m.Payload()) != "hello" || !m.Retained() {
			t.Fatalf("got topic %q payload %q retained %v", m.Topic(), m.Payload(), m.Retained())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("retained message never arrived")
	}
}

func TestHTTPServesRepository(t *testing.T) {
	s, meta, targets := start(t)
	root := []byte(`{"signed":{"_type":"root"}}`)
	if err := os.WriteFile(filepath.Join(meta, "1.root.json"), root, 0o644); err != nil {
		t.Fatal(err)
	}
	image := bytes.Repeat([]byte("0123456789"), 1000)
	if err := os.MkdirAll(filepath.Join(targets, "releases", "v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(targets, "releases", "v2", "rootfs.img"), image, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		path      string
		rangeHdr  string
		wantCode  int
		wantBody  []byte
		wantRange string
	}{
		{name: "metadata", path: "/metadata/1.root.json", wantCode: 200, wantBody: root},
		{name: "whole target", path: "/targets/releases/v2/rootfs.img", wantCode: 200, wantBody: image},
		{name: "range", path: "/targets/releases/v2/rootfs.img", rangeHdr: "bytes=9995-",
			wantCode: 206, wantBody: image[9995:], wantRange: "bytes 9995-9999/10000"},
		{name: "missing", path: "/targets/releases/v3/rootfs.img", wantCode: 404},
		{name: "no listing", path: "/targets/releases/", wantCode: 404},
		{name: "no traversal", path: "/targets/../../serve_test.go", wantCode: 404},
		{name: "outside prefixes", path: "/etc/passwd", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.HTTPURL()+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.rangeHdr != "" {
				req.Header.Set("Range", tt.rangeHdr)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if tt.wantBody != nil && !bytes.Equal(body, tt.wantBody) {
				t.Fatalf("body %d bytes, want %d bytes", len(body), len(tt.wantBody))
			}
			if got := resp.Header.Get("Content-Range"); got != tt.wantRange {
				t.Fatalf("Content-Range %q, want %q", got, tt.wantRange)
			}
		})
	}
}

func TestStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s, err := serve.Start(ctx, serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(),
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	// Close after the context's own stop returns the same (nil) result
	// and leaves both ports closed.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := http.Get(s.HTTPURL() + "/metadata/x"); err == nil {
		t.Fatal("http still answering after stop")
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(s.MQTTURL()).SetConnectRetry(false).SetConnectTimeout(2 * time.Second))
	if tok := c.Connect(); tok.Wait() && tok.Error() == nil {
		c.Disconnect(0)
		t.Fatal("broker still accepting after stop")
	}
}

func TestStartRefusesMissingDirs(t *testing.T) {
	_, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: filepath.Join(t.TempDir(), "nope"), TargetsDir: t.TempDir(),
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
	})
	if !errors.Is(err, serve.ErrNoDir) {
		t.Fatalf("err %v, want ErrNoDir", err)
	}
}
