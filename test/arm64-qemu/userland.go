package rig

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrNoUserland is returned by FetchUserland when the package index lacks
// one of the userland's packages or a download does not hold it.
var ErrNoUserland = errors.New("rig: userland package not available")

// ErrNoLib is returned by Userland.Lib for a soname the userland lacks.
var ErrNoLib = errors.New("rig: library not in the userland")

// ErrAptShow is returned by ParseAptShow for output it cannot read.
var ErrAptShow = errors.New("rig: malformed apt-cache show output")

// UserlandPackages are the bookworm packages FetchUserland unpacks: the C
// library with its dynamic loader, libgcc_s (which glibc loads for
// pthread_cancel and backtraces), and OpenSSL's libssl/libcrypto.
var UserlandPackages = []string{"libc6", "libgcc-s1", "libssl3"}

// Userland is Debian's shared-library userland for an architecture: the
// packages in UserlandPackages unpacked into one tree, exactly as they lay
// themselves out (Root/lib/<triplet>/libc.so.6,
// Root/lib/ld-linux-aarch64.so.1, Root/usr/lib/<triplet>/libcrypto.so.3,
// ...). A dynamically linked C program built with cross.CC finds its loader
// and libraries at the same paths in a guest that holds Files().
type Userland struct {
	Arch     Arch
	Root     string            // unpacked tree
	Packages map[string]string // package → Debian version unpacked, e.g. "libssl3" → "3.0.17-1~deb12u2"
}

// Triplet returns the GNU multiarch triplet Debian installs a's libraries
// under: aarch64-linux-gnu, arm-linux-gnueabihf or x86_64-linux-gnu.
func (a Arch) Triplet() string {
	switch a {
	case ARM64:
		return "aarch64-linux-gnu"
	case ARMHF:
		return "arm-linux-gnueabihf"
	case AMD64:
		return "x86_64-linux-gnu"
	}
	return ""
}

// userlandMaxAge is how long a cached userland is used without asking the
// package index whether a newer one exists.
const userlandMaxAge = 7 * 24 * time.Hour

// FetchUserland returns Debian bookworm's current userland for arch
// (UserlandPackages, candidates of bookworm, bookworm-updates and
// bookworm-security as the system's sources name them), unpacked under
// CacheDir()/userland/<arch>/.
//
// It works like FetchKernel: the same private apt state and lock file, a
// stamp file (listing package and version) marking a complete unpack, no
// network for a week after an unpack, the cached tree when the index cannot
// be read, and older trees pruned when newer versions arrive. logf
// receives progress lines; nil discards them.
func FetchUserland(ctx context.Context, arch Arch, logf func(format string, args ...any)) (*Userland, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if arch.Triplet() == "" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownArch, string(arch))
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	udir := filepath.Join(cache, "userland", string(arch))
	fresh := func(maxAge time.Duration) *Userland { return newestUserland(arch, udir, maxAge) }
	return cachedUnderLock(ctx, cache, udir, userlandMaxAge, fresh, func() (*Userland, error) {
		a := aptState{dir: filepath.Join(cache, "apt")}
		versions, err := a.userlandVersions(ctx, arch, logf)
		if err != nil {
			if u := fresh(0); u != nil {
				logf("rig: %v; using the cached userland", err)
				return u, nil
			}
			return nil, err
		}
		stampText := formatUserlandStamp(versions)
		key := userlandKey(stampText)
		err = stamped(stampPath(udir, key), stampText, func() error {
			return a.unpackUserland(ctx, arch, versions, udir, key, logf)
		})
		if err != nil {
			return nil, err
		}
		pruneKernels(udir, key, logf)
		return &Userland{Arch: arch, Root: filepath.Join(udir, key), Packages: versions}, nil
	})
}

