//go:build unix

package journal

import "syscall"

// oNoFollow: opening a journal that is a symlink fails (ELOOP).
const oNoFollow = syscall.O_NOFOLLOW
