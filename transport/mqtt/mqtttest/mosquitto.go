package mqtttest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MosquittoPath is where the Debian package installs the broker.
const MosquittoPath = "/usr/sbin/mosquitto"

// startTimeout bounds how long a broker may take to accept connections.
const startTimeout = 10 * time.Second

// Broker is a running mosquitto.
type Broker struct {
	t    testing.TB
	dir  string
	port int
	conf string

	tls bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *syncBuffer
}

// syncBuffer collects the broker's output; exec writes it from its own
// goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Option changes the broker StartMosquitto starts.
type Option func(*brokerOptions)

type brokerOptions struct {
	pki *PKI
}

// WithMutualTLS makes the listener speak TLS with a server certificate from
// pki and require client certificates signed by its CA; the certificate's
// common name becomes the MQTT username.
func WithMutualTLS(pki *PKI) Option {
	return func(o *brokerOptions) { o.pki = pki }
}

// StartMosquitto starts a broker listening on 127.0.0.1 with anonymous
// access and persistence in a temporary directory, and stops it when the
// test ends. It skips the test when mosquitto is not installed.
func StartMosquitto(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	var o brokerOptions
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := exec.LookPath(MosquittoPath); err != nil {
		t.Skipf("mosquitto not installed (%s): apt-get install mosquitto", MosquittoPath)
	}
	b := &Broker{t: t, dir: t.TempDir(), port: freePort(t)}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
persistence_file mosquitto.db
autosave_interval 0
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages true
`, b.port, b.dir)
	if o.pki != nil {
		cert, key := o.pki.Server()
		conf += fmt.Sprintf("cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\n",
			o.pki.CAFile, cert, key)
		b.tls = true
	}
	if os.Geteuid() == 0 {
		// As root mosquitto would drop to the "mosquitto" user, which can
		// not write the test's directory.
		conf += "user root\n"
	}
	if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.Stop)
	return b
}

// freePort finds a TCP port that is free on 127.0.0.1 right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

// URL is the broker's address for paho: tcp://host:port, or
// ssl://host:port with WithMutualTLS.
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://" + b.Addr()
	}
	return "tcp://" + b.Addr()
}

func (b *Broker) start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		b.t.Fatal("mqtttest: broker already running")
	}
	log := &syncBuffer{}
	cmd := exec.Command(MosquittoPath, "-c", b.conf)
	// The broker dies with the test process, even one killed by a timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = log
	cmd.Stderr = log
	// Pdeathsig fires when the *thread* that forked the broker exits, and
	// Go ends an OS thread that a goroutine leaves locked (an in-process
	// agent's ptrace tracer does). So fork from a thread of its own that
	// lives as long as the broker: it ends only after the broker is gone.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		b.t.Fatalf("mqtttest: start mosquitto: %v", err)
	}
	b.cmd, b.done, b.log = cmd, done, log

	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			b.cmd = nil
			b.t.Fatalf("mqtttest: mosquitto exited at start: %s", log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mqtttest: mosquitto did not listen on %s within %v: %s", b.Addr(), startTimeout, log.String())
		}
	}
}

// Stop stops the broker gracefully (SIGTERM, so it saves its persistence
// file) and waits for it to exit; after a timeout it is killed. Stopping a
// stopped broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(startTimeout):
		b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// Restart stops the broker and starts it again on the same port with the
// same persistence file.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// RestartEmpty restarts the broker after deleting its persistence file,
// as a broker that lost its state would: no sessions, subscriptions,
// queued or retained messages survive.
func (b *Broker) RestartEmpty() {
	b.t.Helper()
	b.Stop()
	if err := os.Remove(filepath.Join(b.dir, "mosquitto.db")); err != nil && !os.IsNotExist(err) {
		b.t.Fatal(err)
	}
	b.start()
}

// Log is what the broker has printed so far (errors, warnings, notices and
// connection messages), for failure messages.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.log == nil {
		return ""
	}
	return b.log.String()
}
