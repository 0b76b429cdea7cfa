//go:build unix

package tuf

import "syscall"

// oNoFollow makes opening a staging file that is a symlink fail (ELOOP).
const oNoFollow = syscall.O_NOFOLLOW
