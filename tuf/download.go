package tuf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// checkpointEvery is how many bytes Download writes between fsyncs (and
// Checkpoint calls).
const checkpointEvery = 4 << 20

// hashAlgs are the target hash algorithms this client can check. A target
// listing any other algorithm is refused: every listed hash is checked.
var hashAlgs = map[string]func() hash.Hash{
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// DownloadOptions steer one Download.
type DownloadOptions struct {
	// Dest is where the verified target ends up; empty means
	// TargetDir/<name, path-escaped>. Bytes arrive in Dest+PartSuffix and
	// are renamed to Dest only once their length and hashes check out, so
	// a verified copy already at Dest is never overwritten by unverified
	// bytes.
	Dest string
	// Offset resumes a download: bytes [0, Offset) of Dest+PartSuffix are
	// already there and fsynced. They are read back and hashed; anything
	// after Offset is cut off. An Offset that the partial file can't back
	// (shorter file, negative, beyond the target's length) restarts from
	// 0.
	Offset int64
	// Checkpoint is called after the partial file has been fsynced up to
	// offset: about every 4 MiB, after a transfer error (with what
	// arrived), and at the end (with the full length, after verification
	// and the rename). An error aborts the download and keeps the partial
	// file.
	Checkpoint func(offset int64) error
	// Progress is called after every chunk written, and once at the start.
	Progress func(done, total int64)
}

// PartSuffix names the partial file of a download: Dest+PartSuffix. The
// default Dest is a path-escaped target name, in which "%" is always
// followed by two hex digits, so no target's default Dest is another
// target's partial file.
const PartSuffix = ".%part"

// Download streams the target name into Dest+PartSuffix, checking it
// against the signed length and every signed hash as it goes, renames it
// to Dest once all checks passed, and returns Dest.
//
// A Dest that already holds the target (signed length and every hash
// match) is returned without a fetch. More bytes than the signed length
// are refused (ErrLength) as soon as the first extra byte arrives; a hash
// mismatch is ErrHash. Both delete the partial file and leave Dest as it
// was. A transfer failure (ErrTransfer, including a source that ends
// early) keeps the partial file, fsynced and checkpointed, for a resume
// with Offset.
func (c *Client) Download(ctx context.Context, name string, opts DownloadOptions) (string, error) {
	tf, err := c.lookup(ctx, name)
	if err != nil {
		return "", err
	}
	src, err := c.targetURL(name, tf)
	if err != nil {
		return "", err
	}
	v, err := newVerifier(name, tf)
	if err != nil {
		return "", err
	}
	dest := opts.Dest
	if dest == "" {
		if err := os.MkdirAll(c.cfg.TargetDir, 0o700); err != nil {
			return "", fmt.Errorf("tuf: staging dir: %w", err)
		}
		dest = filepath.Join(c.cfg.TargetDir, url.PathEscape(name))
	}
	if c.present(dest, name, tf) {
		c.log.Info("tuf: target already present and verified", "name", name, "path", dest)
		if opts.Progress != nil {
			opts.Progress(tf.Length, tf.Length)
		}
		if opts.Checkpoint != nil {
			if err := opts.Checkpoint(tf.Length); err != nil {
				return "", fmt.Errorf("tuf: checkpoint at %d: %w", tf.Length, err)
			}
		}
		return dest, nil
	}
	part := dest + PartSuffix
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|oNoFollow, 0o600) // a symlink planted there is refused
	if err != nil {
		return "", fmt.Errorf("tuf: staging file: %w", err)
	}
	s := &fileSink{f: f, v: v, total: tf.Length, checkpoint: opts.Checkpoint, progress: opts.Progress}
	drop := func(err error) (string, error) {
		f.Close()
		os.Remove(part)
		return "", err
	}
	keep := func(err error) (string, error) {
		if serr := s.sync(); serr != nil {
			err = errors.Join(err, serr)
		}
		f.Close()
		return "", err
	}

	off, err := c.resume(f, v, opts.Offset, tf.Length)
	if err != nil {
		f.Close()
		return "", err
	}
	s.lastSync = off
	if s.progress != nil {
		s.progress(off, tf.Length)
	}
	if off < tf.Length {
		c.log.Info("tuf: downloading target", "name", name, "url", src, "offset", off, "length", tf.Length)
		ferr := c.fetcherFor().Fetch(ctx, src, off, tf.Length+1, s)
		switch {
		case v.over:
			return drop(fmt.Errorf("tuf: target %q from %s: %w: more than the signed %d bytes arrived",
				name, src, ErrLength, tf.Length))
		case s.err != nil:
			return keep(s.err)
		case ferr != nil:
			return keep(fmt.Errorf("tuf: target %q from %s: %w: %w", name, src, ErrTransfer, ferr))
		}
	}
	if v.n < tf.Length {
		return keep(fmt.Errorf("tuf: target %q from %s: %w: source ended after %d of %d bytes",
			name, src, ErrTransfer, v.n, tf.Length))
	}
	if err := v.check(); err != nil {
		return drop(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", fmt.Errorf("tuf: sync staging file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("tuf: staging file: %w", err)
	}
	if err := os.Rename(part, dest); err != nil {
		return "", fmt.Errorf("tuf: staging file: %w", err)
	}
	if err := atomicfs.SyncDir(filepath.Dir(dest)); err != nil {
		return "", fmt.Errorf("tuf: staging file: %w", err)
	}
	if opts.Checkpoint != nil {
		if err := opts.Checkpoint(tf.Length); err != nil {
			return "", fmt.Errorf("tuf: checkpoint at %d: %w", tf.Length, err)
		}
	}
	c.log.Info("tuf: target verified", "name", name, "path", dest, "length", tf.Length)
	return dest, nil
}

// present reports whether dest already holds the target: a regular file
// of the signed length whose every listed hash matches.
func (c *Client) present(dest, name string, tf *metadata.TargetFiles) bool {
	fi, err := os.Stat(dest)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != tf.Length {
		return false
	}
	v, err := newVerifier(name, tf)
	if err != nil {
		return false
	}
	f, err := os.Open(dest)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := io.Copy(v, f); err != nil || v.n != tf.Length {
		return false
	}
	return v.check() == nil
}

// resume prepares f for writing at the returned offset: it hashes the kept
// prefix and cuts anything after it.
func (c *Client) resume(f *os.File, v *verifier, want, length int64) (int64, error) {
	off := want
	if off < 0 || off > length {
		c.log.Warn("tuf: resume offset out of range, restarting", "offset", want, "length", length)
		off = 0
	}
	if off > 0 {
		fi, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("tuf: staging file: %w", err)
		}
		if fi.Size() < off {
			c.log.Warn("tuf: staging file shorter than resume offset, restarting", "offset", want, "size", fi.Size())
			off = 0
		}
	}
	if err := f.Truncate(off); err != nil {
		return 0, fmt.Errorf("tuf: staging file: %w", err)
	}
	if off > 0 {
		if _, err := io.Copy(v, io.NewSectionReader(f, 0, off)); err != nil {
			return 0, fmt.Errorf("tuf: reading staged prefix: %w", err)
		}
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("tuf: staging file: %w", err)
	}
	return off, nil
}

