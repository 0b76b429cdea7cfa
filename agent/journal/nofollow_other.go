//go:build !unix

package journal

// oNoFollow: no such flag here.
const oNoFollow = 0
