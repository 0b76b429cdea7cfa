//go:build !linux

package slot

import "os"

// dropCache is a no-op where posix_fadvise is not available; the read-back
// may then be served from the page cache.
func dropCache(f *os.File, size int64) {}
