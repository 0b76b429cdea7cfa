package cli_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
)

// fleetPKI is a fleet CA made with graft-fleet ca, and the certificates
// it issued: devices d1, d2, d3, operators alice (admin) and vic (viewer).
type fleetPKI struct {
	caDir, out string
}

func newFleetPKI(t *testing.T) *fleetPKI {
	t.Helper()
	p := &fleetPKI{caDir: filepath.Join(t.TempDir(), "ca"), out: filepath.Join(t.TempDir(), "certs")}
	mustRun(t, "ca", "init", "--dir", p.caDir)
	for _, d := range []string{"d1", "d2", "d3"} {
		mustRun(t, "ca", "issue", "--dir", p.caDir, "--device", d, "--out", p.out)
	}
	mustRun(t, "ca", "issue", "--dir", p.caDir, "--operator", "alice", "--out", p.out)
	mustRun(t, "ca", "issue", "--dir", p.caDir, "--operator", "vic", "--role", "viewer", "--out", p.out)
	return p
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := run(t.Context(), args...)
	if code != cli.ExitOK {
		t.Fatalf("%s: exit %d: %s", strings.Join(args[:2], " "), code, stderr)
	}
	return stdout
}

func (p *fleetPKI) caFile() string { return filepath.Join(p.caDir, "ca.crt") }

// tlsFor is the TLS configuration of the holder of name's certificate;
// name "" presents no certificate.
func (p *fleetPKI) tlsFor(t *testing.T, name string) *tls.Config {
	t.Helper()
	cert, key := "", ""
	if name != "" {
		cert, key = filepath.Join(p.out, name+".crt"), filepath.Join(p.out, name+".key")
	}
	cfg, err := mqtt.TLSConfig(p.caFile(), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// flags are the MQTT flags of a graft-fleet command run as name.
func (p *fleetPKI) flags(cmd string, b secureBroker, name string) []string {
	return []string{cmd, "--broker", b.url, "--ca", p.caFile(), "--cert", filepath.Join(p.out, name+".crt"), "--key", filepath.Join(p.out, name+".key")}
}

// secureBroker is a broker enforcing the fleet's rules.
type secureBroker struct {
	url    string
	reload func() // make the broker read the CA's revocation list again
	pid    int    // broker process (mosquitto); 0 for serve, in this process
}

// secureBrokers runs f against mosquitto configured by graft-fleet
// broker-config and against graft-fleet serve --ca.
// Each gets its own fleet CA.
func secureBrokers(t *testing.T, f func(t *testing.T, p *fleetPKI, b secureBroker)) {
	t.Run("mosquitto", func(t *testing.T) {
		p := newFleetPKI(t)
		out := filepath.Join(t.TempDir(), "mosquitto")
		port := mqtttest.FreePort(t)
		mustRun(t, "broker-config", "mosquitto", "--ca", p.caDir, "--out", out, "--port", strconv.Itoa(port), "--bind", "127.0.0.1")
		b := mqtttest.StartMosquittoConfig(t, filepath.Join(out, "mosquitto.conf"), port, true)
		// mosquitto reads crl.pem when it starts (SIGHUP does not reload it).
		f(t, p, secureBroker{url: b.URL(), reload: b.Restart, pid: b.PID()})
	})
	t.Run("serve", func(t *testing.T) {
		p := newFleetPKI(t)
		s, err := serve.Start(t.Context(), serve.Options{
			MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), HTTPAddr: "127.0.0.1:0",
			CADir: p.caDir, MQTTSAddr: "127.0.0.1:0",
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if s.MQTTURL() != "" {
			t.Fatalf("serve --ca opened a plain listener %s", s.MQTTURL())
		}
		f(t, p, secureBroker{url: s.MQTTSURL(), reload: func() {}})
	})
}

// conn is a test client that records whether it lost its connection.
type conn struct {
	paho.Client
	lost atomic.Bool
}

// dial connects as the holder of name's certificate with client ID id.
func dial(t *testing.T, p *fleetPKI, b secureBroker, name, id string) (*conn, error) {
	t.Helper()
	c := &conn{}
	opts := paho.NewClientOptions().AddBroker(b.url).SetClientID(id).SetTLSConfig(p.tlsFor(t, name)).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetCleanSession(true).
		SetConnectionLostHandler(func(paho.Client, error) { c.lost.Store(true) })
	c.Client = paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func mustDial(t *testing.T, p *fleetPKI, b secureBroker, name string) *conn {
	t.Helper()
	id := name
	if name == "alice" || name == "vic" {
		id = "operator:" + name
	}
	c, err := dial(t, p, b, name, id)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	return c
}

// inbox subscribes c to filter and collects the topics of what arrives.
type inbox chan string

func subscribe(t *testing.T, c paho.Client, filter string) (inbox, byte) {
	t.Helper()
	in := make(inbox, 64)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		select {
		case in <- m.Topic() + "=" + string(m.Payload()):
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	// A broker sends the SUBACK before the retained messages; a message
	// published in between would come twice (live and retained). One more
	// round trip on this connection lets the broker finish the subscribe.
	if tok := c.Unsubscribe(transport.Prefix + "barrier"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("unsubscribe: %v", tok.Error())
	}
	return in, tok.(*paho.SubscribeToken).Result()[filter]
}

// quiet is how long a test waits to see that something does NOT arrive.
// It is paired each time with a positive control that does arrive
// through the same broker afterwards, in order.
const quiet = 300 * time.Millisecond

func (in inbox) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-in:
		if got != want {
			t.Fatalf("received %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%q never arrived", want)
	}
}

func (in inbox) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-in:
		t.Fatalf("received %q, which the broker should have refused", got)
	case <-time.After(quiet):
	}
}

func pub(c paho.Client, topic, payload string, retain bool) {
	// QoS 0: a refused QoS 1 publish may cost the connection (serve
	// disconnects an MQTT 3.1.1 client, as the standard asks).
	c.Publish(topic, 0, retain, payload).WaitTimeout(5 * time.Second)
}

func TestMTLSNoCertificate(t *testing.T) {
	t.Parallel()
	secureBrokers(t, func(t *testing.T, p *fleetPKI, b secureBroker) {
		if _, err := dial(t, p, b, "", "d1"); err == nil {
			t.Fatal("a client without a certificate connected")
		}
		plain := "tcp://" + strings.TrimPrefix(b.url, "ssl://")
		c := paho.NewClient(paho.NewClientOptions().AddBroker(plain).SetClientID("d1").SetConnectTimeout(3 * time.Second))
		if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			t.Fatal("a plain TCP client connected to the TLS listener")
		}
		// A certificate from another CA is refused too.
		other := newFleetPKI(t)
		cfg := other.tlsFor(t, "d1")
		cfg.RootCAs = p.tlsFor(t, "").RootCAs
		c = paho.NewClient(paho.NewClientOptions().AddBroker(b.url).SetClientID("d1").SetTLSConfig(cfg).SetConnectTimeout(3 * time.Second))
		if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			t.Fatal("a certificate from another CA connected")
		}
		mustDial(t, p, b, "d1") // and the control: d1's own certificate does
	})
}

