package httpfetch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fetcher is the interface package tuf declares; Client must satisfy it.
type fetcher interface {
	Fetch(ctx context.Context, url string, offset, maxLength int64, w io.Writer) error
}

var _ fetcher = (*Client)(nil)

func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

// rangeServer serves data with full Range support and records the Range
// headers it saw.
func rangeServer(t *testing.T, data []byte, ranges *[]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ranges != nil {
			*ranges = append(*ranges, r.Header.Get("Range"))
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetch(t *testing.T) {
	data := content(100_000)
	full := int64(len(data))
	ignoreRange := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	}))
	t.Cleanup(ignoreRange.Close)
	wrongRange := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-99999/100000")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data)
	}))
	t.Cleanup(wrongRange.Close)
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	var ranges []string
	srv := rangeServer(t, data, &ranges)

	tests := []struct {
		name      string
		url       string
		offset    int64
		maxLength int64
		want      []byte // bytes written
		err       error
		status    int // for *ErrStatus
	}{
		{name: "whole", url: srv.URL, maxLength: full, want: data},
		{name: "whole with room to spare", url: srv.URL, maxLength: full + 1, want: data},
		{name: "resume 206", url: srv.URL, offset: 40_000, maxLength: full, want: data[40_000:]},
		{name: "server ignores Range", url: ignoreRange.URL, offset: 40_000, maxLength: full, want: data[40_000:]},
		{name: "already complete 416", url: srv.URL, offset: full, maxLength: full, want: nil},
		{name: "too long", url: srv.URL, maxLength: full - 10, want: data[:full-10], err: ErrTooLong},
		{name: "too long ignoring Range", url: ignoreRange.URL, offset: 10, maxLength: full - 1, want: data[10 : full-1], err: ErrTooLong},
		{name: "too long from offset", url: srv.URL, offset: 99_990, maxLength: 99_995, want: data[99_990:99_995], err: ErrTooLong},
		{name: "wrong Content-Range", url: wrongRange.URL, offset: 5, maxLength: full, err: ErrBadRange},
		{name: "full reply shorter than offset", url: ignoreRange.URL, offset: full + 5, maxLength: full + 10, err: ErrBadRange},
		{name: "404", url: notFound.URL, maxLength: full, status: http.StatusNotFound},
		{name: "416 not complete", url: srv.URL, offset: full + 5, maxLength: full + 10, status: http.StatusRequestedRangeNotSatisfiable},
		{name: "negative offset", url: srv.URL, offset: -1, maxLength: full, err: ErrBadOffset},
		{name: "offset past max", url: srv.URL, offset: 11, maxLength: 10, err: ErrBadOffset},
	}
	c := &Client{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := c.Fetch(t.Context(), tt.url, tt.offset, tt.maxLength, &buf)
			switch {
			case tt.status != 0:
				var se *ErrStatus
				if !errors.As(err, &se) || se.Code != tt.status {
					t.Fatalf("error %v, want ErrStatus %d", err, tt.status)
				}
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
			case err != nil:
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), tt.want) {
				t.Fatalf("wrote %d bytes, want %d (or different content)", buf.Len(), len(tt.want))
			}
		})
	}
	for _, r := range ranges {
		if r != "" && !strings.HasPrefix(r, "bytes=") {
			t.Errorf("sent Range %q", r)
		}
	}
	if ranges[0] != "" || ranges[2] != "bytes=40000-" {
		t.Errorf("Range headers %q: want none for offset 0, bytes=40000- for the resume", ranges)
	}
}

// cutServer sends headers promising all of data, then only its first cut
// bytes, then drops the connection.
func cutServer(t *testing.T, data []byte, cut int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(data)) + "\r\n\r\n")
		rw.Write(data[:cut])
		rw.Flush()
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestInterruptedThenResume(t *testing.T) {
	data := content(200_000)
	const cut = 123_457
	c := &Client{Timeouts: Timeouts{Attempts: 1}} // one request: see the cut
	var got bytes.Buffer
	err := c.Fetch(t.Context(), cutServer(t, data, cut).URL, 0, int64(len(data)), &got)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("cut transfer: %v, want ErrInterrupted", err)
	}
	if got.Len() != cut {
		t.Fatalf("wrote %d bytes before the cut, want %d", got.Len(), cut)
	}
	// Resume from what was written, as a caller journalling the offset does.
	err = c.Fetch(t.Context(), rangeServer(t, data, nil).URL, int64(got.Len()), int64(len(data)), &got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("resumed download differs from the source")
	}
}

// cancelWriter cancels the context once the first bytes arrive.
type cancelWriter struct {
	bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.cancel()
	return w.Buffer.Write(p)
}

func TestContextCancelledMidTransfer(t *testing.T) {
	data := content(1 << 20)
	// A server that sends a first chunk, then waits for the client to go.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:1000])
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(t.Context())
	w := &cancelWriter{cancel: cancel}
	err := (&Client{}).Fetch(ctx, srv.URL, 0, int64(len(data)), w)
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want ErrInterrupted and context.Canceled", err)
	}
	if w.Len() != 1000 {
		t.Fatalf("wrote %d bytes, want the 1000 that arrived", w.Len())
	}
}

type failWriter struct{}

var errDiskFull = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestWriterErrorIsNotInterrupted(t *testing.T) {
	srv := rangeServer(t, content(1000), nil)
	err := (&Client{}).Fetch(t.Context(), srv.URL, 0, 1000, failWriter{})
	if !errors.Is(err, errDiskFull) || errors.Is(err, ErrInterrupted) {
		t.Fatalf("error %v, want the writer's error and not ErrInterrupted", err)
	}
}

func TestConnectionRefusedIsInterrupted(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	err := (&Client{Timeouts: Timeouts{Attempts: 2, RetryMin: time.Millisecond}}).Fetch(t.Context(), url, 0, 10, io.Discard)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("error %v, want ErrInterrupted", err)
	}
}