// userlandVersions refreshes the index and reads the candidate version of
// every package in UserlandPackages for arch.
func (a aptState) userlandVersions(ctx context.Context, arch Arch, logf func(string, ...any)) (map[string]string, error) {
	if err := a.update(ctx, arch, logf); err != nil {
		return nil, err
	}
	args := []string{"show", "--no-all-versions"}
	for _, p := range UserlandPackages {
		args = append(args, p+":"+string(arch))
	}
	out, err := a.run(ctx, a.dir, "apt-cache", args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoUserland, err)
	}
	recs, err := ParseAptShow(out)
	if err != nil {
		return nil, err
	}
	versions := map[string]string{}
	for _, r := range recs {
		if r.Architecture == string(arch) && slices.Contains(UserlandPackages, r.Package) {
			versions[r.Package] = r.Version
		}
	}
	for _, p := range UserlandPackages {
		if versions[p] == "" {
			return nil, fmt.Errorf("%w: index names no %s:%s", ErrNoUserland, p, arch)
		}
	}
	return versions, nil
}

// unpackUserland downloads the packages at the given versions, unpacks
// them into one tree and renames it to udir/key.
func (a aptState) unpackUserland(ctx context.Context, arch Arch, versions map[string]string, udir, key string, logf func(string, ...any)) error {
	tmp, err := os.MkdirTemp(udir, ".tmp-"+key+"-")
	if err != nil {
		return fmt.Errorf("rig: userland temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	dl := filepath.Join(tmp, "download")
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return fmt.Errorf("rig: userland temp dir: %w", err)
	}
	args := []string{"-q", "download"}
	for _, p := range UserlandPackages {
		args = append(args, p+":"+string(arch)+"="+versions[p])
	}
	logf("rig: apt-get %s", strings.Join(args[1:], " "))
	if _, err := a.run(ctx, dl, "apt-get", args...); err != nil {
		return err
	}
	for _, p := range UserlandPackages {
		debs, _ := filepath.Glob(filepath.Join(dl, p+"_*_"+string(arch)+".deb"))
		if len(debs) != 1 {
			return fmt.Errorf("%w: download of %s:%s left %d .deb files", ErrNoUserland, p, arch, len(debs))
		}
		if err := runTool(ctx, "dpkg-deb", "-x", debs[0], root); err != nil {
			return err
		}
	}
	u := &Userland{Arch: arch, Root: root}
	for _, so := range []string{"libc.so.6", "libcrypto.so.3"} {
		if _, err := u.Lib(so); err != nil {
			return fmt.Errorf("%w: unpacked packages lack %s: %w", ErrNoUserland, so, err)
		}
	}
	final := filepath.Join(udir, key)
	if err := os.RemoveAll(final); err != nil {
		return fmt.Errorf("rig: remove stale %s: %w", final, err)
	}
	if err := os.Rename(root, final); err != nil {
		return fmt.Errorf("rig: install userland: %w", err)
	}
	return nil
}

// newestUserland returns the most recently stamped userland in udir, or nil
// if there is none or (maxAge > 0) it is older than maxAge.
func newestUserland(arch Arch, udir string, maxAge time.Duration) *Userland {
	stamps, _ := filepath.Glob(filepath.Join(udir, "*.ok"))
	var best string
	var bestTime time.Time
	for _, s := range stamps {
		fi, err := os.Stat(s)
		if err != nil {
			continue
		}
		if best == "" || fi.ModTime().After(bestTime) {
			best, bestTime = s, fi.ModTime()
		}
	}
	if best == "" || (maxAge > 0 && time.Since(bestTime) > maxAge) {
		return nil
	}
	b, err := os.ReadFile(best)
	if err != nil {
		return nil
	}
	versions, err := parseUserlandStamp(b)
	if err != nil {
		return nil
	}
	u := &Userland{Arch: arch, Root: strings.TrimSuffix(best, ".ok"), Packages: versions}
	if fi, err := os.Stat(u.Root); err != nil || !fi.IsDir() {
		return nil
	}
	return u
}

// formatUserlandStamp writes "package version" lines in UserlandPackages
// order.
func formatUserlandStamp(versions map[string]string) string {
	var b strings.Builder
	for _, p := range UserlandPackages {
		fmt.Fprintf(&b, "%s %s\n", p, versions[p])
	}
	return b.String()
}

// parseUserlandStamp reads formatUserlandStamp's output; every package of
// UserlandPackages must be there.
func parseUserlandStamp(b []byte) (map[string]string, error) {
	versions := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		p, v, ok := strings.Cut(line, " ")
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: stamp line %q", ErrNoUserland, line)
		}
		versions[p] = v
	}
	for _, p := range UserlandPackages {
		if versions[p] == "" {
			return nil, fmt.Errorf("%w: stamp lacks %s", ErrNoUserland, p)
		}
	}
	return versions, nil
}

