package repo

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Delegation describes a role the top-level targets delegates to: a board
// team or a customer that signs its own releases under some paths.
type Delegation struct {
	// Name of the role. Any characters but NUL, "\" and "%"; "/"-separated
	// segments that are not empty, "." or ".." (a "/" makes a
	// subdirectory of metadata/, what a web server maps the client's
	// escaped %2F back to).
	Name string
	// Paths are the target path patterns the role may sign: TUF's
	// shell-style patterns, matched one "/"-separated segment at a time
	// ("releases/rpi4-*/*" covers releases/rpi4-v2/manifest.cbor, not
	// releases/rpi4-v2/a/b). Required.
	//
	// Hashed bins (path_hash_prefixes) are not offered: go-tuf v2.4.2
	// matches the prefixes against the base64 form of the path's sha256,
	// not the hex form the specification and python-tuf use, so no
	// repository could serve both.
	Paths []string
	// Threshold of signatures; default 1.
	Threshold int
	// Keys to generate (keys/<name, escaped>-<n>.json); default the
	// threshold.
	Keys int
	// Terminating stops the client's search at this role for the paths
	// it covers: a target not signed here is not looked for elsewhere.
	Terminating bool
}

// validRoleName reports whether name can be a delegated role: not a
// top-level role, and every file and URL name made from it stays inside
// the metadata directory.
func validRoleName(name string) bool {
	if name == "" || slices.Contains(roles, name) || strings.ContainsAny(name, "\\%\x00") {
		return false
	}
	for _, s := range []string{name + ".json", "1." + name + ".json"} {
		for _, seg := range strings.Split(s, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return false
			}
		}
	}
	return true
}

// delegations returns the roles the top-level targets delegates to.
func (r *Repo) delegations() []metadata.DelegatedRole {
	if r.targets.Signed.Delegations == nil {
		return nil
	}
	return r.targets.Signed.Delegations.Roles
}

// delegation returns the top-level targets' delegation to role, or nil.
func (r *Repo) delegation(role string) *metadata.DelegatedRole {
	if r.targets.Signed.Delegations == nil {
		return nil
	}
	for i := range r.targets.Signed.Delegations.Roles {
		if r.targets.Signed.Delegations.Roles[i].Name == role {
			return &r.targets.Signed.Delegations.Roles[i]
		}
	}
	return nil
}

// Delegate adds a role delegated from the top-level targets: generates
// its keys, signs its first (empty) metadata with them, and publishes the
// new top-level targets (which needs the targets keys), snapshot and
// timestamp, with whatever else was staged. Target paths of later
// releases signed by the role must match its Paths (AddTargetFor).
func (r *Repo) Delegate(d Delegation) error {
	if !validRoleName(d.Name) {
		return fmt.Errorf("repo: delegate %q: %w: not usable as a role name", d.Name, ErrInvalidRole)
	}
	if r.delegation(d.Name) != nil {
		return fmt.Errorf("repo: delegate %q: %w: already delegated", d.Name, ErrInvalidRole)
	}
	if len(d.Paths) == 0 || slices.Contains(d.Paths, "") {
		return &OptionError{Option: "Paths", Reason: "at least one non-empty path pattern"}
	}
	if d.Threshold == 0 {
		d.Threshold = 1
	}
	if d.Keys == 0 {
		d.Keys = d.Threshold
	}
	if d.Threshold < 1 || d.Keys < d.Threshold || d.Keys > maxKeys {
		return &OptionError{Option: "Keys", Reason: fmt.Sprintf("%d keys, threshold %d: need 1 ≤ threshold ≤ keys ≤ %d", d.Keys, d.Threshold, maxKeys)}
	}
	if len(r.keys[metadata.TARGETS]) == 0 {
		return fmt.Errorf("repo: delegate %q: %w: no targets key here", d.Name, ErrKey)
	}
	// stage the current top-level targets, so Publish re-signs it
	top, _, err := r.loadStaged(metadata.TARGETS)
	if err != nil {
		return err
	}
	if r.targets.Signed.Delegations == nil {
		r.targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	r.targets.Signed.Delegations.Roles = append(r.targets.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: d.Name, Threshold: d.Threshold, Terminating: d.Terminating,
		Paths: d.Paths, KeyIDs: []string{},
	})
	for i := 0; i < d.Keys; i++ {
		k, err := newKey(nextKeyPath(r.dir, d.Name), r.passphrase)
		if err != nil {
			return err
		}
		if err := r.targets.Signed.AddKey(k.pub, d.Name); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
		r.keys[d.Name] = append(r.keys[d.Name], k)
	}
	m := metadata.Targets(r.expires(metadata.TARGETS))
	if err := sign(r, d.Name, m); err != nil {
		return err
	}
	r.delegated[d.Name] = m
	if err := r.saveStaged(metadata.TARGETS, top); err != nil {
		return err
	}
	return r.Publish()
}

// Delegations lists the roles the top-level targets delegates to.
func (r *Repo) Delegations() []Delegation {
	var out []Delegation
	for _, d := range r.delegations() {
		out = append(out, Delegation{Name: d.Name, Paths: d.Paths,
			Threshold: d.Threshold, Keys: len(d.KeyIDs), Terminating: d.Terminating})
	}
	return out
}

// stagedPath is staged/targets.json for the top-level role and
// staged/roles/<role, escaped>.json for a delegated one.
func (r *Repo) stagedPath(role string) string {
	if role == metadata.TARGETS {
		return filepath.Join(r.stagedDir(), "targets.json")
	}
	return filepath.Join(r.stagedDir(), "roles", url.PathEscape(role)+".json")
}

// targetsOf returns the metadata of a targets role (top-level or
// delegated), or ErrInvalidRole.
func (r *Repo) targetsOf(role string) (*metadata.Metadata[metadata.TargetsType], error) {
	if role == metadata.TARGETS {
		return r.targets, nil
	}
	if m, ok := r.delegated[role]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("repo: role %q: %w: not a targets role of this repository", role, ErrInvalidRole)
}
