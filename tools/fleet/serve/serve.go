package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// Default listen addresses: loopback only.
const (
	DefaultMQTTAddr = "127.0.0.1:1883"
	DefaultHTTPAddr = "127.0.0.1:8080"
)

// ErrNoDir is returned by Start when a repository directory is missing or
// is not a directory.
var ErrNoDir = errors.New("serve: repository directory missing")

// Options configure Start.
type Options struct {
	// MetadataDir holds the TUF metadata, served under /metadata/.
	MetadataDir string
	// TargetsDir holds the TUF target files, served under /targets/.
	TargetsDir string
	// MQTTAddr is the broker's TCP listen address; "" means
	// DefaultMQTTAddr. Port 0 picks a free port.
	MQTTAddr string
	// HTTPAddr is the repository server's listen address; "" means
	// DefaultHTTPAddr. Port 0 picks a free port.
	HTTPAddr string
	// Logger receives service logs; nil discards them. The broker's own
	// chatter is passed on from level Warn up.
	Logger *slog.Logger
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
	log      *slog.Logger
	broker   *mqtt.Server
	mqttAddr string
	httpLn   net.Listener
	httpSrv  *http.Server
	httpDone chan struct{}

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
	if opts.Timestamp != nil && opts.ResignEvery <= 0 {
		return nil, errors.New("serve: ResignEvery must be positive to re-sign the timestamp")
	}
	mqttAddr := opts.MQTTAddr
	if mqttAddr == "" {
		mqttAddr = DefaultMQTTAddr
	}
	httpAddr := opts.HTTPAddr
	if httpAddr == "" {
		httpAddr = DefaultHTTPAddr
	}

	mqttLn, err := net.Listen("tcp", mqttAddr)
	if err != nil {
		return nil, fmt.Errorf("serve: mqtt listen: %w", err)
	}
	httpLn, err := net.Listen("tcp", httpAddr)
	if err != nil {
		mqttLn.Close()
		return nil, fmt.Errorf("serve: http listen: %w", err)
	}

	broker := mqtt.New(&mqtt.Options{
		Logger: slog.New(minLevel{h: log.With("component", "mqtt").Handler(), min: slog.LevelWarn}),
	})
	// Open access: the listener is meant for loopback and bench networks.
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		mqttLn.Close()
		httpLn.Close()
		return nil, fmt.Errorf("serve: mqtt auth hook: %w", err)
	}
	if err := broker.AddListener(listeners.NewNet("tcp", mqttLn)); err != nil {
		mqttLn.Close()
		httpLn.Close()
		return nil, fmt.Errorf("serve: mqtt listener: %w", err)
	}
	if err := broker.Serve(); err != nil {
		broker.Close()
		httpLn.Close()
		return nil, fmt.Errorf("serve: mqtt serve: %w", err)
	}

	s := &Server{
		log:       log,
		broker:    broker,
		mqttAddr:  mqttLn.Addr().String(),
		httpLn:    httpLn,
		httpDone:  make(chan struct{}),
		stopWatch: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.Handle("/", Handler(opts.MetadataDir, opts.TargetsDir))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Status())
	})
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
	log.Info("serving", "mqtt", s.MQTTURL(), "http", s.HTTPURL(),
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
func (s *Server) MQTTAddr() string { return s.mqttAddr }

// MQTTURL is the broker's address as a client URL, tcp://host:port.
func (s *Server) MQTTURL() string { return "tcp://" + s.mqttAddr }

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
		s.log.Info("stopped")
	})
	return s.closeErr
}

// Handler serves metadataDir under /metadata/ and targetsDir under
// /targets/, files only (no directory listings), with HTTP Range support.
func Handler(metadataDir, targetsDir string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metadata/", http.StripPrefix("/metadata/", filesOnly(http.Dir(metadataDir))))
	mux.Handle("GET /targets/", http.StripPrefix("/targets/", filesOnly(http.Dir(targetsDir))))
	return mux
}

// filesOnly serves regular files from root and answers 404 for
// directories, so the server never lists the repository's layout.
func filesOnly(root http.Dir) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		if name == "" || strings.HasSuffix(name, "/") {
			http.NotFound(w, r)
			return
		}
		f, err := root.Open(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		// ServeContent handles Range, If-Range and HEAD.
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	})
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