func TestMTLSDeviceIsolation(t *testing.T) {
	t.Parallel()
	secureBrokers(t, func(t *testing.T, p *fleetPKI, b secureBroker) {
		alice := mustDial(t, p, b, "alice")
		watch, _ := subscribe(t, alice, transport.Prefix+"#")

		t.Run("publish as another device", func(t *testing.T) {
			d1 := mustDial(t, p, b, "d1")
			pub(d1, transport.StatusTopic("d2"), "forged", true)
			pub(d1, transport.OnlineTopic("d2"), "forged", true)
			pub(d1, transport.StatusTopic("d1"), "mine", true) // control
			watch.expect(t, transport.StatusTopic("d1")+"=mine")
			watch.none(t)
		})
		t.Run("publish a notice", func(t *testing.T) {
			d1 := mustDial(t, p, b, "d1")
			pub(d1, transport.NotifyTopic("d1"), "self-notice", true)
			pub(d1, transport.NotifyTopic("d2"), "notice", true)
			pub(d1, transport.GroupNotifyTopic("canary"), "notice", true)
			vic := mustDial(t, p, b, "vic")
			pub(vic, transport.NotifyTopic("d2"), "viewer-notice", true)
			pub(d1, transport.TelemetryTopic("d1"), "control", false)
			watch.expect(t, transport.TelemetryTopic("d1")+"=control")
			watch.none(t)
		})
		t.Run("read another device's notices", func(t *testing.T) {
			pub(alice, transport.NotifyTopic("d2"), "for-d2", true)
			pub(alice, transport.NotifyTopic("d1"), "for-d1", true)
			watch.expect(t, transport.NotifyTopic("d2")+"=for-d2")
			watch.expect(t, transport.NotifyTopic("d1")+"=for-d1")
			d1 := mustDial(t, p, b, "d1")
			other, code := subscribe(t, d1, transport.NotifyTopic("d2"))
			// serve refuses the subscription; mosquitto grants it and
			// then delivers nothing its ACL does not allow.
			if b.pid == 0 && code < 0x80 {
				t.Errorf("subscription to d2's notices granted (SUBACK %#x)", code)
			}
			all, _ := subscribe(t, d1, transport.Prefix+"#")
			own, code := subscribe(t, d1, transport.NotifyTopic("d1"))
			if code >= 0x80 {
				t.Fatalf("d1's own notify topic refused (SUBACK %#x)", code)
			}
			own.expect(t, transport.NotifyTopic("d1")+"=for-d1") // control: retained, delivered
			other.none(t)
			for len(all) > 0 {
				if got := <-all; !strings.HasPrefix(got, transport.NotifyTopic("d1")+"=") {
					t.Fatalf("d1 read %q through graft/v1/#", got)
				}
			}
			group, code := subscribe(t, d1, transport.GroupNotifyTopic("canary"))
			if code >= 0x80 {
				t.Fatalf("group notify refused (SUBACK %#x)", code)
			}
			pub(alice, transport.GroupNotifyTopic("canary"), "for-canary", true)
			group.expect(t, transport.GroupNotifyTopic("canary")+"=for-canary")
			watch.expect(t, transport.GroupNotifyTopic("canary")+"=for-canary")
		})
		t.Run("will on another device's topic", func(t *testing.T) {
			// A connection that dies without DISCONNECT makes the broker
			// publish its will: it must not be another device's flag.
			c, err := tls.Dial("tcp", strings.TrimPrefix(b.url, "ssl://"), p.tlsFor(t, "d1"))
			if err != nil {
				t.Fatal(err)
			}
			c.Write(connectPacket("d1", transport.OnlineTopic("d2"), "forged-will"))
			io.ReadFull(c, make([]byte, 4)) // CONNACK, or the broker closes
			c.Close()
			d1 := mustDial(t, p, b, "d1")
			pub(d1, transport.OnlineTopic("d1"), "control", false)
			watch.expect(t, transport.OnlineTopic("d1")+"=control")
			watch.none(t)
		})
		t.Run("take another device's client ID", func(t *testing.T) {
			d2 := mustDial(t, p, b, "d2")
			// serve refuses the connection; mosquitto replaces the client
			// ID with the certificate's (use_username_as_clientid), so the
			// impostor connects as d1. Either way d2 keeps its session.
			if c, err := dial(t, p, b, "d1", "d2"); err == nil {
				pub(c, transport.StatusTopic("d2"), "impostor", true)
			}
			pub(d2, transport.StatusTopic("d2"), "still-here", true)
			watch.expect(t, transport.StatusTopic("d2")+"=still-here")
			if d2.lost.Load() || !d2.IsConnectionOpen() {
				t.Fatal("d2 was knocked off by a client using its client ID")
			}
			watch.none(t)
		})
	})
}

