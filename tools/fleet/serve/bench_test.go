package serve_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/identity"
)

// TestFleetMTLSBench (GRAFT_BENCH=1, make bench) connects as many
// simulated devices as this machine holds to serve's mutual-TLS listener
// (each with its own certificate, subscribed to its own and a group's
// notify topic), then measures the connection rate, the rate of device
// messages reaching an operator, and a group notice's fan-out. Clients
// and broker share this process and its two cores, so the figures are a
// floor. GRAFT_BENCH_DEVICES caps the count.
func TestFleetMTLSBench(t *testing.T) {
	if os.Getenv("GRAFT_BENCH") == "" {
		t.Skip("set GRAFT_BENCH=1 (make bench)")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// Two descriptors per device (both ends live here), and some spare.
	n := int(lim.Cur-256) / 2
	n = min(n, 10000)
	if s := os.Getenv("GRAFT_BENCH_DEVICES"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = min(n, v)
		}
	}
	dir := filepath.Join(t.TempDir(), "ca")
	auth, err := ca.Init(dir, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sign := signer(t, dir, auth.Certificate())
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: t.TempDir(), TargetsDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", CADir: dir, MQTTSAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roots := x509.NewCertPool()
	roots.AddCert(auth.Certificate())

	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)

	// Connect.
	devs := make([]*benchClient, n)
	var (
		next     atomic.Int64
		failures atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	start, cpu0 := time.Now(), cpuTime()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id, _ := identity.NewDevice(fmt.Sprintf("bench-%05d", i))
				c, err := dialBench(s.MQTTSAddr(), roots, sign(id), id.String(),
					transport.NotifyTopic(id.Name), transport.GroupNotifyTopic("bench"))
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				devs[i] = c
			}
		}()
	}
	wg.Wait()
	connectTime, connectCPU := time.Since(start), cpuTime()-cpu0
	connected := 0
	for _, d := range devs {
		if d != nil {
			connected++
			defer d.conn.Close()
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("fleet-bench: %d of %d devices connected over mutual TLS (each handshake, CONNECT, SUBSCRIBE to 2 topics) in %v: %.0f connections/s; %d failed%s",
		connected, n, connectTime.Round(time.Millisecond), float64(connected)/connectTime.Seconds(), failures.Load(), errSuffix(firstErr.Load()))
	t.Logf("fleet-bench: CPU per connection %v (broker and client side together; %.0f connections per CPU-second)",
		(connectCPU / time.Duration(max(connected, 1))).Round(10*time.Microsecond), float64(connected)/connectCPU.Seconds())
	t.Logf("fleet-bench: Go heap in use %+.1f MiB for %d devices: %.1f KiB per device (broker and client side together)",
		float64(int64(after.HeapInuse)-int64(base.HeapInuse))/(1<<20), connected, float64(int64(after.HeapInuse)-int64(base.HeapInuse))/1024/float64(max(connected, 1)))
	if connected == 0 {
		t.Fatalf("no device connected: %v", firstErr.Load())
	}

	// Device → fleet: every device publishes telemetry, one operator
	// follows graft/v1/dev/+/telemetry.
	op, _ := identity.NewOperator("bench", identity.RoleAdmin)
	opc, err := dialBench(s.MQTTSAddr(), roots, sign(op), op.String(), transport.DeviceFilter(transport.KindTelemetry))
	if err != nil {
		t.Fatal(err)
	}
	defer opc.conn.Close()
	const perDevice = 10
	want := int64(connected * perDevice)
	start = time.Now()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				d := devs[i]
				if d == nil {
					continue
				}
				pkt := publishPacket(transport.TelemetryTopic(d.id), make([]byte, 64))
				for range perDevice {
					d.write(pkt)
				}
			}
		}()
	}
	wg.Wait()
	got := waitSettled(opc, want, 2*time.Minute)
	d := time.Unix(0, opc.last.Load()).Sub(start)
	t.Logf("fleet-bench: %d of %d device messages (64-byte payloads, QoS 0, %d per device at once) reached the operator in %v: %.0f messages/s; %d dropped while the operator's queue was full (%d pending writes per client)",
		got, want, perDevice, d.Round(time.Millisecond), float64(got)/d.Seconds(), want-got, mqttWritesPending)

	// Fleet → devices: one group notice fans out to every device.
	var before int64
	for _, d := range devs {
		if d != nil {
			before += d.received.Load()
		}
	}
	start = time.Now()
	opc.write(publishPacket(transport.GroupNotifyTopic("bench"), make([]byte, 64)))
	deadline := time.Now().Add(2 * time.Minute)
	var sum int64
	for {
		sum = 0
		for _, d := range devs {
			if d != nil {
				sum += d.received.Load()
			}
		}
		if sum-before >= int64(connected) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	d = time.Since(start)
	t.Logf("fleet-bench: a group notice reached %d of %d devices in %v: %.0f deliveries/s",
		sum-before, connected, d.Round(time.Millisecond), float64(sum-before)/d.Seconds())
}

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func errSuffix(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprintf(" (first: %v)", v)
}

