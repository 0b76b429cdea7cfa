package httpfetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrInterrupted: the transfer failed on the network, before or during
	// the body. Whatever arrived was written; fetch again from the new
	// offset.
	ErrInterrupted = errors.New("httpfetch: transfer interrupted")
	// ErrTooLong: the source holds more than maxLength bytes. The bytes up
	// to maxLength were written.
	ErrTooLong = errors.New("httpfetch: source longer than allowed")
	// ErrBadRange: the server's reply does not start at the asked offset
	// (wrong Content-Range, or a full reply shorter than the offset).
	ErrBadRange = errors.New("httpfetch: reply does not match the asked range")
	// ErrBadOffset: offset is negative or past maxLength.
	ErrBadOffset = errors.New("httpfetch: offset out of bounds")
	// ErrStalled: the server sent nothing for StallTimeout (no response
	// headers, or no body bytes). It comes wrapped in ErrInterrupted.
	ErrStalled = errors.New("httpfetch: server stalled")
	// ErrDeadline: the fetch took longer than its overall bound (Timeouts.
	// Base plus the length at MinRate). It comes wrapped in ErrInterrupted.
	ErrDeadline = errors.New("httpfetch: overall time bound exceeded")
)

// ErrStatus is the error for a reply whose status is not 200, 206, or a
// 416 that means "already complete".
type ErrStatus struct {
	Code int    // HTTP status code
	URL  string // the URL fetched
}

func (e *ErrStatus) Error() string {
	return fmt.Sprintf("httpfetch: GET %s: HTTP status %d %s", e.URL, e.Code, http.StatusText(e.Code))
}

// Client fetches with resume. The zero value is usable, with
// DefaultTimeouts. A Client is safe for concurrent use if its HTTP client
// is.
type Client struct {
	// HTTP is the client for the requests; nil means one built by
	// NewHTTPClient(Timeouts). A client given here keeps its own connect,
	// handshake and header timeouts; the stall timeout, the overall bound
	// and the retries apply to it too.
	HTTP     *http.Client
	Timeouts Timeouts     // zero fields take DefaultTimeouts' values
	Logger   *slog.Logger // nil: discard

	once sync.Once
	hc   *http.Client
}

// Timeouts bound every wait of a fetch.
type Timeouts struct {
	Connect   time.Duration // TCP connect
	Handshake time.Duration // TLS handshake
	Header    time.Duration // from the request sent to the response headers
	// Stall: the longest time without a single body byte; past it the
	// connection is cut and the fetch resumes from where it stopped.
	Stall time.Duration
	// Base plus the bytes still to come at MinRate bytes per second is the
	// overall bound of one Fetch, retries included.
	Base    time.Duration
	MinRate int64
	// Attempts is how many requests one Fetch makes before it gives up on
	// a network that keeps failing; RetryMin and RetryMax bound the
	// jittered, doubling pause between them.
	Attempts           int
	RetryMin, RetryMax time.Duration
}

// DefaultTimeouts suit a device on a slow, unreliable link: a 1 GiB image
// at the lowest rate allowed (32 KiB/s) may take 9 hours, never forever.
var DefaultTimeouts = Timeouts{
	Connect:   30 * time.Second,
	Handshake: 30 * time.Second,
	Header:    60 * time.Second,
	Stall:     60 * time.Second,
	Base:      5 * time.Minute,
	MinRate:   32 << 10,
	Attempts:  5,
	RetryMin:  time.Second,
	RetryMax:  30 * time.Second,
}

// withDefaults fills zero fields from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	pick := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&t.Connect, d.Connect)
	pick(&t.Handshake, d.Handshake)
	pick(&t.Header, d.Header)
	pick(&t.Stall, d.Stall)
	pick(&t.Base, d.Base)
	pick(&t.RetryMin, d.RetryMin)
	pick(&t.RetryMax, d.RetryMax)
	if t.MinRate <= 0 {
		t.MinRate = d.MinRate
	}
	if t.Attempts <= 0 {
		t.Attempts = d.Attempts
	}
	return t
}

// bound is the overall time one fetch of n bytes may take.
func (t Timeouts) bound(n int64) time.Duration {
	return t.Base + time.Duration(float64(n)/float64(t.MinRate)*float64(time.Second))
}

// NewHTTPClient returns an HTTP client with t's connect, TLS handshake and
// response header timeouts (zero fields: DefaultTimeouts), proxies from
// the environment, and no overall timeout (Fetch bounds each fetch by its
// length).
func NewHTTPClient(t Timeouts) *http.Client {
	t = t.withDefaults()
	d := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   t.Handshake,
		ResponseHeaderTimeout: t.Header,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          4,
		ForceAttemptHTTP2:     true,
	}}
}

func (c *Client) client() *http.Client {
	c.once.Do(func() {
		c.hc = c.HTTP
		if c.hc == nil {
			c.hc = NewHTTPClient(c.Timeouts)
		}
	})
	return c.hc
}

const bufSize = 32 << 10

