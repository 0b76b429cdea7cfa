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
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	// MetadataURL. No sibling "targets" directory is assumed: without it
	// the Client refreshes metadata and answers Target, but Download and
	// ReadTarget fail with ErrInvalidConfig.
	TargetsURL string
	// TargetDir is the staging directory for downloads when
	// DownloadOptions.Dest is empty.
	TargetDir string
	// Fetcher streams http(s) targets; nil means HTTPFetcher{}. Metadata
	// always goes through the built-in fetchers (it is small), and local
	// directories always through DirFetcher.
	Fetcher Fetcher
	// Now is the device's clock; nil means time.Now. Expiry is checked
	// against the later of Now and the time floor (TimeCheck,
	// ReadTimeFloor).
	Now func() time.Time
	// MinTime is the lowest the time floor can be: the agent passes its
	// build time, so a device whose clock restarts at 1970 (no RTC)
	// still refuses metadata that expired before it was built.
	MinTime time.Time
	// At, when set, checks expiry as of exactly this moment, for
	// debugging ("was this trusted on that day?"): the floor is neither
	// applied nor raised.
	At time.Time
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
	up         *updater.Updater
	mf         *metaFetcher
	consistent bool
	clock      TimeCheck
	// from go-tuf's updater config
	maxDelegations   int
	maxTargetsLength int64
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
	var targets location
	if cfg.TargetsURL != "" {
		if targets, err = parseLocation("TargetsURL", cfg.TargetsURL); err != nil {
			return nil, err
		}
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

// MetadataDir is the directory holding the trusted metadata.
func (c *Client) MetadataDir() string { return c.cfg.MetadataDir }

// Refresh runs the TUF client workflow: newer roots in order, then
// timestamp, snapshot and top-level targets, each checked for signatures,
// versions (rollback, mix-and-match) and expiry, and persisted in
// MetadataDir. On failure the previous trusted targets are dropped: the
// Client answers nothing until a Refresh succeeds.
func (c *Client) Refresh(ctx context.Context) error {
	c.up, c.mf = nil, nil
	root, err := readRoot(c.cfg.MetadataDir)
	if err != nil {
		return err
	}
	if _, err := trustedmetadata.New(root); err != nil {
		return fmt.Errorf("tuf: refresh: %w: %w", ErrUntrustedRootFile, classify(err))
	}
	up, mf, err := c.updater(ctx, root)
	if err != nil {
		return err
	}
	c.dropTornCache()
	tc := c.referenceTime()
	c.clock = tc
	if tc.Behind() {
		c.log.Warn("tuf: device clock is behind the trusted time floor; checking expiry against the floor",
			"clock", tc.Clock, "floor", tc.Floor)
	}
	up.UnsafeSetRefTime(tc.Reference())
	if err := up.Refresh(); err != nil {
		return fmt.Errorf("tuf: refresh from %s: %w", c.meta.base, classify(err))
	}
	// go-tuf renames its cache files into place without fsync: make them
	// durable now, so a power cut cannot leave torn metadata behind.
	if err := syncDir(c.cfg.MetadataDir); err != nil {
		return fmt.Errorf("tuf: refresh: %w", err)
	}
	// Every piece of metadata was valid at the reference time: it is the
	// newest trusted time seen.
	if err := c.raiseFloor(tc); err != nil {
		return fmt.Errorf("tuf: refresh: %w", err)
	}
	trusted := up.GetTrustedMetadataSet()
	c.up, c.mf = up, mf
	c.consistent = trusted.Root.Signed.ConsistentSnapshot
	c.log.Debug("tuf: refreshed",
		"root", trusted.Root.Signed.Version,
		"timestamp", trusted.Timestamp.Signed.Version,
		"snapshot", trusted.Snapshot.Signed.Version,
		"targets", trusted.Targets[metadata.TARGETS].Signed.Version,
		"consistent_snapshot", c.consistent)
	return nil
}

// updater makes a go-tuf updater over the trusted root whose metadata
// fetches run under ctx (rebound later by lookup).
func (c *Client) updater(ctx context.Context, root []byte) (*updater.Updater, *metaFetcher, error) {
	uc, err := config.New(c.meta.base, root)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: MetadataURL: %w", ErrInvalidConfig, err)
	}
	uc.LocalMetadataDir = c.cfg.MetadataDir
	uc.LocalTargetsDir = c.cfg.TargetDir
	uc.RemoteTargetsURL = "" // targets are fetched by Download, never by go-tuf
	c.maxDelegations, c.maxTargetsLength = uc.MaxDelegations, uc.TargetsMaxLength
	mf := &metaFetcher{ctx: ctx, f: HTTPFetcher{}}
	if c.meta.local {
		mf.f, mf.dir = DirFetcher{}, c.meta.base
	}
	uc.Fetcher = mf
	up, err := updater.New(uc)
	if err != nil {
		return nil, nil, fmt.Errorf("tuf: refresh: %w", classify(err))
	}
	return up, mf, nil
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

// Target describes one signed target.
type Target struct {
	Name   string
	Length int64
	// Hashes maps algorithm ("sha256", "sha512") to digest.
	Hashes map[string][]byte
	// Custom is the target's raw "custom" JSON, or nil.
	Custom []byte
}

// Target returns the signed description of a target, found the way the
// TUF specification says (5.6.7): the top-level targets first, then the
// delegated roles in pre-order depth-first order, following only
// delegations whose paths (or hashed bins) cover name, visiting each role
// once, stopping at a terminating delegation and after
// config.MaxDelegations roles. Delegated metadata is fetched (under ctx),
// verified and cached as the walk needs it. It needs a successful Refresh;
// a name no role signs is ErrUnknownTarget.
func (c *Client) Target(ctx context.Context, name string) (Target, error) {
	tf, err := c.lookup(ctx, name)
	if err != nil {
		return Target{}, err
	}
	return toTarget(name, tf), nil
}

// Targets returns every target a lookup by name would find, sorted by
// name: the top-level role's own, and those of the delegated roles
// reachable from it (each role once, at most config.MaxDelegations of
// them). Each name a delegated role lists is checked with the same walk as
// Target, so a name outside the role's paths, or behind a terminating
// delegation, is not listed. Delegated metadata is fetched under ctx.
func (c *Client) Targets(ctx context.Context) ([]Target, error) {
	if c.up == nil {
		return nil, ErrNotRefreshed
	}
	c.mf.ctx = ctx
	names := map[string]bool{}
	for n := range c.up.GetTopLevelTargets() {
		names[n] = true
	}
	if err := c.delegatedNames(names); err != nil {
		return nil, err
	}
	out := make([]Target, 0, len(names))
	for _, n := range slices.Sorted(maps.Keys(names)) {
		tf, err := c.lookup(ctx, n)
		if errors.Is(err, ErrUnknownTarget) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, toTarget(n, tf))
	}
	return out, nil
}

