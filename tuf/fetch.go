package tuf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Fetcher streams the bytes [offset, maxLength) of url into w.
//
// It stops at maxLength or at the end of the source, whichever comes first,
// and returns nil when the source simply ends early: the client checks the
// length itself. The client asks for one byte more than a target's signed
// length, so a source that is too long shows up as that extra byte. An
// error returned by w must abort the fetch and be returned (wrapped is
// fine). Any other error is a transfer error to the client.
type Fetcher interface {
	Fetch(ctx context.Context, url string, offset, maxLength int64, w io.Writer) error
}

// HTTPStatusError is returned by HTTPFetcher for a response status other
// than 200 or 206.
type HTTPStatusError struct {
	URL        string
	StatusCode int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("tuf: GET %s: HTTP status %d", e.URL, e.StatusCode)
}

// HTTPFetcher is the built-in Fetcher for http and https URLs: a plain GET,
// with "Range: bytes=offset-" when offset > 0. A 206 reply must start at
// offset; a 200 reply (server ignored the range) has its first offset bytes
// skipped. It does not retry; the agent plugs in its resumable fetcher for
// that.
type HTTPFetcher struct {
	// Client is used for the requests; nil means http.DefaultClient.
	Client *http.Client
}

var _ Fetcher = HTTPFetcher{}

// Fetch implements Fetcher.
func (f HTTPFetcher) Fetch(ctx context.Context, rawURL string, offset, maxLength int64, w io.Writer) error {
	if offset < 0 || offset >= maxLength {
		return nil
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("tuf: GET %s: %w", rawURL, err)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("tuf: GET %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if offset > 0 {
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				return fmt.Errorf("tuf: GET %s: skipping to offset %d of a full reply: %w", rawURL, offset, err)
			}
		}
	case http.StatusPartialContent:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("tuf: GET %s: %w", rawURL, err)
		}
		if start != offset {
			return fmt.Errorf("tuf: GET %s: Content-Range starts at %d, asked for %d", rawURL, start, offset)
		}
	default:
		return &HTTPStatusError{URL: rawURL, StatusCode: resp.StatusCode}
	}
	if _, err := io.Copy(w, io.LimitReader(resp.Body, maxLength-offset)); err != nil {
		return fmt.Errorf("tuf: GET %s: %w", rawURL, err)
	}
	return nil
}

// contentRangeStart parses the first byte position of "bytes start-end/size".
func contentRangeStart(h string) (int64, error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, fmt.Errorf("unusable Content-Range %q", h)
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("unusable Content-Range %q", h)
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("unusable Content-Range %q", h)
	}
	return n, nil
}

// DirFetcher is the built-in Fetcher for a repository in a local directory
// (an update from a USB stick): url is a plain path or a file:// URL.
// A missing file is reported with an error wrapping fs.ErrNotExist.
type DirFetcher struct{}

var _ Fetcher = DirFetcher{}

// Fetch implements Fetcher.
func (DirFetcher) Fetch(ctx context.Context, loc string, offset, maxLength int64, w io.Writer) error {
	if offset < 0 || offset >= maxLength {
		return nil
	}
	p, err := localPath(loc)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("tuf: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return fmt.Errorf("tuf: %w", err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("tuf: %s is not a regular file", p)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("tuf: seek %s: %w", p, err)
	}
	r := io.LimitReader(ctxReader{ctx: ctx, r: f}, maxLength-offset)
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("tuf: read %s: %w", p, err)
	}
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// location is a parsed repository address: an http(s) base URL or a local
// directory.
type location struct {
	base  string // http(s) URL without trailing slash, or a clean directory path
	local bool
}

// parseLocation accepts http://, https://, file:// and plain paths.
func parseLocation(field, s string) (location, error) {
	if s == "" {
		return location{}, fmt.Errorf("%w: %s is empty", ErrInvalidConfig, field)
	}
	if !strings.Contains(s, "://") {
		return location{base: filepath.Clean(s), local: true}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return location{}, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, field, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return location{}, fmt.Errorf("%w: %s %q has no host", ErrInvalidConfig, field, s)
		}
		return location{base: strings.TrimSuffix(s, "/")}, nil
	case "file":
		p, err := localPath(s)
		if err != nil {
			return location{}, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, field, err)
		}
		return location{base: filepath.Clean(p), local: true}, nil
	default:
		return location{}, fmt.Errorf("%w: %s %q: scheme must be http, https or file", ErrInvalidConfig, field, s)
	}
}

// localPath turns a plain path or a file:// URL into a path.
func localPath(s string) (string, error) {
	if !strings.HasPrefix(s, "file://") {
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("tuf: %w", err)
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("tuf: file URL %q names a remote host", s)
	}
	if u.Path == "" {
		return "", errors.New("tuf: file URL has no path")
	}
	return u.Path, nil
}

// join adds a clean relative slash-separated path to the location,
// escaping each segment for URLs.
func (l location) join(rel string) string {
	if l.local {
		return filepath.Join(l.base, filepath.FromSlash(rel))
	}
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return l.base + "/" + strings.Join(segs, "/")
}