// mqttWritesPending is mochi's default bound on a client's queued
// outgoing packets; QoS 0 messages beyond it are dropped.
const mqttWritesPending = 8192

// waitSettled waits until c has received want messages, or none for a
// second (the rest were dropped), or limit passes.
func waitSettled(c *benchClient, want int64, limit time.Duration) int64 {
	deadline := time.Now().Add(limit)
	for c.received.Load() < want && time.Now().Before(deadline) {
		if l := c.last.Load(); l != 0 && time.Since(time.Unix(0, l)) > time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c.received.Load()
}

// signer returns a function that issues a client certificate for an
// identity straight from the CA key: bench certificates are throwaway, so
// they skip the CA's index (which records every certificate it issues).
// All share one key.
func signer(t *testing.T, dir string, caCert *x509.Certificate) func(identity.Identity) tls.Certificate {
	b, err := os.ReadFile(filepath.Join(dir, ca.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var serial atomic.Int64
	return func(id identity.Identity) tls.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial.Add(1)),
			NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		}
		id.Apply(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, k)
		if err != nil {
			panic(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
}

// benchClient is a minimal MQTT 3.1.1 client over TLS: it connects,
// subscribes, writes packets and counts the PUBLISH packets it reads.
type benchClient struct {
	id       string
	conn     *tls.Conn
	mu       sync.Mutex
	received atomic.Int64
	last     atomic.Int64 // unix nanoseconds of the last PUBLISH read
}

func dialBench(addr string, roots *x509.CertPool, cert tls.Certificate, id string, filters ...string) (*benchClient, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	c := &benchClient{id: id, conn: conn}
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	body := str([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0}, id)
	sub := []byte{0, 1}
	for _, f := range filters {
		sub = append(str(sub, f), 0)
	}
	pkts := append(packet(0x10, body), packet(0x82, sub)...)
	if _, err := conn.Write(pkts); err != nil {
		conn.Close()
		return nil, err
	}
	r := bufio.NewReader(conn)
	for _, want := range []byte{0x20, 0x90} { // CONNACK, SUBACK
		typ, body, err := readPacket(r)
		if err != nil || typ != want || (want == 0x20 && body[1] != 0) || (want == 0x90 && body[len(body)-1] >= 0x80) {
			conn.Close()
			return nil, fmt.Errorf("%s: packet %#x %x: %v", id, typ, body, err)
		}
	}
	go func() {
		for {
			typ, _, err := readPacket(r)
			if err != nil {
				return
			}
			if typ&0xf0 == 0x30 {
				c.received.Add(1)
				c.last.Store(time.Now().UnixNano())
			}
		}
	}()
	return c, nil
}

func (c *benchClient) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.Write(p)
}

func publishPacket(topic string, payload []byte) []byte {
	body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	return packet(0x30, append(body, payload...))
}

func packet(typ byte, body []byte) []byte {
	out := []byte{typ}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func readPacket(r *bufio.Reader) (byte, []byte, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return typ, body, err
}
