package serve

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/tools/fleet/metrics"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// Default listen addresses: loopback only.
const (
	DefaultMQTTAddr  = "127.0.0.1:1883"
	DefaultMQTTSAddr = "127.0.0.1:8883"
	DefaultHTTPAddr  = "127.0.0.1:8080"
)

// Broker limits.
const (
	// DefaultMaxPacket is the largest MQTT packet the broker reads: the
	// largest payload the wire allows plus room for the topic and
	// headers. A bigger packet is refused from its fixed header, before
	// its body is read, and the client is disconnected.
	DefaultMaxPacket = transport.MaxPayload + 1024
	// DefaultRetainedPerClient is how many retained topics one client may
	// hold. A device may hold at most three by the ACL (status, online,
	// telemetry); an admin holds one notice per device or group.
	DefaultRetainedPerClient = 100_000
	// crlInterval is how often the revocation list file is checked for
	// changes (and newly revoked clients disconnected).
	crlInterval = 2 * time.Second
)

// Errors.
var (
	// ErrNoDir is returned by Start when a repository directory is missing
	// or is not a directory.
	ErrNoDir = errors.New("serve: repository directory missing")
	// ErrPlainNotLoopback refuses a plain (unauthenticated) MQTT listener
	// on an address other than loopback.
	ErrPlainNotLoopback = errors.New("serve: a plain MQTT listener is only for loopback; use --ca and --mqtts")
	// ErrNoListener is returned when neither a plain nor a TLS broker
	// listener is configured.
	ErrNoListener = errors.New("serve: no MQTT listener")
)

// Options configure Start.
type Options struct {
	// MetadataDir holds the TUF metadata, served under /metadata/.
	MetadataDir string
	// TargetsDir holds the TUF target files, served under /targets/.
	TargetsDir string
	// MQTTAddr is the plain broker listener's address, which must be on
	// loopback: it lets every client in, as anyone with a shell on this
	// machine. "" means DefaultMQTTAddr without CADir, and no plain
	// listener with CADir. Port 0 picks a free port.
	MQTTAddr string
	// CADir is a fleet CA directory (tools/fleet/ca). With it the broker
	// listens with TLS on MQTTSAddr, requires a client certificate from
	// that CA that is not revoked (crl.pem, re-read when it changes),
	// binds the client ID to the certificate's identity and applies
	// identity.Allowed.
	CADir string
	// MQTTSAddr is the TLS listener's address; "" means DefaultMQTTSAddr.
	MQTTSAddr string
	// ServerCert and ServerKey are the broker's TLS certificate and key
	// files. Empty: a certificate for the listen address, localhost and
	// 127.0.0.1 is issued in memory from CADir's key.
	ServerCert, ServerKey string
	// MaxPacket is the largest MQTT packet accepted; 0 means
	// DefaultMaxPacket.
	MaxPacket uint32
	// RetainedPerClient bounds the retained topics one client holds; 0
	// means DefaultRetainedPerClient.
	RetainedPerClient int
	// HTTPAddr is the repository server's listen address; "" means
	// DefaultHTTPAddr. Port 0 picks a free port.
	HTTPAddr string
	// PrivateDirs hold secrets (the repository's keys); Start refuses to
	// serve a tree that contains one. CADir counts too.
	PrivateDirs []string
	// Logger receives service logs; nil discards them. The broker's own
	// chatter is passed on from level Warn up.
	Logger *slog.Logger
	// Store, if set, is the fleet's database: every status, online flag
	// and telemetry message devices publish is stored in it. The caller
	// opens and closes it; serve is its one writer.
	Store *store.Store
	// Observer, if set with Store, is told about every fresh status once
	// it is stored.
	Observer StatusObserver
	// MetricsDeviceCap, with Store, caps the devices that get per-device
	// series on /metrics (0: metrics.DefaultDeviceCap).
	MetricsDeviceCap int
	// Timestamp, when set, re-signs the repository's timestamp every
	// ResignEvery (graft-fleet opens the repository with the timestamp
	// key alone), so devices keep accepting it without anyone running
	// `repo timestamp`.
	Timestamp Resigner
	// ResignEvery is the re-signing period; it must be shorter than the
	// timestamp's expiry. Required with Timestamp.
	ResignEvery time.Duration
	// ExpiryWarn: after each re-signing, any other role whose published
	// metadata expires within this long is logged as a warning and listed
	// in Status (snapshot and targets need their own keys: `repo
	// publish`).
	ExpiryWarn time.Duration
}

