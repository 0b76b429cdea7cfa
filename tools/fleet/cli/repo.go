package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/graft-dev/graft/tuf/repo"
)

func repoInitCmd() command {
	return command{
		name:    "repo init",
		summary: "create a TUF repository (keys, signed metadata) in a new directory",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` to create (required)")
			thresholds := newRoleInts()
			fs.Var(thresholds, "threshold", "signature threshold as `role=N` (repeatable; roles root, targets, snapshot, timestamp)")
			keys := newRoleInts()
			fs.Var(keys, "keys", "number of keys as `role=N` (repeatable; at least the threshold)")
			expiry := newRoleDurations()
			fs.Var(expiry, "expiry", "metadata lifetime as `role=DURATION`, e.g. timestamp=24h (repeatable)")
			consistent := fs.Bool("consistent-snapshot", true, "publish consistent snapshots (hash-prefixed targets, version-prefixed metadata)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("dir", *dir); err != nil {
					return err
				}
				r, err := repo.Create(*dir, repo.Options{
					Thresholds:         thresholds.m,
					Keys:               keys.m,
					Expiry:             expiry.m,
					ConsistentSnapshot: *consistent,
					Now:                e.now,
				})
				if errors.Is(err, repo.ErrInvalidOption) {
					return usagef("%v", err)
				}
				if err != nil {
					return err
				}
				// The latest root; devices are provisioned with it.
				root := filepath.Join(r.MetadataDir(), "root.json")
				if *asJSON {
					return writeJSON(e.stdout, map[string]string{
						"dir": *dir, "metadata": r.MetadataDir(), "targets": r.TargetsDir(), "root": root,
					})
				}
				_, err = fmt.Fprintf(e.stdout, "created repository %s\nroot %s\n", *dir, root)
				return err
			}
		},
	}
}

func repoAddTargetCmd() command {
	return command{
		name:    "repo add-target",
		args:    "NAME FILE",
		summary: "add FILE to the repository as target NAME (run repo publish to sign)",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` (required)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				r, err := openRepo(args, 2, "NAME FILE", *dir)
				if err != nil {
					return err
				}
				f, err := os.Open(args[1])
				if err != nil {
					return err
				}
				defer f.Close()
				if err := unchangedTarget(r, args[0], f); err != nil {
					return err
				}
				t, err := r.AddTarget(args[0], f, nil)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, targetJSON(t))
				}
				_, err = fmt.Fprintf(e.stdout, "added %s\n", describeTarget(t))
				return err
			}
		},
	}
}

func repoPublishCmd() command {
	return repoAction("repo publish", "sign and write new targets, snapshot and timestamp metadata",
		(*repo.Repo).Publish, "published")
}

func repoTimestampCmd() command {
	return repoAction("repo timestamp", "re-sign the timestamp metadata with a fresh expiry (run before it expires)",
		(*repo.Repo).RefreshTimestamp, "timestamp refreshed")
}

// repoAction is a repo command that opens the repository, does one thing
// to it and says so.
func repoAction(name, summary string, do func(*repo.Repo) error, done string) command {
	return command{
		name:    name,
		summary: summary,
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` (required)")
			return func(ctx context.Context, args []string) error {
				r, err := openRepo(args, 0, "no arguments", *dir)
				if err != nil {
					return err
				}
				if err := do(r); err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "%s %s\n", done, *dir)
				return err
			}
		},
	}
}

func repoRootCmd() command {
	return command{
		name:    "repo root",
		summary: "print the trusted root metadata devices are provisioned with, or write it to a file",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` (required)")
			out := fs.String("out", "", "write the root to `FILE` instead of stdout")
			return func(ctx context.Context, args []string) error {
				r, err := openRepo(args, 0, "no arguments", *dir)
				if err != nil {
					return err
				}
				root, err := r.Root()
				if err != nil {
					return err
				}
				if *out != "" {
					if err := os.WriteFile(*out, root, 0o644); err != nil {
						return err
					}
					_, err = fmt.Fprintf(e.stdout, "root %s\n", *out)
					return err
				}
				_, err = e.stdout.Write(root)
				return err
			}
		},
	}
}

// openRepo checks a repo command's arguments, requires --dir and opens
// the repository there.
func openRepo(args []string, n int, what, dir string) (*repo.Repo, error) {
	if err := wantArgs(args, n, what); err != nil {
		return nil, err
	}
	if err := requireFlag("dir", dir); err != nil {
		return nil, err
	}
	return repo.Open(dir)
}

// ErrTargetReplaced: a published target would get different bytes under
// the same name. Devices resuming a download or holding it in their TUF
// cache would then see a hash mismatch; publish the new bytes under a new
// name instead.
var ErrTargetReplaced = errors.New("a published target keeps its bytes; use a new name")

// unchangedTarget refuses to stage different bytes under the name of a
// published target (the same bytes again are fine), and leaves f at its
// start.
func unchangedTarget(r *repo.Repo, name string, f *os.File) error {
	i := slices.IndexFunc(r.Targets(), func(t repo.Target) bool { return t.Name == name })
	if i < 0 {
		return nil
	}
	pub := r.Targets()[i]
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if n != pub.Length || !bytes.Equal(h.Sum(nil), pub.Hashes["sha256"]) {
		return fmt.Errorf("%w: %s is published as %s, and %s differs", ErrTargetReplaced, name, describeTarget(pub), f.Name())
	}
	return nil
}
