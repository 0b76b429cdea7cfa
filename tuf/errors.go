package tuf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Sentinel errors. Every error returned by this package that comes from a
// failed check wraps exactly one of the check sentinels below; the message
// says which check failed, and the underlying go-tuf or I/O error stays
// wrapped too.
var (
	// ErrExpired: root, timestamp, snapshot or targets metadata is past its
	// expiry (freeze attack or a repository nobody re-signed).
	ErrExpired = errors.New("tuf: expiry check failed")
	// ErrRollback: a version went backwards, an equal version came back
	// with different content, or the snapshot names another targets (or
	// the timestamp another snapshot) version than the one served
	// (mix-and-match).
	ErrRollback = errors.New("tuf: version check failed (rollback or mix-and-match)")
	// ErrSignature: metadata is not signed by a threshold of the keys the
	// trusted root gives its role (bad, missing or foreign signatures, or
	// a signed part that was altered).
	ErrSignature = errors.New("tuf: signature check failed")
	// ErrLength: a target or metadata file is longer than its signed (or
	// configured maximum) length, or a target is larger than the caller
	// allows.
	ErrLength = errors.New("tuf: length check failed")
	// ErrHash: a target's bytes (or metadata's, when its parent records
	// hashes) do not match a signed hash, or no hash the client supports is
	// listed.
	ErrHash = errors.New("tuf: hash check failed")
	// ErrUnknownTarget: no role signs the name: not in the top-level
	// targets, nor in any delegated role the walk reaches for it.
	ErrUnknownTarget = errors.New("tuf: target not in the trusted targets metadata")
	// ErrInvalidTargetName: a signed target name that is not a clean
	// relative path, so it can't be mapped to a URL or file safely.
	ErrInvalidTargetName = errors.New("tuf: target name is not a clean relative path")
	// ErrNoTrustedRoot: the metadata directory has no root.json.
	ErrNoTrustedRoot = errors.New("tuf: no trusted root.json in the metadata directory")
	// ErrUntrustedRootFile: root.json does not parse or is not signed by a
	// threshold of its own root keys.
	ErrUntrustedRootFile = errors.New("tuf: root.json is not a valid self-signed root")
	// ErrRootExists: Init was given a root that differs from the one
	// already installed.
	ErrRootExists = errors.New("tuf: a different trusted root is already installed")
	// ErrMalformed: metadata that does not parse or is inconsistent in a
	// way none of the checks above names (wrong _type, missing role).
	ErrMalformed = errors.New("tuf: metadata format check failed")
	// ErrTransfer: the bytes could not be fetched (network, HTTP status,
	// missing file, cancelled context, or a target that ended early).
	// A Download that fails with ErrTransfer leaves its staging file for a
	// resume.
	ErrTransfer = errors.New("tuf: transfer failed")
	// ErrNotRefreshed: Target, Targets, Download or ReadTarget was called
	// before a successful Refresh.
	ErrNotRefreshed = errors.New("tuf: no successful Refresh yet")
	// ErrInvalidConfig: a Config field is missing or unusable; the message
	// names the field.
	ErrInvalidConfig = errors.New("tuf: invalid config")
)

// classify wraps a go-tuf (or fetch) error with the graft sentinel of the
// check that failed. Errors that already carry a sentinel pass unchanged;
// errors that match none pass unchanged too.
func classify(err error) error {
	if err == nil {
		return nil
	}
	sentinel := sentinelOf(err)
	if sentinel == nil || errors.Is(err, sentinel) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// sentinelOf names the graft sentinel for a go-tuf or fetch error, or nil.
func sentinelOf(err error) error {
	for _, s := range []error{ErrExpired, ErrRollback, ErrSignature, ErrLength, ErrHash,
		ErrUnknownTarget, ErrUntrustedRootFile, ErrMalformed, ErrTransfer} {
		if errors.Is(err, s) {
			return s
		}
	}
	switch {
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return ErrExpired
	case errors.Is(err, &metadata.ErrBadVersionNumber{}): // includes ErrEqualVersionNumber
		return ErrRollback
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return ErrSignature
	case errors.Is(err, &metadata.ErrDownloadLengthMismatch{}):
		return ErrLength
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return ErrHash
	case errors.Is(err, &metadata.ErrDownload{}),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ErrTransfer
	case errors.Is(err, &metadata.ErrRepository{}), errors.Is(err, &metadata.ErrValue{}),
		errors.Is(err, &metadata.ErrType{}), isJSONError(err):
		return ErrMalformed
	}
	return nil
}

func isJSONError(err error) bool {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.As(err, &syn) || errors.As(err, &typ)
}