// delegatedNames adds the target names of every delegated role reachable
// from the top-level targets, loading each role's metadata into go-tuf's
// trusted set (verified against its delegator, its snapshot version and
// its expiry) the way the updater's walk does.
func (c *Client) delegatedNames(names map[string]bool) error {
	trusted := c.up.GetTrustedMetadataSet() // a copy sharing the Targets map
	type edge struct{ role, parent string }
	var todo []edge
	push := func(parent string) {
		m := trusted.Targets[parent]
		if m == nil || m.Signed.Delegations == nil {
			return
		}
		d := m.Signed.Delegations
		for _, r := range d.Roles {
			todo = append(todo, edge{r.Name, parent})
		}
		if d.SuccinctRoles != nil {
			for _, r := range d.SuccinctRoles.GetRoles() {
				todo = append(todo, edge{r, parent})
			}
		}
	}
	push(metadata.TARGETS)
	seen := map[string]bool{metadata.TARGETS: true}
	for len(todo) > 0 && len(seen) <= c.maxDelegations {
		e := todo[0]
		todo = todo[1:]
		if seen[e.role] {
			continue
		}
		seen[e.role] = true
		m, err := c.loadRole(&trusted, e.role, e.parent)
		if err != nil {
			return err
		}
		if m == nil {
			continue
		}
		for n := range m.Signed.Targets {
			names[n] = true
		}
		push(e.role)
	}
	return nil
}

// loadRole returns the delegated role's metadata from the trusted set, or
// fetches it (versioned name with consistent snapshots, the role name
// escaped as go-tuf escapes it) and has go-tuf verify and add it. A role
// the snapshot does not list is skipped (nil): the walk cannot reach it
// either.
func (c *Client) loadRole(trusted *trustedmetadata.TrustedMetadata, role, parent string) (*metadata.Metadata[metadata.TargetsType], error) {
	if m := trusted.Targets[role]; m != nil {
		return m, nil
	}
	meta, ok := trusted.Snapshot.Signed.Meta[role+".json"]
	if !ok {
		c.log.Warn("tuf: delegated role not in the snapshot", "role", role)
		return nil, nil
	}
	length := meta.Length
	if length == 0 {
		length = c.maxTargetsLength
	}
	name := url.PathEscape(role) + ".json"
	if trusted.Root.Signed.ConsistentSnapshot {
		name = strconv.FormatInt(meta.Version, 10) + "." + name
	}
	data, err := c.mf.DownloadFile(c.meta.base+"/"+name, length, 0)
	if err != nil {
		return nil, fmt.Errorf("tuf: role %q: %w", role, classify(err))
	}
	m, err := trusted.UpdateDelegatedTargets(data, role, parent)
	if err != nil {
		return nil, fmt.Errorf("tuf: role %q: %w", role, classify(err))
	}
	return m, nil
}

// lookup walks the delegation tree for name with go-tuf's updater.
func (c *Client) lookup(ctx context.Context, name string) (*metadata.TargetFiles, error) {
	if c.up == nil {
		return nil, ErrNotRefreshed
	}
	c.mf.ctx = ctx
	tf, err := c.up.GetTargetInfo(name)
	if err != nil {
		if sentinelOf(err) == nil {
			// go-tuf reports "not found" (and a role missing from the
			// snapshot) with plain errors.
			return nil, fmt.Errorf("tuf: %q: %w: %w", name, ErrUnknownTarget, err)
		}
		return nil, fmt.Errorf("tuf: target %q: %w", name, classify(err))
	}
	if tf == nil {
		return nil, fmt.Errorf("tuf: %q: %w", name, ErrUnknownTarget)
	}
	if err := syncDir(c.cfg.MetadataDir); err != nil { // delegated roles the walk cached
		return nil, fmt.Errorf("tuf: %w", err)
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