// ReadTarget fetches a small target (the release manifest) into memory and
// returns it only after its length and hashes check out. A target whose
// signed length exceeds max is refused with ErrLength before any fetch.
func (c *Client) ReadTarget(ctx context.Context, name string, max int64) ([]byte, error) {
	tf, err := c.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if tf.Length > max {
		return nil, fmt.Errorf("tuf: target %q: %w: signed length %d is more than the %d allowed",
			name, ErrLength, tf.Length, max)
	}
	src, err := c.targetURL(name, tf)
	if err != nil {
		return nil, err
	}
	v, err := newVerifier(name, tf)
	if err != nil {
		return nil, err
	}
	m := &memSink{v: v}
	m.b.Grow(int(tf.Length))
	ferr := c.fetcherFor().Fetch(ctx, src, 0, tf.Length+1, m)
	switch {
	case v.over:
		return nil, fmt.Errorf("tuf: target %q from %s: %w: more than the signed %d bytes arrived",
			name, src, ErrLength, tf.Length)
	case ferr != nil:
		return nil, fmt.Errorf("tuf: target %q from %s: %w: %w", name, src, ErrTransfer, ferr)
	case v.n < tf.Length:
		return nil, fmt.Errorf("tuf: target %q from %s: %w: source ended after %d of %d bytes",
			name, src, ErrTransfer, v.n, tf.Length)
	}
	if err := v.check(); err != nil {
		return nil, err
	}
	return m.b.Bytes(), nil
}

func (c *Client) fetcherFor() Fetcher {
	if c.targets.local {
		return DirFetcher{}
	}
	if c.cfg.Fetcher != nil {
		return c.cfg.Fetcher
	}
	return HTTPFetcher{}
}

