package tuf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// metaFetcher adapts a Fetcher to go-tuf's fetcher.Fetcher for metadata
// files. It binds the context of one Refresh, speaks go-tuf's error types
// (a missing N.root.json must be an HTTP 404 to end the root walk).
type metaFetcher struct {
	ctx context.Context
	f   Fetcher
	// dir is set for a repository in a local directory: go-tuf escapes
	// role names in the URLs it builds (url.PathEscape: "/" is %2F), and
	// the file is where a web server would map the escaped name back to.
	dir string
}

var _ fetcher.Fetcher = (*metaFetcher)(nil)

// DownloadFile implements fetcher.Fetcher.
func (m *metaFetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	buf := &capped{max: maxLength}
	if m.dir != "" {
		p, err := localMetaPath(m.dir, u)
		if err != nil {
			return nil, fmt.Errorf("%w: %w: %w", ErrTransfer, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u}, err)
		}
		u = p
	}
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

// localMetaPath maps a URL go-tuf built under dir (dir + "/" + escaped
// name) to a file path: unescaped, and refused if it leaves dir.
func localMetaPath(dir, u string) (string, error) {
	rel, ok := strings.CutPrefix(u, strings.TrimSuffix(dir, "/")+"/")
	if !ok {
		return "", fmt.Errorf("tuf: %s is not under %s", u, dir)
	}
	name, err := url.PathUnescape(rel)
	if err != nil {
		return "", fmt.Errorf("tuf: %s: %w", u, err)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("tuf: metadata name %q leaves the repository", name)
		}
	}
	return filepath.Join(dir, filepath.FromSlash(name)), nil
}
