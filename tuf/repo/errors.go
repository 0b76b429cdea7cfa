package repo

import "errors"

var (
	// ErrInvalidOption: an Options field is out of range; the *OptionError
	// says which.
	ErrInvalidOption = errors.New("repo: invalid option")
	// ErrExists: Create found a repository (keys or metadata) in dir.
	ErrExists = errors.New("repo: a repository already exists there")
	// ErrKeyPermissions: a key file (or the keys directory) is accessible
	// to group or others.
	ErrKeyPermissions = errors.New("repo: key file permissions are wider than 0600")
	// ErrKey: a key file is malformed, not authorized by root for its
	// role, or a role has fewer usable keys than its threshold.
	ErrKey = errors.New("repo: key check failed")
	// ErrInvalidTargetName: a target name that is not a clean relative
	// slash-separated path.
	ErrInvalidTargetName = errors.New("repo: target name is not a clean relative path")
	// ErrInvalidCustom: a target's custom metadata is not valid JSON.
	ErrInvalidCustom = errors.New("repo: target custom metadata is not valid JSON")
	// ErrUnknownTarget: RemoveTarget of a name not in the (staged) targets.
	ErrUnknownTarget = errors.New("repo: no such target")
	// ErrPassphrase: a sealed key file and no passphrase, or the wrong
	// one.
	ErrPassphrase = errors.New("repo: key passphrase missing or wrong")
	// ErrInvalidRole: a role name that is unknown, already delegated, or
	// not usable as a file and URL name.
	ErrInvalidRole = errors.New("repo: invalid role")
	// ErrNotDelegated: a target path the role is not delegated for.
	ErrNotDelegated = errors.New("repo: the role is not delegated for that path")
	// ErrRootSignatures: a prepared root version does not yet carry a
	// threshold of signatures from the current root keys and from its own
	// (sign it offline with SignRootFile, then MergeRoot).
	ErrRootSignatures = errors.New("repo: the new root needs more signatures")
	// ErrNoPreparedRoot: MergeRoot or SignRootFile with no prepared root,
	// or a root file whose signed part differs from the prepared one.
	ErrNoPreparedRoot = errors.New("repo: no matching prepared root")
)

// OptionError names the option that failed validation. It matches
// ErrInvalidOption with errors.Is.
type OptionError struct {
	Option string // e.g. `Thresholds["root"]`
	Reason string
}

func (e *OptionError) Error() string {
	return "repo: invalid option " + e.Option + ": " + e.Reason
}

// Is makes errors.Is(err, ErrInvalidOption) true.
func (e *OptionError) Is(target error) bool { return target == ErrInvalidOption }
