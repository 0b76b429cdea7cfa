//go:build !unix

package tuf

// oNoFollow: no such flag here.
const oNoFollow = 0
