package serve

import (
	"context"
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

	"github.com/graft-dev/graft/tools/fleet/metrics"
	"github.com/graft-dev/graft/tools/fleet/store"
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

	ingest     *ingester // nil without a store
	stopIngest context.CancelFunc

	closeOnce sync.Once
	closeErr  error
	stopWatch chan struct{}
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
		Logger:       slog.New(minLevel{h: log.With("component", "mqtt").Handler(), min: slog.LevelWarn}),
		InlineClient: opts.Store != nil,
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
		mqttAddr:   mqttLn.Addr().String(),
		httpLn:     httpLn,
		httpDone:   make(chan struct{}),
		stopWatch:  make(chan struct{}),
	}
	handler := Handler(opts.MetadataDir, opts.TargetsDir)
	if opts.Store != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler(metrics.New(opts.Store, opts.MetricsDeviceCap, log.With("component", "metrics"))))
		mux.Handle("/", handler)
		handler = mux
	}
	s.httpSrv = &http.Server{
		Handler:           handler,
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
	log.Info("serving", "mqtt", s.MQTTURL(), "http", s.HTTPURL(),
		"metadata", opts.MetadataDir, "targets", opts.TargetsDir)
	return s, nil
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
