package tuf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// metaFetcher adapts a Fetcher to go-tuf's fetcher.Fetcher for metadata
// files. It binds the context of one Refresh, speaks go-tuf's error types
// (a missing N.root.json must be an HTTP 404 to end the root walk), and
// remembers the timestamp bytes it fetched.
type metaFetcher struct {
	ctx       context.Context
	f         Fetcher
	timestamp string // URL of timestamp.json
	gotTS     []byte // bytes fetched from timestamp, if any
}

var _ fetcher.Fetcher = (*metaFetcher)(nil)

// DownloadFile implements fetcher.Fetcher.
func (m *metaFetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	buf := &capped{max: maxLength}
	err := m.f.Fetch(m.ctx, u, 0, maxLength+1, buf)
	if buf.over {
		return nil, fmt.Errorf("%w: %w", ErrLength, &metadata.ErrDownloadLengthMismatch{
			Msg: fmt.Sprintf("%s is longer than %d bytes", u, maxLength)})
	}
	if err != nil {
		var se *HTTPStatusError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("%w: %w: %w", ErrTransfer, &metadata.ErrDownloadHTTP{StatusCode: se.StatusCode, URL: u}, err)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%w: %w: %w", ErrTransfer, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u}, err)
		}
		return nil, fmt.Errorf("%w: %w: %w", ErrTransfer, &metadata.ErrDownload{Msg: u}, err)
	}
	return buf.b.Bytes(), nil
}

// capped is an in-memory writer that refuses to grow past max bytes.
type capped struct {
	b    bytes.Buffer
	max  int64
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if int64(c.b.Len())+int64(len(p)) > c.max {
		c.over = true
		return 0, ErrLength
	}
	return c.b.Write(p)
}
