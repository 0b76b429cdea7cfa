package config

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrSyntax means a line is neither a comment, a [section] header nor
	// a "key = value" pair, or the file is too large.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownKey means a section or key the format does not define.
	ErrUnknownKey = errors.New("unknown key")
	// ErrDuplicateKey means a key that may appear once appears again.
	ErrDuplicateKey = errors.New("key given twice")
	// ErrBadValue means a value that does not fit its key.
	ErrBadValue = errors.New("bad value")
	// ErrMissingKey means a required key is absent.
	ErrMissingKey = errors.New("missing required key")
)

// Error is a problem at one place of a config file. Err wraps one of the
// sentinel errors above.
type Error struct {
	File string // file name as given to Parse or Load; "" for Validate
	Line int    // 1-based line; 0 when the problem is the absence of a key
	Key  string // "section.key" (or the section name for an unknown section); "" for a syntax error
	Err  error
}

func (e *Error) Error() string {
	var sb strings.Builder
	if e.File != "" {
		sb.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&sb, ":%d", e.Line)
		}
		sb.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&sb, "line %d: ", e.Line)
	}
	if e.Key != "" {
		sb.WriteString(e.Key)
		sb.WriteString(": ")
	}
	sb.WriteString(e.Err.Error())
	return sb.String()
}

func (e *Error) Unwrap() error { return e.Err }

// bad builds an ErrBadValue saying which check failed.
func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadValue, fmt.Sprintf(format, args...))
}