// Resigner re-signs a repository's timestamp and reads its expiries
// (*repo.Repo).
type Resigner interface {
	RefreshTimestamp() error
	Expires() (map[string]time.Time, error)
}

// Status is what the server reports about the repository it keeps fresh.
type Status struct {
	// Resigned is the last successful timestamp re-signing (zero: none).
	Resigned time.Time `json:"resigned,omitzero"`
	// Expires maps role to the expiry of its published metadata.
	Expires map[string]time.Time `json:"expires,omitempty"`
	// Warnings: roles expiring within ExpiryWarn, and the last re-signing
	// error.
	Warnings []string `json:"warnings,omitempty"`
}

// Server is a running broker and repository server. Its methods are safe
// for concurrent use.
type Server struct {
	log       *slog.Logger
	broker    *mqtt.Server
	mqttAddr  string
	mqttsAddr string
	httpLn    net.Listener
	httpSrv   *http.Server
	httpDone  chan struct{}

	ingest     *ingester // nil without a store
	stopIngest context.CancelFunc

	closeOnce sync.Once
	closeErr  error
	stopWatch chan struct{}

	mu     sync.Mutex
	status Status
	resign sync.WaitGroup
}

// Start binds both listeners, starts serving and returns. The services
// stop when ctx is cancelled or Close is called.
func Start(ctx context.Context, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []struct{ what, dir string }{{"metadata", opts.MetadataDir}, {"targets", opts.TargetsDir}} {
		fi, err := os.Stat(d.dir)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: %s directory %q", ErrNoDir, d.what, d.dir)
		}
	}
	private := opts.PrivateDirs
	if opts.CADir != "" {
		private = append(private[:len(private):len(private)], opts.CADir)
	}
	if err := CheckPrivate([]string{opts.MetadataDir, opts.TargetsDir}, private...); err != nil {
		return nil, err
	}
	if opts.Timestamp != nil && opts.ResignEvery <= 0 {
		return nil, errors.New("serve: ResignEvery must be positive to re-sign the timestamp")
	}
	mqttAddr := opts.MQTTAddr
	if mqttAddr == "" && opts.CADir == "" {
		mqttAddr = DefaultMQTTAddr
	}
	httpAddr := opts.HTTPAddr
	if httpAddr == "" {
		httpAddr = DefaultHTTPAddr
	}
	hook := &fleetHook{
		log:      log.With("component", "mqtt"),
		quota:    opts.RetainedPerClient,
		retained: map[string]string{},
		held:     map[string]int{},
	}
	if hook.quota <= 0 {
		hook.quota = DefaultRetainedPerClient
	}
	maxPacket := opts.MaxPacket
	if maxPacket == 0 {
		maxPacket = DefaultMaxPacket
	}

	var lns []net.Listener
	fail := func(err error) (*Server, error) {
		for _, l := range lns {
			l.Close()
		}
		return nil, err
	}
	var mqttLn, mqttsLn net.Listener
	if mqttAddr != "" {
		ln, err := net.Listen("tcp", mqttAddr)
		if err != nil {
			return nil, fmt.Errorf("serve: mqtt listen: %w", err)
		}
		lns = append(lns, ln)
		if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
			return fail(fmt.Errorf("%w: %s", ErrPlainNotLoopback, mqttAddr))
		}
		mqttLn = ln
	}
	if opts.CADir != "" {
		tlsCfg, err := serverTLS(opts, hook)
		if err != nil {
			return fail(err)
		}
		addr := opts.MQTTSAddr
		if addr == "" {
			addr = DefaultMQTTSAddr
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("serve: mqtts listen: %w", err))
		}
		lns = append(lns, ln)
		mqttsLn = tls.NewListener(ln, tlsCfg)
	}
	if mqttLn == nil && mqttsLn == nil {
		return fail(ErrNoListener)
	}
	httpLn, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fail(fmt.Errorf("serve: http listen: %w", err))
	}
	lns = append(lns, httpLn)

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacket
	broker := mqtt.New(&mqtt.Options{
		Logger:       slog.New(minLevel{h: log.With("component", "mqtt").Handler(), min: slog.LevelWarn}),
		Capabilities: caps,
		InlineClient: true, // answers subscriber queries; the store ingests through it
	})
	hook.broker = broker
	if err := broker.AddHook(hook, nil); err != nil {
		return fail(fmt.Errorf("serve: mqtt hook: %w", err))
	}
	if mqttLn != nil {
		if err := broker.AddListener(listeners.NewNet(listenerPlain, mqttLn)); err != nil {
			return fail(fmt.Errorf("serve: mqtt listener: %w", err))
		}
	}
	if mqttsLn != nil {
		if err := broker.AddListener(listeners.NewNet(listenerTLS, mqttsLn)); err != nil {
			return fail(fmt.Errorf("serve: mqtts listener: %w", err))
		}
	}
	if err := broker.Serve(); err != nil {
		broker.Close()
		return fail(fmt.Errorf("serve: mqtt serve: %w", err))
	}

	var in *ingester
	if opts.Store != nil {
		in = &ingester{log: log.With("component", "ingest"), store: opts.Store, obs: opts.Observer,
			queue: make(chan message, 4096), done: make(chan struct{})}
		if err := in.subscribe(broker); err != nil {
			broker.Close()
			httpLn.Close()
			return nil, fmt.Errorf("serve: ingest subscribe: %w", err)
		}
	}
	ingestCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{
		stopIngest: stopIngest,
		ingest:     in,
		log:        log,
		broker:     broker,
		httpLn:     httpLn,
		httpDone:   make(chan struct{}),
		stopWatch:  make(chan struct{}),
	}
	if mqttLn != nil {
		s.mqttAddr = mqttLn.Addr().String()
	}
	if mqttsLn != nil {
		s.mqttsAddr = mqttsLn.Addr().String()
		go hook.watchRevocations(crlInterval, s.stopWatch)
	}
	mux := http.NewServeMux()
	mux.Handle("/", Handler(opts.MetadataDir, opts.TargetsDir))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Status())
	})
	if opts.Store != nil {
		mux.Handle("GET /metrics", metrics.Handler(metrics.New(opts.Store, opts.MetricsDeviceCap, log.With("component", "metrics"))))
	}
	s.httpSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(s.httpDone)
		if err := s.httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	if in != nil {
		go in.run(ingestCtx)
	}
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.stopWatch:
		}
	}()
	if opts.Timestamp != nil {
		s.resignOnce(opts) // at once: the timestamp may be close to expiry
		s.resign.Add(1)
		go s.resignLoop(opts)
	}
	log.Info("serving", "mqtt", s.MQTTURL(), "mqtts", s.MQTTSURL(), "http", s.HTTPURL(),
		"metadata", opts.MetadataDir, "targets", opts.TargetsDir)
	return s, nil
}

