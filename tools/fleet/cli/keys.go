package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/graft-dev/graft/tuf/repo"
)

// PassphraseEnv names the environment variable holding the passphrase
// that seals the repository's private keys. Without it graft-fleet asks
// on the terminal.
const PassphraseEnv = "GRAFT_KEY_PASSPHRASE"

// errNoPassphrase: no passphrase in the environment and no terminal to ask.
var errNoPassphrase = errors.New("no key passphrase: set " + PassphraseEnv + " or run on a terminal")

// passphrase returns the key passphrase from the environment, or asks on
// the terminal (twice when confirm, for a new repository).
func passphrase(confirm bool) ([]byte, error) {
	if p := os.Getenv(PassphraseEnv); p != "" {
		return []byte(p), nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errNoPassphrase
	}
	defer tty.Close()
	if !term.IsTerminal(int(tty.Fd())) {
		return nil, errNoPassphrase
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(tty, prompt)
		p, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		return p, err
	}
	p, err := ask("key passphrase: ")
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, usagef("empty passphrase")
	}
	if confirm {
		again, err := ask("again: ")
		if err != nil {
			return nil, err
		}
		if string(again) != string(p) {
			return nil, usagef("the passphrases differ")
		}
	}
	return p, nil
}

// openRepoKeys opens the repository with the passphrase, loading the keys
// of roles (nil: every role).
func openRepoKeys(dir string, roles []string) (*repo.Repo, error) {
	if err := requireFlag("dir", dir); err != nil {
		return nil, err
	}
	p, err := passphrase(false)
	if err != nil {
		return nil, err
	}
	return repo.OpenWith(dir, repo.OpenOptions{Passphrase: p, Roles: roles})
}

func repoKeysCmd() command {
	return command{
		name:    "repo keys",
		summary: "list each role's threshold and key IDs, and which keys this repository holds",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` (required)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			sealPlain := fs.Bool("seal", false, "first seal plain key files (a repository made before keys were sealed) with the passphrase")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				r, err := openRepoKeys(*dir, nil)
				if err != nil {
					return err
				}
				if *sealPlain {
					n, err := r.SealKeys()
					if err != nil {
						return err
					}
					if !*asJSON {
						fmt.Fprintf(e.stdout, "sealed %d key files\n", n)
					}
				}
				list, pending := r.Keys()
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{"roles": list, "prepared_root": pending})
				}
				for _, k := range list {
					kind := "role"
					if k.Delegated {
						kind = "delegated role"
					}
					fmt.Fprintf(e.stdout, "%s %s: %d of %d keys, %d held here", kind, k.Role, k.Threshold, len(k.KeyIDs), len(k.Held))
					if len(k.Paths) > 0 {
						fmt.Fprintf(e.stdout, ", paths %s", strings.Join(k.Paths, " "))
					}
					fmt.Fprintln(e.stdout)
					for _, id := range k.KeyIDs {
						where := "offline"
						if contains(k.Held, id) {
							where = "held"
						}
						fmt.Fprintf(e.stdout, "  %s %s\n", id, where)
					}
				}
				if pending > 0 {
					fmt.Fprintf(e.stdout, "root version %d is prepared and waits for signatures: %s\n", pending, r.PreparedRootPath())
				}
				return nil
			}
		},
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func repoRotateCmd() command {
	return command{
		name:    "repo rotate",
		args:    "ROLE",
		summary: "replace a top-level role's keys with new ones (N of M) in a new root version",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` (required)")
			keys := fs.Int("keys", 0, "number of new keys `M` (default the threshold)")
			threshold := fs.Int("threshold", 1, "signatures required, `N`")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "ROLE"); err != nil {
					return err
				}
				if !roles[args[0]] {
					return usagef("ROLE %q: want root, targets, snapshot or timestamp", args[0])
				}
				r, err := openRepoKeys(*dir, nil)
				if err != nil {
					return err
				}
				err = r.Rotate(args[0], repo.RotateOptions{Keys: *keys, Threshold: *threshold})
				return rootOutcome(e, r, *dir, err, *asJSON)
			}
		},
	}
}

