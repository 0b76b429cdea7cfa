package httpfetch

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fast are timeouts short enough for tests; the test's context (guard)
// is what a fetch without them would run into.
var fast = Timeouts{Connect: time.Second, Handshake: time.Second, Header: 300 * time.Millisecond,
	Stall: 300 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, Attempts: 6}

const guard = 20 * time.Second

func guarded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	t.Cleanup(cancel)
	return ctx
}

// silentThenServe accepts connections and, for the first silent ones,
// reads the request and never answers; later connections are served by h.
// It records the Range header of every request h sees.
type silentThenServe struct {
	l      net.Listener
	silent int32
	conns  atomic.Int32
	mu     sync.Mutex
	ranges []string
	held   []net.Conn
}

func newSilentThenServe(t *testing.T, silent int, data []byte) *silentThenServe {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentThenServe{l: l, silent: int32(silent)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})}
	conns := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(conns)
				return
			}
			if s.conns.Add(1) <= s.silent {
				s.mu.Lock()
				s.held = append(s.held, c) // accept, read nothing, say nothing
				s.mu.Unlock()
				continue
			}
			conns <- c
		}
	}()
	go srv.Serve(&chanListener{Listener: l, c: conns})
	t.Cleanup(func() {
		srv.Close()
		s.mu.Lock()
		for _, c := range s.held {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func (s *silentThenServe) URL() string { return "http://" + s.l.Addr().String() + "/blob" }

// chanListener hands http.Server the connections the test lets through.
type chanListener struct {
	net.Listener
	c chan net.Conn
}

func (l *chanListener) Accept() (net.Conn, error) {
	c, ok := <-l.c
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}

// A server that accepts and never answers used to hold the download
// forever (no header timeout): now the request times out, is made again,
// and completes once the server answers.
func TestSilentServerRetriedUntilItAnswers(t *testing.T) {
	data := content(300_000)
	srv := newSilentThenServe(t, 2, data)
	var got bytes.Buffer
	c := &Client{Timeouts: fast}
	if err := c.Fetch(guarded(t), srv.URL(), 0, int64(len(data)), &got); err != nil {
		t.Fatalf("fetch from a server silent for 2 connections: %v", err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("downloaded bytes differ")
	}
	if n := srv.conns.Load(); n < 3 {
		t.Fatalf("%d connections, want the 2 silent ones and a third", n)
	}
}

// A server that sends headers and part of the body, then stalls, used to
// hold the download forever: now the stall is detected, and the fetch
// resumes from the offset reached with a Range request.
func TestStalledBodyResumesFromOffset(t *testing.T) {
	data := content(500_000)
	const sent = 123_000
	var calls atomic.Int32
	var ranges []string
	var mu sync.Mutex
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:sent])
			http.NewResponseController(w).Flush()
			<-r.Context().Done() // stall until the client gives up
			return
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	var got bytes.Buffer
	c := &Client{Timeouts: fast}
	if err := c.Fetch(guarded(t), "http://"+l.Addr().String()+"/blob", 0, int64(len(data)), &got); err != nil {
		t.Fatalf("fetch from a server that stalled mid-body: %v", err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("downloaded bytes differ")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 2 || ranges[1] != "bytes="+strconv.Itoa(sent)+"-" {
		t.Fatalf("requests with Range %q, want a first one and a resume from %d", ranges, sent)
	}
}

// A server that always stalls: Fetch gives up after Attempts requests with
// ErrInterrupted and ErrStalled, having written what arrived.
func TestAlwaysStalledGivesUp(t *testing.T) {
	data := content(100_000)
	var calls atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-r.Context().Done()
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	to := fast
	to.Attempts = 3
	err = (&Client{Timeouts: to}).Fetch(guarded(t), "http://"+l.Addr().String()+"/", 0, int64(len(data)), &bytes.Buffer{})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("error %v, want ErrInterrupted", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d requests, want 3 (Attempts)", n)
	}
}

// A server that trickles a byte now and then never stalls, but the fetch
// as a whole is bounded by its length: it ends with ErrDeadline.
func TestTrickleHitsOverallBound(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		rc := http.NewResponseController(w)
		for {
			if _, err := w.Write([]byte{'x'}); err != nil {
				return
			}
			rc.Flush()
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	to := fast
	to.Base, to.MinRate = time.Second, 1<<30 // about one second for the whole fetch
	var got bytes.Buffer
	err = (&Client{Timeouts: to}).Fetch(guarded(t), "http://"+l.Addr().String()+"/", 0, 1_000_000, &got)
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, ErrDeadline) {
		t.Fatalf("error %v, want ErrInterrupted and ErrDeadline", err)
	}
	if got.Len() == 0 {
		t.Fatal("nothing written of what arrived")
	}
}

func TestTimeoutsBoundGrowsWithLength(t *testing.T) {
	d := DefaultTimeouts
	if d.bound(0) != d.Base || d.bound(1<<30) <= d.bound(1<<20) {
		t.Fatalf("bound(0)=%v bound(1MiB)=%v bound(1GiB)=%v", d.bound(0), d.bound(1<<20), d.bound(1<<30))
	}
}
