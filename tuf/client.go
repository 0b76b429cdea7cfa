package tuf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// Config says where a Client keeps its trust and where it finds the
// repository.
type Config struct {
	// MetadataDir holds the trusted root.json (written by Init at the
	// factory) and the metadata cache: timestamp.json, snapshot.json,
	// targets.json, plain names, kept up to date by Refresh.
	MetadataDir string
	// MetadataURL is the repository's metadata: http://…, https://…, or a
	// local directory as a plain path or a file:// URL.
	MetadataURL string
	// TargetsURL is the repository's target files, the same kinds as
	// MetadataURL. Required: no sibling "targets" directory is assumed.
	TargetsURL string
	// TargetDir is the staging directory for downloads when
	// DownloadOptions.Dest is empty.
	TargetDir string
	// Fetcher streams http(s) targets; nil means HTTPFetcher{}. Metadata
	// always goes through the built-in fetchers (it is small), and local
	// directories always through DirFetcher.
	Fetcher Fetcher
	// Now is the reference time for expiry checks; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Init installs root as the trusted root of metadataDir. It checks that
// root parses and is signed by a threshold of its own root keys (an expired
// root is accepted: Refresh walks to its successors), then writes
// root.json atomically with mode 0644. Installing the same bytes again is a
// no-op; a different root.json already there is refused with ErrRootExists.
func Init(metadataDir string, root []byte) error {
	if metadataDir == "" {
		return fmt.Errorf("%w: metadataDir is empty", ErrInvalidConfig)
	}
	if _, err := trustedmetadata.New(root); err != nil {
		return fmt.Errorf("tuf: init: %w: %w", ErrUntrustedRootFile, classify(err))
	}
	if err := os.MkdirAll(metadataDir, 0o700); err != nil {
		return fmt.Errorf("tuf: init: %w", err)
	}
	p := filepath.Join(metadataDir, "root.json")
	old, err := os.ReadFile(p)
	switch {
	case err == nil && bytes.Equal(old, root):
		return nil
	case err == nil:
		return fmt.Errorf("tuf: init %s: %w", p, ErrRootExists)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("tuf: init: %w", err)
	}
	if err := atomicfs.WriteFile(p, root, 0o644); err != nil {
		return fmt.Errorf("tuf: init: %w", err)
	}
	return nil
}

// Client is the device's TUF client. Refresh brings the trusted metadata
// up to date; Target, Targets, Download and ReadTarget then answer from it.
//
// A Client is NOT safe for concurrent use: callers serialize their calls
// (the agent's update engine runs one at a time). Two Clients must not
// share a MetadataDir at the same time either.
type Client struct {
	cfg     Config
	log     *slog.Logger
	meta    location
	targets location

	// set by a successful Refresh
	top        map[string]*metadata.TargetFiles
	consistent bool
}

// New checks cfg and the trusted root. It fails with ErrNoTrustedRoot when
// MetadataDir has no root.json and ErrUntrustedRootFile when the file is
// not a valid self-signed root. It does no network I/O.
func New(cfg Config) (*Client, error) {
	if cfg.MetadataDir == "" {
		return nil, fmt.Errorf("%w: MetadataDir is empty", ErrInvalidConfig)
	}
	if cfg.TargetDir == "" {
		return nil, fmt.Errorf("%w: TargetDir is empty", ErrInvalidConfig)
	}
	meta, err := parseLocation("MetadataURL", cfg.MetadataURL)
	if err != nil {
		return nil, err
	}
	targets, err := parseLocation("TargetsURL", cfg.TargetsURL)
	if err != nil {
		return nil, err
	}
	root, err := readRoot(cfg.MetadataDir)
	if err != nil {
		return nil, err
	}
	if _, err := trustedmetadata.New(root); err != nil {
		return nil, fmt.Errorf("tuf: %s: %w: %w", filepath.Join(cfg.MetadataDir, "root.json"), ErrUntrustedRootFile, classify(err))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log, meta: meta, targets: targets}, nil
}

func readRoot(dir string) ([]byte, error) {
	root, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tuf: %s: %w", dir, ErrNoTrustedRoot)
	}
	if err != nil {
		return nil, fmt.Errorf("tuf: %w", err)
	}
	return root, nil
}