// Fetch writes the bytes [offset, …) of url to w, at most maxLength-offset
// of them, as fetchOnce does; a transfer the network cuts (ErrInterrupted,
// ErrStalled included) or a 5xx reply is fetched again from the offset
// reached, after a jittered back-off, up to Timeouts.Attempts requests,
// all within the overall bound for maxLength-offset bytes. Whatever
// arrived was written when it returns.
func (c *Client) Fetch(ctx context.Context, url string, offset, maxLength int64, w io.Writer) error {
	if offset < 0 || offset > maxLength {
		return fmt.Errorf("%w: offset %d, max length %d", ErrBadOffset, offset, maxLength)
	}
	t := c.Timeouts.withDefaults()
	ctx, cancel := context.WithDeadlineCause(ctx, time.Now().Add(t.bound(maxLength-offset)), ErrDeadline)
	defer cancel()
	cw := &countingWriter{w: w}
	pause := t.RetryMin
	for attempt := 1; ; attempt++ {
		err := c.fetchOnce(ctx, t, url, offset+cw.n, maxLength, cw)
		if !retryable(err) || attempt >= t.Attempts || ctx.Err() != nil {
			return err
		}
		pause = min(pause, t.RetryMax)
		d := pause/2 + time.Duration(rand.Int64N(int64(pause/2)+1))
		c.logger().Warn("download interrupted; resuming", "url", url, "offset", offset+cw.n, "attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return interrupted(ctx, url, err)
		}
		pause *= 2
	}
}

// retryable: the network cut the transfer, or the server had a passing
// failure (5xx).
func retryable(err error) bool {
	var se *ErrStatus
	return errors.Is(err, ErrInterrupted) || errors.As(err, &se) && se.Code >= 500
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// fetchOnce makes one request for the bytes [offset, …) of url. It sends "Range: bytes=offset-" when offset > 0. On a 206 reply
// the Content-Range must start at offset; on a 200 reply (the server
// ignored Range) the first offset bytes are skipped. A 416 reply when
// offset == maxLength means the transfer is already complete.
//
// It returns nil when the source ends, at or before maxLength: the caller
// checks the length. Errors: ErrTooLong as soon as a byte past maxLength
// arrives; ErrInterrupted (after writing what arrived) when the network
// fails or ctx ends mid-way; *ErrStatus for another status; ErrBadRange;
// a write error from w is returned wrapped, as it is.
func (c *Client) fetchOnce(ctx context.Context, t Timeouts, url string, offset, maxLength int64, w io.Writer) error {
	log := c.logger()
	// The watchdog cuts the request when neither headers nor body bytes
	// came for t.Stall.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dog := time.AfterFunc(t.Stall, func() { cancel(ErrStalled) })
	defer dog.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("httpfetch: GET %s: %w", url, err)
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	// Offsets count the bytes of the resource itself: no transparent
	// decompression.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := c.client().Do(req)
	if err != nil {
		return interrupted(ctx, url, err)
	}
	defer resp.Body.Close()
	dog.Reset(t.Stall)
	body := &watchedReader{r: resp.Body, dog: dog, stall: t.Stall}

	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("%w: GET %s: %w", ErrBadRange, url, err)
		}
		if start != offset {
			return fmt.Errorf("%w: GET %s: Content-Range starts at %d, asked for %d", ErrBadRange, url, start, offset)
		}
		if offset > 0 {
			log.Debug("resuming download", "url", url, "offset", offset)
		}
	case http.StatusOK:
		if offset > 0 {
			log.Debug("server ignored Range; skipping to offset", "url", url, "offset", offset)
			n, err := io.CopyN(io.Discard, body, offset)
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: GET %s: full reply is %d bytes, shorter than offset %d", ErrBadRange, url, n, offset)
			}
			if err != nil {
				return interrupted(ctx, url, err)
			}
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if offset == maxLength {
			return nil
		}
		return &ErrStatus{Code: resp.StatusCode, URL: url}
	default:
		return &ErrStatus{Code: resp.StatusCode, URL: url}
	}
	return copyLimited(ctx, url, w, body, maxLength-offset)
}

// watchedReader puts the stall watchdog off at every byte that arrives.
type watchedReader struct {
	r     io.Reader
	dog   *time.Timer
	stall time.Duration
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.dog.Reset(w.stall)
	}
	return n, err
}

// copyLimited copies body to w, refusing a byte past limit. It reads at
// most one buffer beyond what it may write.
func copyLimited(ctx context.Context, url string, w io.Writer, body io.Reader, limit int64) error {
	buf := make([]byte, bufSize)
	var written int64
	for {
		want := min(int64(len(buf)), limit-written+1)
		n, rerr := body.Read(buf[:want])
		if n > 0 {
			over := written+int64(n) > limit
			if over {
				n = int(limit - written)
			}
			if n > 0 {
				if _, err := w.Write(buf[:n]); err != nil {
					return fmt.Errorf("httpfetch: GET %s: write: %w", url, err)
				}
				written += int64(n)
			}
			if over {
				return fmt.Errorf("%w: GET %s: more than %d bytes", ErrTooLong, url, limit)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return interrupted(ctx, url, rerr)
		}
	}
}

func interrupted(ctx context.Context, url string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		if cause := context.Cause(ctx); cause != nil && cause != cerr {
			return fmt.Errorf("%w: GET %s: %w (%w)", ErrInterrupted, url, cause, cerr)
		}
		return fmt.Errorf("%w: GET %s: %w", ErrInterrupted, url, cerr)
	}
	return fmt.Errorf("%w: GET %s: %w", ErrInterrupted, url, err)
}

// contentRangeStart parses the first byte position of
// "bytes first-last/complete".
func contentRangeStart(h string) (int64, error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, fmt.Errorf("Content-Range %q is not a byte range", h)
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("Content-Range %q has no first-last", h)
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("Content-Range %q has no valid first byte", h)
	}
	return n, nil
}
