package boards

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrUnknownBoard means no board of that name is defined.
	ErrUnknownBoard = errors.New("unknown board")
	// ErrNoMatch means no board lists any of the device's compatible
	// strings (Detect) or os-release IDs (DetectOS).
	ErrNoMatch = errors.New("no board matches this device")
	// ErrAmbiguous means several boards match the device tree equally well
	// and the running architecture does not pick one.
	ErrAmbiguous = errors.New("several boards match the device tree")
	// ErrUnknownGroup means the board has no slot group of that name.
	ErrUnknownGroup = errors.New("unknown slot group")
	// ErrInvalid is matched by every error about a bad board or board file.
	ErrInvalid = errors.New("invalid board")

	// The causes below are always wrapped in a *FieldError, which also
	// matches ErrInvalid.

	// ErrSyntax means the board file is not well-formed JSON.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownField means a key the format does not define.
	ErrUnknownField = errors.New("unknown field")
	// ErrDuplicateField means a key appears twice in one object.
	ErrDuplicateField = errors.New("field given twice")
	// ErrWrongType means a value of the wrong JSON type.
	ErrWrongType = errors.New("wrong type")
	// ErrMissing means a required field is absent or empty.
	ErrMissing = errors.New("required")
)

// FieldError reports a problem with one field of a board or board file.
// It matches ErrInvalid and its cause Err with errors.Is.
type FieldError struct {
	File  string // board file, "" for a board built in code
	Line  int    // 1-based line in File, 0 if unknown
	Board string // board name, "" if not known yet
	Field string // dotted path, e.g. "bootloader.kind" or "slots.rootfs.B"; "" for the whole file
	Err   error  // the cause
}

func (e *FieldError) Error() string {
	var sb strings.Builder
	if e.File != "" {
		sb.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&sb, ":%d", e.Line)
		}
		sb.WriteString(": ")
	}
	if e.Board != "" {
		fmt.Fprintf(&sb, "board %q: ", e.Board)
	}
	if e.Field != "" {
		sb.WriteString(e.Field)
		sb.WriteString(": ")
	}
	sb.WriteString(e.Err.Error())
	return sb.String()
}

// Unwrap returns ErrInvalid and the cause.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// fieldErr builds a FieldError whose cause says which check failed.
func fieldErr(board, field string, format string, args ...any) *FieldError {
	return &FieldError{Board: board, Field: field, Err: fmt.Errorf(format, args...)}
}
