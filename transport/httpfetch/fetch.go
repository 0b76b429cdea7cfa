package httpfetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
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

// Client fetches with resume. The zero value is usable. A Client is safe
// for concurrent use if its HTTP client is.
type Client struct {
	HTTP   *http.Client // nil: http.DefaultClient
	Logger *slog.Logger // nil: discard
}

const bufSize = 32 << 10

// Fetch writes the bytes [offset, …) of url to w, at most maxLength-offset
// of them. It sends "Range: bytes=offset-" when offset > 0. On a 206 reply
// the Content-Range must start at offset; on a 200 reply (the server
// ignored Range) the first offset bytes are skipped. A 416 reply when
// offset == maxLength means the transfer is already complete.
//
// It returns nil when the source ends, at or before maxLength: the caller
// checks the length. Errors: ErrTooLong as soon as a byte past maxLength
// arrives; ErrInterrupted (after writing what arrived) when the network
// fails or ctx ends mid-way; *ErrStatus for another status; ErrBadRange;
// a write error from w is returned wrapped, as it is.
func (c *Client) Fetch(ctx context.Context, url string, offset, maxLength int64, w io.Writer) error {
	if offset < 0 || offset > maxLength {
		return fmt.Errorf("%w: offset %d, max length %d", ErrBadOffset, offset, maxLength)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
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
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: GET %s: %w", ErrInterrupted, url, err)
	}
	defer resp.Body.Close()

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
			n, err := io.CopyN(io.Discard, resp.Body, offset)
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
	return copyLimited(ctx, url, w, resp.Body, maxLength-offset)
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