// rootOutcome reports a root change: published, or prepared and waiting
// for offline signatures (not a failure: the next step is offline).
func rootOutcome(e *env, r *repo.Repo, dir string, err error, asJSON bool) error {
	var opt *repo.OptionError
	switch {
	case errors.As(err, &opt):
		return usagef("%v", err)
	case errors.Is(err, repo.ErrRootSignatures):
		if asJSON {
			return writeJSON(e.stdout, map[string]any{"published": false, "prepared": r.PreparedRootPath(), "needs": err.Error()})
		}
		_, err = fmt.Fprintf(e.stdout, "%v\nsign it offline:  graft-fleet repo root sign --key KEYFILE COPY_OF_%s\nthen:             graft-fleet repo root merge --dir %s SIGNED_COPY\n",
			err, "root.json", dir)
		return err
	case err != nil:
		return err
	}
	list, _ := r.Keys()
	if asJSON {
		return writeJSON(e.stdout, map[string]any{"published": true, "roles": list})
	}
	_, err = fmt.Fprintf(e.stdout, "published the new root in %s\n", r.MetadataDir())
	return err
}

func repoRootSignCmd() command {
	return command{
		name:    "repo root sign",
		args:    "ROOT_FILE",
		summary: "add a signature to a prepared root file with an (offline) key file; needs no repository",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			key := fs.String("key", "", "private key `FILE` (required)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "ROOT_FILE"); err != nil {
					return err
				}
				if err := requireFlag("key", *key); err != nil {
					return err
				}
				p, err := passphrase(false)
				if errors.Is(err, errNoPassphrase) {
					p = nil // a plain key file needs none
				} else if err != nil {
					return err
				}
				if err := repo.SignRootFile(args[0], *key, p); err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "signed %s\n", args[0])
				return err
			}
		},
	}
}

func repoRootMergeCmd() command {
	return command{
		name:    "repo root merge",
		args:    "SIGNED_ROOT_FILE",
		summary: "merge the signatures of an offline-signed copy of the prepared root, and publish it once it has enough",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` (required)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "SIGNED_ROOT_FILE"); err != nil {
					return err
				}
				b, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				r, err := openRepoKeys(*dir, nil)
				if err != nil {
					return err
				}
				return rootOutcome(e, r, *dir, r.MergeRoot(b), *asJSON)
			}
		},
	}
}

func repoDelegateCmd() command {
	return command{
		name:    "repo delegate",
		args:    "NAME",
		summary: "delegate target paths to a new role with its own keys (a board team, a customer) and publish",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "repository `DIR` (required)")
			var paths stringList
			fs.Var(&paths, "paths", "target path `PATTERN` the role may sign, e.g. 'releases/rpi4-*/*' (required, repeatable; * stops at /)")
			keys := fs.Int("keys", 0, "number of keys `M` to generate (default the threshold)")
			threshold := fs.Int("threshold", 1, "signatures required, `N`")
			terminating := fs.Bool("terminating", false, "devices look no further than this role for the paths it covers")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "NAME"); err != nil {
					return err
				}
				if len(paths) == 0 {
					return usagef("--paths is required")
				}
				r, err := openRepoKeys(*dir, nil)
				if err != nil {
					return err
				}
				d := repo.Delegation{Name: args[0], Paths: paths, Keys: *keys, Threshold: *threshold, Terminating: *terminating}
				err = r.Delegate(d)
				var opt *repo.OptionError
				if errors.As(err, &opt) || errors.Is(err, repo.ErrInvalidRole) {
					return usagef("%v", err)
				}
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{"role": d.Name, "paths": d.Paths, "threshold": *threshold, "terminating": d.Terminating})
				}
				_, err = fmt.Fprintf(e.stdout, "delegated %s to role %s and published\n", strings.Join(paths, " "), d.Name)
				return err
			}
		},
	}
}