// Refresh runs the TUF client workflow: newer roots in order, then
// timestamp, snapshot and top-level targets, each checked for signatures,
// versions (rollback, mix-and-match) and expiry, and persisted in
// MetadataDir. On failure the previous trusted targets are dropped: the
// Client answers nothing until a Refresh succeeds.
func (c *Client) Refresh(ctx context.Context) error {
	c.top = nil
	root, err := readRoot(c.cfg.MetadataDir)
	if err != nil {
		return err
	}
	uc, err := config.New(c.meta.base, root)
	if err != nil {
		return fmt.Errorf("%w: MetadataURL: %w", ErrInvalidConfig, err)
	}
	uc.LocalMetadataDir = c.cfg.MetadataDir
	uc.LocalTargetsDir = c.cfg.TargetDir
	uc.RemoteTargetsURL = "" // targets are fetched by Download, never by go-tuf
	var f Fetcher = HTTPFetcher{}
	if c.meta.local {
		f = DirFetcher{}
	}
	mf := &metaFetcher{ctx: ctx, f: f, timestamp: c.meta.join(metadata.TIMESTAMP + ".json")}
	uc.Fetcher = mf

	c.dropTornCache()
	cachedTS, _ := os.ReadFile(filepath.Join(c.cfg.MetadataDir, metadata.TIMESTAMP+".json"))

	if _, err := trustedmetadata.New(root); err != nil {
		return fmt.Errorf("tuf: refresh: %w: %w", ErrUntrustedRootFile, classify(err))
	}
	up, err := updater.New(uc)
	if err != nil {
		return fmt.Errorf("tuf: refresh: %w", classify(err))
	}
	if c.cfg.Now != nil {
		up.UnsafeSetRefTime(c.cfg.Now().UTC())
	}
	if err := up.Refresh(); err != nil {
		return fmt.Errorf("tuf: refresh from %s: %w", c.meta.base, classify(err))
	}
	// go-tuf renames its cache files into place without fsync: make them
	// durable now, so a power cut cannot leave torn metadata behind.
	if err := syncDir(c.cfg.MetadataDir); err != nil {
		return fmt.Errorf("tuf: refresh: %w", err)
	}
	trusted := up.GetTrustedMetadataSet()
	if err := sameVersionSameBytes(cachedTS, mf.gotTS); err != nil {
		return fmt.Errorf("tuf: refresh from %s: %w", c.meta.base, err)
	}
	c.top = up.GetTopLevelTargets()
	c.consistent = trusted.Root.Signed.ConsistentSnapshot
	c.log.Debug("tuf: refreshed",
		"root", trusted.Root.Signed.Version,
		"timestamp", trusted.Timestamp.Signed.Version,
		"snapshot", trusted.Snapshot.Signed.Version,
		"targets", trusted.Targets[metadata.TARGETS].Signed.Version,
		"consistent_snapshot", c.consistent)
	return nil
}

// dropTornCache removes cached timestamp, snapshot or targets metadata
// that is not even JSON: what a power cut leaves of a file written without
// fsync. They are a cache; the next Refresh fetches them again and checks
// them against the trusted root. (Losing the cached timestamp weakens
// rollback protection for that one refresh: versions are still checked
// against what the root and the repository sign, and expiry still holds.)
// The trusted root is never dropped.
func (c *Client) dropTornCache() {
	for _, role := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS} {
		p := filepath.Join(c.cfg.MetadataDir, role+".json")
		b, err := os.ReadFile(p)
		if err != nil || json.Valid(b) {
			continue
		}
		c.log.Warn("tuf: dropping torn cached metadata", "file", p, "bytes", len(b))
		os.Remove(p)
	}
}

// syncDir fsyncs every regular file in dir, then dir itself.
func syncDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return atomicfs.SyncDir(dir)
}

// sameVersionSameBytes refuses a fetched timestamp that has the version of
// the cached one but different bytes. go-tuf quietly keeps the cached copy
// in that case; a repository that changes its timestamp must bump the
// version, so a changed same-version timestamp means a signer reused a
// version: refuse loudly.
func sameVersionSameBytes(cached, fetched []byte) error {
	if cached == nil || fetched == nil || bytes.Equal(cached, fetched) {
		return nil
	}
	old, err := metadata.Timestamp().FromBytes(cached)
	if err != nil {
		return nil // the cached copy was not trusted; go-tuf replaced it
	}
	cur, err := metadata.Timestamp().FromBytes(fetched)
	if err != nil {
		return nil
	}
	if old.Signed.Version == cur.Signed.Version {
		return fmt.Errorf("%w: timestamp version %d was served with different content than the trusted copy",
			ErrRollback, cur.Signed.Version)
	}
	return nil
}

// Target describes one signed target.
type Target struct {
	Name   string
	Length int64
	// Hashes maps algorithm ("sha256", "sha512") to digest.
	Hashes map[string][]byte
	// Custom is the target's raw "custom" JSON, or nil.
	Custom []byte
}

// Target returns the signed description of a top-level target (delegated
// targets are not consulted: graft repositories don't delegate). It needs
// a successful Refresh; an absent name is ErrUnknownTarget.
func (c *Client) Target(name string) (Target, error) {
	tf, err := c.lookup(name)
	if err != nil {
		return Target{}, err
	}
	return toTarget(name, tf), nil
}

// Targets returns all top-level targets, sorted by name.
func (c *Client) Targets() ([]Target, error) {
	if c.top == nil {
		return nil, ErrNotRefreshed
	}
	names := slices.Sorted(maps.Keys(c.top))
	out := make([]Target, 0, len(names))
	for _, n := range names {
		out = append(out, toTarget(n, c.top[n]))
	}
	return out, nil
}

func (c *Client) lookup(name string) (*metadata.TargetFiles, error) {
	if c.top == nil {
		return nil, ErrNotRefreshed
	}
	tf, ok := c.top[name]
	if !ok || tf == nil {
		return nil, fmt.Errorf("tuf: %q: %w", name, ErrUnknownTarget)
	}
	return tf, nil
}

func toTarget(name string, tf *metadata.TargetFiles) Target {
	t := Target{Name: name, Length: tf.Length, Hashes: make(map[string][]byte, len(tf.Hashes))}
	for k, v := range tf.Hashes {
		t.Hashes[k] = bytes.Clone(v)
	}
	if tf.Custom != nil {
		t.Custom = bytes.Clone(*tf.Custom)
	}
	return t
}