// Status reports the last re-signing and the expiry warnings.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Warnings = append([]string(nil), st.Warnings...)
	return st
}

func (s *Server) resignLoop(opts Options) {
	defer s.resign.Done()
	t := time.NewTicker(opts.ResignEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopWatch:
			return
		case <-t.C:
			s.resignOnce(opts)
		}
	}
}

// resignOnce re-signs the timestamp and checks the other roles' expiry.
func (s *Server) resignOnce(opts Options) {
	var warnings []string
	err := opts.Timestamp.RefreshTimestamp()
	if err != nil {
		s.log.Error("re-signing the timestamp failed", "err", err)
		warnings = append(warnings, "re-signing the timestamp failed: "+err.Error())
	}
	exp, xerr := opts.Timestamp.Expires()
	if xerr != nil {
		s.log.Error("reading metadata expiry failed", "err", xerr)
		warnings = append(warnings, "reading metadata expiry failed: "+xerr.Error())
	}
	now := time.Now()
	for _, role := range []string{"root", "targets", "snapshot"} {
		at, ok := exp[role]
		if !ok || at.Sub(now) > opts.ExpiryWarn {
			continue
		}
		w := fmt.Sprintf("%s metadata expires at %s (in %s): publish it again", role, at.UTC().Format(time.RFC3339), at.Sub(now).Round(time.Second))
		if !at.After(now) {
			w = fmt.Sprintf("%s metadata expired at %s: devices refuse the repository until it is published again", role, at.UTC().Format(time.RFC3339))
		}
		s.log.Warn(w, "role", role, "expires", at)
		warnings = append(warnings, w)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.status.Resigned = now
		s.log.Info("timestamp re-signed", "expires", exp["timestamp"])
	}
	s.status.Expires = exp
	s.status.Warnings = warnings
}