// userlandKey names a userland's directory after the versions it holds.
func userlandKey(stampText string) string {
	sum := sha256.Sum256([]byte(stampText))
	return hex.EncodeToString(sum[:8])
}

// AptRecord is one package stanza of apt-cache show.
type AptRecord struct {
	Package, Version, Architecture string
}

// ParseAptShow reads the stanzas of `apt-cache show` output (RFC 822-style
// paragraphs separated by blank lines) and returns the Package, Version and
// Architecture of each. A stanza without Package or Version is an
// ErrAptShow.
func ParseAptShow(out []byte) ([]AptRecord, error) {
	var recs []AptRecord
	var cur AptRecord
	inStanza := false
	flush := func() error {
		if !inStanza {
			return nil
		}
		if cur.Package == "" || cur.Version == "" {
			return fmt.Errorf("%w: stanza without Package or Version (%+v)", ErrAptShow, cur)
		}
		recs = append(recs, cur)
		cur, inStanza = AptRecord{}, false
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		inStanza = true
		if line[0] == ' ' || line[0] == '\t' {
			continue // continuation of a multi-line field
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %q has no field name", ErrAptShow, line)
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			cur.Package = v
		case "Version":
			cur.Version = v
		case "Architecture":
			cur.Architecture = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAptShow, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return recs, nil
}

// libDirs are the directories, relative to the root, that Debian's dynamic
// loader searches by default, in its order.
func (u *Userland) libDirs() []string {
	t := u.Arch.Triplet()
	return []string{"lib/" + t, "usr/lib/" + t, "lib", "usr/lib", "lib64"}
}

// Lib returns the host path of a library of the userland by soname, e.g.
// Lib("libc.so.6"), Lib("libcrypto.so.3"), searched where the guest's
// loader searches. Symbolic links are resolved inside the userland (the
// packages' links may be absolute), so the result is the real file.
func (u *Userland) Lib(soname string) (string, error) {
	if soname == "" || strings.Contains(soname, "/") {
		return "", fmt.Errorf("%w: %q is not a soname", ErrNoLib, soname)
	}
	for _, d := range u.libDirs() {
		p, err := u.resolve(path.Join(d, soname))
		if err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (%s)", ErrNoLib, soname, u.Arch)
}

// resolve follows symbolic links of the last path element inside the
// root, as the guest would see them, and returns the host path of the
// regular file.
func (u *Userland) resolve(p string) (string, error) {
	for range 40 {
		host := filepath.Join(u.Root, filepath.FromSlash(p))
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if !fi.Mode().IsRegular() {
				return "", fmt.Errorf("%w: %s is not a file", ErrNoLib, p)
			}
			return host, nil
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = strings.TrimPrefix(path.Clean("/"+target), "/")
	}
	return "", fmt.Errorf("%w: %s: too many links", ErrNoLib, p)
}

// skipInGuest are directories of the packages a guest program never reads.
var skipInGuest = []string{"usr/share/doc", "usr/share/lintian", "usr/share/man", "usr/share/bug"}

// Files returns the userland as initramfs entries: every regular file (by
// host path, with its mode) and every symbolic link (as a link record,
// target in Data), at the paths the packages install them, without the
// documentation under usr/share. With them in the guest, a dynamically
// linked program built against Debian's libraries runs.
func (u *Userland) Files() ([]File, error) {
	var files []File
	err := filepath.WalkDir(u.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(u.Root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if slices.Contains(skipInGuest, rel) {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files = append(files, File{Path: rel, Data: []byte(target), Mode: fs.ModeSymlink | 0o777})
		case fi.Mode().IsRegular():
			files = append(files, File{Path: rel, Src: p, Mode: fi.Mode().Perm()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rig: userland files: %w", err)
	}
	return files, nil
}
