package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
)

// brokers runs f against a real mosquitto and against serve's embedded
// broker.
func brokers(t *testing.T, f func(t *testing.T, url string)) {
	t.Run("mosquitto", func(t *testing.T) {
		f(t, mqtttest.StartMosquitto(t).URL())
	})
	t.Run("embedded", func(t *testing.T) {
		s, err := serve.Start(t.Context(), serve.Options{
			MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s.MQTTURL())
	})
}

func client(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t *testing.T, c paho.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func publishStatus(t *testing.T, c paho.Client, s transport.Status) {
	t.Helper()
	b, err := transport.EncodeStatus(s)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, transport.StatusTopic(s.Device), b)
}

// retained waits for the retained message on topic.
func retained(t *testing.T, url, topic string) []byte {
	t.Helper()
	got := make(chan []byte, 1)
	c := client(t, url, "reader")
	if tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatalf("no retained message on %s", topic)
		return nil
	}
}

func TestNotify(t *testing.T) {
	t.Parallel()
	repoDir := newRepo(t)
	addRelease(t, repoDir, "v2", "2")
	addRelease(t, repoDir, "v3", "3")
	brokers(t, func(t *testing.T, url string) {
		tests := []struct {
			name  string
			args  []string
			topic string
			want  transport.Notice
		}{
			{name: "device, default manifest", args: []string{"--device", "d1", "v2"}, topic: transport.NotifyTopic("d1"),
				want: transport.Notice{Release: "v2", Manifest: "releases/v2/manifest.cbor", Sequence: 2}},
			{name: "group, flags after the release", args: []string{"v3", "--group", "canary", "--manifest", "releases/v3/manifest.cbor", "--sequence", "7"},
				topic: transport.GroupNotifyTopic("canary"), want: transport.Notice{Release: "v3", Manifest: "releases/v3/manifest.cbor", Sequence: 7}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, stdout, stderr := run(t.Context(), append([]string{"notify", "--broker", url, "--repo", repoDir, "--json"}, tt.args...)...)
				if code != cli.ExitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				var out struct{ Topic string }
				if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.Topic != tt.topic {
					t.Fatalf("--json output %q: %v", stdout, err)
				}
				n, err := transport.DecodeNotice(retained(t, url, tt.topic))
				if err != nil {
					t.Fatalf("DecodeNotice: %v", err)
				}
				if n.Release != tt.want.Release || n.Manifest != tt.want.Manifest || n.Sequence != tt.want.Sequence || n.Time <= 0 {
					t.Fatalf("notice %+v, want %+v", n, tt.want)
				}
			})
		}
	})
}

func TestNotifyBrokerDown(t *testing.T) {
	repoDir := newRepo(t)
	addRelease(t, repoDir, "v2", "2")
	b := mqtttest.StartMosquitto(t)
	url := b.URL()
	b.Stop()
	code, _, stderr := run(t.Context(), "notify", "--broker", url, "--repo", repoDir, "--device", "d1", "v2")
	if code != cli.ExitFailure || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	brokers(t, func(t *testing.T, url string) {
		dev := client(t, url, "fake-device")
		publishStatus(t, dev, transport.Status{EventID: "e1", Device: "d1", Time: time.Now().UnixMilli(),
			State: transport.StateCommitted, Release: "v2", Sequence: 2, Path: transport.PathAB, Slot: "B", Installed: "v2"})
		publish(t, dev, transport.OnlineTopic("d1"), transport.EncodeOnline(true))
		publishStatus(t, dev, transport.Status{EventID: "e9", Device: "d2", State: transport.StateRolledBack,
			Release: "v2", Reason: "health check failed", Slot: "A", Installed: "v1"})
		publish(t, dev, transport.OnlineTopic("d2"), transport.EncodeOnline(false))
		// Garbage from a misbehaving client is skipped, not fatal.
		publish(t, dev, transport.StatusTopic("d3"), []byte("not cbor"))

		tests := []struct {
			name string
			args []string
			want map[string]string // device → state,online,installed,slot,reason
		}{
			{name: "all", args: nil, want: map[string]string{
				"d1": "committed,true,v2,B,", "d2": "rolled-back,false,v1,A,health check failed"}},
			{name: "one device", args: []string{"--device", "d2"}, want: map[string]string{
				"d2": "rolled-back,false,v1,A,health check failed"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, stdout, stderr := run(t.Context(), append([]string{"status", "--broker", url, "--json", "--wait", "1s"}, tt.args...)...)
				if code != cli.ExitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				var devs []struct {
					Device, State, Installed, Slot, Reason string
					Online                                 *bool
				}
				if err := json.Unmarshal([]byte(stdout), &devs); err != nil {
					t.Fatalf("%v: %q", err, stdout)
				}
				got := map[string]string{}
				for _, d := range devs {
					on := "nil"
					if d.Online != nil {
						on = map[bool]string{true: "true", false: "false"}[*d.Online]
					}
					got[d.Device] = strings.Join([]string{d.State, on, d.Installed, d.Slot, d.Reason}, ",")
				}
				if len(got) != len(tt.want) {
					t.Fatalf("devices %v, want %v", got, tt.want)
				}
				for id, w := range tt.want {
					if got[id] != w {
						t.Fatalf("%s: %q, want %q", id, got[id], w)
					}
				}
			})
		}
	})
}

func TestStatusFollow(t *testing.T) {
	t.Parallel()
	brokers(t, func(t *testing.T, url string) {
		dev := client(t, url, "fake-device")
		st := func(id string, state transport.State) transport.Status {
			return transport.Status{EventID: id, Device: "d1", State: state, Release: "v2"}
		}
		publishStatus(t, dev, st("e1", transport.StateDownloading))

		ctx, cancel := context.WithCancel(t.Context())
		var out, errb syncBuffer
		done := make(chan int, 1)
		go func() { done <- cli.Run(ctx, []string{"status", "--broker", url, "--follow"}, &out, &errb) }()
		waitFor(t, &out, "e1-seen", func(s string) bool { return strings.Contains(s, "status downloading") })

		// A redelivery of e1 is not printed again; e2 and e3 are.
		publishStatus(t, dev, st("e1", transport.StateDownloading))
		publishStatus(t, dev, st("e2", transport.StateInstalling))
		publishStatus(t, dev, st("e3", transport.StateCommitted))
		waitFor(t, &out, "e3-seen", func(s string) bool { return strings.Contains(s, "status committed") })
		cancel()
		if code := <-done; code != cli.ExitOK {
			t.Fatalf("follow exit %d: %s", code, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var states []string
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) < 4 || f[1] != "d1" || f[2] != "status" {
				t.Fatalf("unexpected line %q", l)
			}
			states = append(states, f[3])
		}
		if strings.Join(states, " ") != "downloading installing committed" {
			t.Fatalf("events printed: %v\n%s", states, out.String())
		}
	})
}

// waitFor polls the command's output until cond holds. The bound only
// turns a hang into a failure; no outcome depends on timing.
func waitFor(t *testing.T, out *syncBuffer, what string, cond func(string) bool) {
	t.Helper()
	giveUp := time.After(30 * time.Second)
	for !cond(out.String()) {
		select {
		case <-giveUp:
			t.Fatalf("%s: never happened; output %q", what, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