// MQTTAddr is the broker's bound address, host:port.

// MQTTAddr is the plain listener's bound address, host:port; "" when
// there is none.
func (s *Server) MQTTAddr() string { return s.mqttAddr }

// MQTTURL is the plain listener's client URL, tcp://host:port; "" when
// there is none.
func (s *Server) MQTTURL() string {
	if s.mqttAddr == "" {
		return ""
	}
	return "tcp://" + s.mqttAddr
}

// MQTTSAddr is the TLS listener's bound address; "" when there is none.
func (s *Server) MQTTSAddr() string { return s.mqttsAddr }

// MQTTSURL is the TLS listener's client URL, ssl://host:port; "" when
// there is none.
func (s *Server) MQTTSURL() string {
	if s.mqttsAddr == "" {
		return ""
	}
	return "ssl://" + s.mqttsAddr
}

// HTTPURL is the repository server's base URL, http://host:port; metadata
// is under HTTPURL()+"/metadata/" and targets under HTTPURL()+"/targets/".
func (s *Server) HTTPURL() string { return "http://" + s.httpLn.Addr().String() }

// Close stops both services: the HTTP server finishes requests in flight
// (up to five seconds), the broker disconnects its clients. Calling it
// again returns the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopWatch)
		s.resign.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			s.closeErr = fmt.Errorf("serve: http shutdown: %w", err)
			s.httpSrv.Close()
		}
		<-s.httpDone
		if err := s.broker.Close(); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("serve: mqtt close: %w", err)
		}
		s.stopIngest()
		if s.ingest != nil {
			<-s.ingest.done
		}
		s.log.Info("stopped")
	})
	return s.closeErr
}

// Handler serves metadataDir under /metadata/ and targetsDir under
// /targets/, files only (no directory listings), with HTTP Range support.
// It never leaves either tree: a symlink that leads out of it is not
// followed (os.Root), and a file that holds a private key (a PEM private
// key, a TUF key file) is never served, however it got there.
func Handler(metadataDir, targetsDir string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metadata/", http.StripPrefix("/metadata/", filesOnly(metadataDir)))
	mux.Handle("GET /targets/", http.StripPrefix("/targets/", filesOnly(targetsDir)))
	return mux
}

// filesOnly serves regular files from the tree at dir and answers 404 for
// directories, so the server never lists the repository's layout.
func filesOnly(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		if name == "" || strings.HasSuffix(name, "/") {
			http.NotFound(w, r)
			return
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer root.Close()
		// os.Root refuses ".." and absolute paths, and symlinks that
		// resolve outside dir.
		f, err := root.Open(path.Clean("/" + name)[1:])
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() || holdsPrivateKey(f) {
			http.NotFound(w, r)
			return
		}
		// ServeContent handles Range, If-Range and HEAD.
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	})
}

