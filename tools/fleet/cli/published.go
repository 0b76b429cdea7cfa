package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/tuf/repo"
)

// ErrPublishedTarget: a published target's file is missing or its bytes
// differ from the signed length or SHA-256.
var ErrPublishedTarget = errors.New("published target does not match its metadata")

// publishedReleases lists the releases in the repository's published
// targets, with their decoded manifests. A release whose manifest is
// missing or does not decode is listed with a nil Manifest, so its name
// still counts as taken.
func publishedReleases(r *repo.Repo) ([]release.Published, error) {
	var out []release.Published
	index := map[string]int{}
	for _, t := range r.Targets() {
		name, ok := release.NameFromTarget(t.Name)
		if !ok {
			continue
		}
		i, seen := index[name]
		if !seen {
			i = len(out)
			index[name] = i
			out = append(out, release.Published{Name: name})
		}
		if !release.IsManifestTarget(t.Name) {
			continue
		}
		data, err := readPublishedTarget(r, t, manifest.MaxSize)
		if err != nil {
			return nil, err
		}
		m, err := manifest.Decode(data)
		if err != nil {
			// Counted as taken, but without a sequence to compare.
			continue
		}
		out[i].Manifest = m
	}
	return out, nil
}

// readPublishedTarget reads a published target's file (hash-prefixed with
// consistent snapshots, plain otherwise; see tuf/repo's layout) and checks
// it against the signed length and SHA-256.
func readPublishedTarget(r *repo.Repo, t repo.Target, limit int64) ([]byte, error) {
	if t.Length > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrPublishedTarget, t.Name, t.Length, limit)
	}
	want := t.Hashes["sha256"]
	dir, base := path.Split(t.Name)
	candidates := []string{
		filepath.Join(r.TargetsDir(), filepath.FromSlash(dir), hex.EncodeToString(want)+"."+base),
		filepath.Join(r.TargetsDir(), filepath.FromSlash(t.Name)),
	}
	for _, p := range candidates {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(f, limit+1))
		f.Close()
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		if int64(len(data)) != t.Length || !bytes.Equal(sum[:], want) {
			return nil, fmt.Errorf("%w: %s (%s)", ErrPublishedTarget, t.Name, p)
		}
		return data, nil
	}
	return nil, fmt.Errorf("%w: %s: no file in %s", ErrPublishedTarget, t.Name, r.TargetsDir())
}

func targetJSON(t repo.Target) map[string]any {
	hashes := map[string]string{}
	for k, v := range t.Hashes {
		hashes[k] = hex.EncodeToString(v)
	}
	return map[string]any{"name": t.Name, "length": t.Length, "hashes": hashes}
}

func describeTarget(t repo.Target) string {
	return fmt.Sprintf("%s (%d bytes, sha256 %x)", t.Name, t.Length, t.Hashes["sha256"])
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