func TestMTLSRevoked(t *testing.T) {
	t.Parallel()
	secureBrokers(t, func(t *testing.T, p *fleetPKI, b secureBroker) {
		mustDial(t, p, b, "d3").Disconnect(50) // before: accepted
		mustRun(t, "ca", "revoke", "--dir", p.caDir, "--device", "d3")
		b.reload()
		deadline := time.Now().Add(15 * time.Second) // serve rereads crl.pem every 2 s
		for {
			c, err := dial(t, p, b, "d3", "d3")
			if err != nil {
				break
			}
			c.Disconnect(0)
			if time.Now().After(deadline) {
				t.Fatal("revoked d3 still connects")
			}
			time.Sleep(200 * time.Millisecond)
		}
		mustDial(t, p, b, "d1") // the others still connect
	})
}

// TestMTLSRevokedWhileConnected: serve drops a connected client once its
// certificate is revoked.
func TestMTLSRevokedWhileConnected(t *testing.T) {
	t.Parallel()
	p := newFleetPKI(t)
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", CADir: p.caDir, MQTTSAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d3 := mustDial(t, p, secureBroker{url: s.MQTTSURL()}, "d3")
	mustRun(t, "ca", "revoke", "--dir", p.caDir, "--device", "d3")
	deadline := time.Now().Add(15 * time.Second)
	for !d3.lost.Load() {
		if time.Now().After(deadline) {
			t.Fatal("revoked d3 stays connected")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMTLSOversize sends the header of a 10 MB PUBLISH and then its body:
// the broker must drop the connection from the header, not buffer the
// body. The broker's memory is measured: mosquitto's peak RSS
// (/proc/PID/status VmHWM), serve's heap allocation in this process.
func TestMTLSOversize(t *testing.T) {
	const size = 10 << 20
	secureBrokers(t, func(t *testing.T, p *fleetPKI, b secureBroker) {
		c := rawConnect(t, p, b, "d1")
		before := brokerMem(t, b)
		topic := transport.StatusTopic("d1")
		rem := 2 + len(topic) + size
		hdr := append([]byte{0x31}, varint(rem)...) // PUBLISH, retain
		hdr = append(hdr, byte(len(topic)>>8), byte(len(topic)))
		hdr = append(hdr, topic...)
		sent := 0
		chunk := make([]byte, 64<<10)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Write(hdr)
		for err == nil && sent < size {
			var n int
			n, err = c.Write(chunk[:min(len(chunk), size-sent)])
			sent += n
		}
		if err == nil {
			// Everything went into socket buffers; the broker must close.
			_, err = c.Read(make([]byte, 1))
		}
		if err == nil {
			t.Fatal("the broker kept the connection after a 10 MB PUBLISH")
		}
		after := brokerMem(t, b)
		t.Logf("sent %d of %d bytes before the broker closed; broker memory %d → %d KiB", sent, size, before>>10, after>>10)
		if sent >= size {
			t.Errorf("the broker read the whole 10 MB body (%d bytes sent)", sent)
		}
		if after-before > 4<<20 {
			t.Errorf("broker memory grew by %d KiB for a refused 10 MB message", (after-before)>>10)
		}
		// The broker still serves.
		mustDial(t, p, b, "d1")
	})
}

// rawConnect opens a TLS connection as name and sends an MQTT 3.1.1
// CONNECT, returning once the CONNACK accepted it.
func rawConnect(t *testing.T, p *fleetPKI, b secureBroker, name string) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", strings.TrimPrefix(b.url, "ssl://"), p.tlsFor(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(connectPacket(name, "", "")); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x: %v", ack, err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// connectPacket is an MQTT 3.1.1 CONNECT with a clean session, and a
// retained will when willTopic is set.
func connectPacket(id, willTopic, will string) []byte {
	flags := byte(0x02)
	if willTopic != "" {
		flags |= 0x04 | 0x20
	}
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 60}
	body = str(body, id)
	if willTopic != "" {
		body = str(str(body, willTopic), will)
	}
	return append(append([]byte{0x10}, varint(len(body))...), body...)
}

func varint(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// brokerMem is mosquitto's peak resident memory, or the bytes this
// process (serve's broker) has allocated so far.
func brokerMem(t *testing.T, b secureBroker) int64 {
	t.Helper()
	if b.pid == 0 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.TotalAlloc)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestMTLSCommands: notify and status over mutual TLS as operators, with
// the subscriber count and --clear.
func TestMTLSCommands(t *testing.T) {
	t.Parallel()
	repoDir := newRepo(t)
	addRelease(t, repoDir, "v2", "2")
	secureBrokers(t, func(t *testing.T, p *fleetPKI, b secureBroker) {
		d1 := mustDial(t, p, b, "d1")
		notices, _ := subscribe(t, d1, transport.NotifyTopic("d1"))
		pub(d1, transport.OnlineTopic("d1"), string(transport.EncodeOnline(true)), true)

		code, stdout, stderr := run(t.Context(), append(p.flags("notify", b, "alice"), "--repo", repoDir, "--device", "d1", "v2", "--json")...)
		if code != cli.ExitOK {
			t.Fatalf("notify: exit %d: %s", code, stderr)
		}
		var out struct {
			Topic      string
			Subscribed *int
			Connected  *int
			Sequence   uint64
			TimeMS     int64 `json:"time_ms"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatalf("%v: %q", err, stdout)
		}
		if out.Sequence != 2 {
			t.Errorf("sequence %d, want the manifest's 2", out.Sequence)
		}
		if b.pid == 0 { // serve counts
			if out.Subscribed == nil || *out.Subscribed != 1 || *out.Connected != 1 {
				t.Errorf("serve: subscribed %v connected %v, want 1 1", out.Subscribed, out.Connected)
			}
		} else if out.Subscribed != nil {
			t.Errorf("mosquitto cannot count, yet notify printed %d", *out.Subscribed)
		}
		got := <-notices
		if n, err := transport.DecodeNotice([]byte(strings.TrimPrefix(got, transport.NotifyTopic("d1")+"="))); err != nil || n.Release != "v2" {
			t.Fatalf("d1 received %q: %v", got, err)
		}

		// A viewer may read status but not notify.
		code, stdout, stderr = run(t.Context(), append(p.flags("status", b, "vic"), "--json", "--wait", "1s")...)
		if code != cli.ExitOK || !strings.Contains(stdout, `"d1"`) {
			t.Fatalf("status as viewer: exit %d: %s %s", code, stdout, stderr)
		}
		// serve refuses the viewer's QoS 1 notice (and disconnects it);
		// mosquitto acknowledges and drops it, which MQTT 3.1.1 allows.
		code, _, _ = run(t.Context(), append(p.flags("notify", b, "vic"), "--repo", repoDir, "--device", "d1", "v2")...)
		if b.pid == 0 && code == cli.ExitOK {
			t.Error("serve acknowledged a viewer's notice")
		}
		pub(mustDial(t, p, b, "alice"), transport.NotifyTopic("d1"), "control", false)
		notices.expect(t, transport.NotifyTopic("d1")+"=control")

		// --clear empties the retained notice: a new subscriber gets none.
		mustRun(t, append(p.flags("notify", b, "alice"), "--clear", "--device", "d1")...)
		d1.Disconnect(50)
		d1 = mustDial(t, p, b, "d1")
		again := make(chan paho.Message, 4)
		if tok := d1.Subscribe(transport.NotifyTopic("d1"), 1, func(_ paho.Client, m paho.Message) { again <- m }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		pub(mustDial(t, p, b, "alice"), transport.NotifyTopic("d1"), "control", false)
		if m := <-again; string(m.Payload()) != "control" {
			n, _ := transport.DecodeNotice(m.Payload())
			t.Fatalf("after --clear, d1 received %+v (retained %v, duplicate %v); alice's notice was sent at %d", n, m.Retained(), m.Duplicate(), out.TimeMS)
		}
	})
}

// addRelease publishes release name with sequence seq to the repository.
func addRelease(t *testing.T, dir, name, seq string) {
	t.Helper()
	img, _ := writeImage(t, 4<<10)
	mustRun(t, "release", "add", "--repo", dir, "--name", name, "--version", seq+".0.0", "--sequence", seq,
		"--board", "sim", "--image", img)
}

// TestMTLSAgentSession: the device's own session (transport/mqtt, as
// graft-agent runs it) works within the rules: it connects with its
// certificate, subscribes to its notify topic and its groups', publishes
// its online flag and its telemetry, and receives an operator's notices.
func TestMTLSAgentSession(t *testing.T) {
	t.Parallel()
	secureBrokers(t, func(t *testing.T, p *fleetPKI, b secureBroker) {
		notices := make(chan transport.Notice, 4)
		s, err := mqtt.Start(t.Context(), mqtt.Config{
			Broker: b.url, DeviceID: "d1", Groups: []string{"canary", "all"}, TLS: p.tlsFor(t, "d1"),
			ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
			OnNotice: func(n transport.Notice) { notices <- n },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(t.Context())
		alice := mustDial(t, p, b, "alice")
		online, _ := subscribe(t, alice, transport.OnlineTopic("d1"))
		online.expect(t, transport.OnlineTopic("d1")+"="+string(transport.EncodeOnline(true)))
		telemetry, _ := subscribe(t, alice, transport.TelemetryTopic("d1"))
		if err := s.PublishTelemetry(t.Context(), transport.Telemetry{Device: "d1", Uptime: 1}); err != nil {
			t.Fatal(err)
		}
		if got := <-telemetry; !strings.HasPrefix(got, transport.TelemetryTopic("d1")+"=") {
			t.Fatalf("telemetry: %q", got)
		}
		for _, topic := range []string{transport.NotifyTopic("d1"), transport.GroupNotifyTopic("canary")} {
			n, _ := transport.EncodeNotice(transport.Notice{Release: "v2", Manifest: "releases/v2/manifest.cbor"})
			pub(alice, topic, string(n), false)
			select {
			case got := <-notices:
				if got.Release != "v2" {
					t.Fatalf("notice %+v", got)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the session never received the notice on %s", topic)
			}
		}
		if !s.Connected() {
			t.Fatal("the session lost its connection")
		}
	})
}