// holdsPrivateKey sniffs the start of f for a PEM private key or a TUF
// key file with its private half, and rewinds f.
func holdsPrivateKey(f *os.File) bool {
	head := make([]byte, 1024)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return true
	}
	if bytes.Contains(head, []byte("PRIVATE KEY-----")) {
		return true
	}
	return bytes.Contains(head, []byte(`"keyval"`)) && bytes.Contains(head, []byte(`"private"`))
}

// ErrKeysServed: a directory holding private keys lies inside a tree
// serve would publish.
var ErrKeysServed = errors.New("serve: private keys inside a served directory")

// CheckPrivate refuses private directories (the repository's keys, the
// CA) that lie inside or are the served metadata or targets directory.
func CheckPrivate(served []string, private ...string) error {
	for _, p := range private {
		pr, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue // nothing there to leak
		}
		for _, s := range served {
			sr, err := filepath.EvalSymlinks(s)
			if err != nil {
				continue
			}
			if rel, err := filepath.Rel(sr, pr); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
				return fmt.Errorf("%w: %s is inside %s", ErrKeysServed, p, s)
			}
		}
	}
	return nil
}

// minLevel passes records at or above min to h.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

// Handle drops the broker's reports of connections closed under it (at
// shutdown every client's read fails with net.ErrClosed): not warnings.
func (m minLevel) Handle(ctx context.Context, r slog.Record) error {
	closed := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && errors.Is(err, net.ErrClosed) {
			closed = true
			return false
		}
		return true
	})
	if closed {
		return nil
	}
	return m.h.Handle(ctx, r)
}
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(a), min: m.min}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{h: m.h.WithGroup(n), min: m.min} }

// ErrNoInline: Publish needs a server started with a Store.
var ErrNoInline = errors.New("serve: publishing needs a server started with a store")

// Publish sends a message from the fleet itself through the broker (QoS
// 1), as the rollout controller notifies devices. It needs a Store in
// Options.
func (s *Server) Publish(topic string, payload []byte, retain bool) error {
	if s.ingest == nil {
		return ErrNoInline
	}
	return s.broker.Publish(topic, payload, retain, 1)
}

// serverTLS is the TLS listener's configuration: the broker's
// certificate, client certificates required and verified against the
// CA, and the hook's check (identity present, serial not revoked) in the
// handshake.
func serverTLS(opts Options, hook *fleetHook) (*tls.Config, error) {
	c, err := ca.LoadCertificate(filepath.Join(opts.CADir, ca.CertFile))
	if err != nil {
		return nil, fmt.Errorf("serve: CA: %w", err)
	}
	hook.revoked = &revocations{path: filepath.Join(opts.CADir, ca.CRLFile), ca: c}
	if _, _, err := hook.revoked.current(); err != nil {
		return nil, err
	}
	var cert tls.Certificate
	switch {
	case opts.ServerCert != "" || opts.ServerKey != "":
		if cert, err = tls.LoadX509KeyPair(opts.ServerCert, opts.ServerKey); err != nil {
			return nil, fmt.Errorf("serve: server certificate: %w", err)
		}
	default:
		auth, err := ca.Open(opts.CADir, ca.Options{})
		if err != nil {
			return nil, fmt.Errorf("serve: no --server-cert, and cannot issue one: %w", err)
		}
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if h, _, err := net.SplitHostPort(opts.MQTTSAddr); err == nil && h != "" {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				hosts = append(hosts, h)
			}
		}
		iss, err := auth.IssueServer("graft-fleet-serve", hosts, 0)
		if err != nil {
			return nil, fmt.Errorf("serve: server certificate: %w", err)
		}
		if cert, err = tls.X509KeyPair(iss.CertPEM, iss.KeyPEM); err != nil {
			return nil, fmt.Errorf("serve: server certificate: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		VerifyConnection: hook.verifyConnection,
	}, nil
}