// targetURL is where the target's bytes live. With consistent snapshots
// the TUF specification (5.7.3) names the file HASH.FILENAME in the
// target's directory, HASH being one of the listed digests: this client
// takes sha256 when listed, else the first algorithm in sorted order (the
// order of canonical JSON). graft's repository writes the file under every
// listed digest, so any client's choice is served.
func (c *Client) targetURL(name string, tf *metadata.TargetFiles) (string, error) {
	if !cleanName(name) {
		return "", fmt.Errorf("tuf: %q: %w", name, ErrInvalidTargetName)
	}
	if c.targets.base == "" {
		return "", fmt.Errorf("%w: TargetsURL is empty", ErrInvalidConfig)
	}
	rel := name
	if c.consistent {
		alg := "sha256"
		if _, ok := tf.Hashes[alg]; !ok {
			algs := slices.Sorted(maps.Keys(tf.Hashes))
			if len(algs) == 0 {
				return "", fmt.Errorf("tuf: target %q: %w: no hashes listed", name, ErrHash)
			}
			alg = algs[0]
		}
		dir, base := path.Split(name)
		rel = dir + hex.EncodeToString(tf.Hashes[alg]) + "." + base
	}
	return c.targets.join(rel), nil
}

// cleanName reports whether a target name is a relative slash-separated
// path with no empty, "." or ".." segments, so it maps to one URL and one
// file inside the repository.
func cleanName(name string) bool {
	if name == "" || strings.ContainsAny(name, "\\\x00") {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// verifier counts and hashes a target's bytes and refuses any past its
// signed length.
type verifier struct {
	name   string
	length int64
	n      int64
	over   bool
	want   map[string][]byte
	algs   []string
	hs     []hash.Hash
}

func newVerifier(name string, tf *metadata.TargetFiles) (*verifier, error) {
	if len(tf.Hashes) == 0 {
		return nil, fmt.Errorf("tuf: target %q: %w: no hashes listed", name, ErrHash)
	}
	if tf.Length < 0 {
		return nil, fmt.Errorf("tuf: target %q: %w: negative length %d", name, ErrLength, tf.Length)
	}
	v := &verifier{name: name, length: tf.Length, want: map[string][]byte{}}
	for _, alg := range slices.Sorted(maps.Keys(tf.Hashes)) {
		mk, ok := hashAlgs[alg]
		if !ok {
			return nil, fmt.Errorf("tuf: target %q: %w: unsupported hash algorithm %q", name, ErrHash, alg)
		}
		v.algs = append(v.algs, alg)
		v.hs = append(v.hs, mk())
		v.want[alg] = tf.Hashes[alg]
	}
	return v, nil
}

func (v *verifier) Write(p []byte) (int, error) {
	if v.n+int64(len(p)) > v.length {
		v.over = true
		return 0, fmt.Errorf("tuf: target %q: %w: more than %d bytes", v.name, ErrLength, v.length)
	}
	for _, h := range v.hs {
		h.Write(p)
	}
	v.n += int64(len(p))
	return len(p), nil
}

// check compares every digest; call it once all bytes were written.
func (v *verifier) check() error {
	for i, h := range v.hs {
		if got := h.Sum(nil); !bytes.Equal(got, v.want[v.algs[i]]) {
			return fmt.Errorf("tuf: target %q: %w: %s is %x, signed %x",
				v.name, ErrHash, v.algs[i], got, v.want[v.algs[i]])
		}
	}
	return nil
}

// fileSink writes verified bytes to the staging file, fsyncing and
// checkpointing every checkpointEvery bytes.
type fileSink struct {
	f          *os.File
	v          *verifier
	total      int64
	lastSync   int64
	checkpoint func(int64) error
	progress   func(done, total int64)
	err        error // a local failure (disk, checkpoint), as opposed to transfer
}

func (s *fileSink) Write(p []byte) (int, error) {
	if _, err := s.v.Write(p); err != nil {
		return 0, err
	}
	if _, err := s.f.Write(p); err != nil {
		s.err = fmt.Errorf("tuf: write staging file: %w", err)
		return 0, s.err
	}
	if s.v.n-s.lastSync >= checkpointEvery {
		if err := s.sync(); err != nil {
			s.err = err
			return 0, err
		}
	}
	if s.progress != nil {
		s.progress(s.v.n, s.total)
	}
	return len(p), nil
}

// sync fsyncs the staging file and reports the durable offset.
func (s *fileSink) sync() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("tuf: sync staging file: %w", err)
	}
	s.lastSync = s.v.n
	if s.checkpoint != nil {
		if err := s.checkpoint(s.v.n); err != nil {
			return fmt.Errorf("tuf: checkpoint at %d: %w", s.v.n, err)
		}
	}
	return nil
}

// memSink keeps verified bytes in memory (ReadTarget).
type memSink struct {
	v *verifier
	b bytes.Buffer
}

func (m *memSink) Write(p []byte) (int, error) {
	if _, err := m.v.Write(p); err != nil {
		return 0, err
	}
	return m.b.Write(p)
}
