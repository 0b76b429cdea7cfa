package rig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Arch is a Debian architecture name.
type Arch string

// The architectures the rig boots.
const (
	ARM64 Arch = "arm64"
	ARMHF Arch = "armhf"
	AMD64 Arch = "amd64"
)

// ErrUnknownArch is returned for an Arch other than ARM64, ARMHF and AMD64.
var ErrUnknownArch = errors.New("rig: unknown architecture")

// ErrUnknownModule is returned by ModuleClosure for a name that is neither
// a module of the kernel nor built into it.
var ErrUnknownModule = errors.New("rig: unknown kernel module")

// ErrNoKernel is returned by FetchKernel when the package index does not
// name a kernel for the architecture.
var ErrNoKernel = errors.New("rig: no kernel package found")

// GOARCH returns the Go GOARCH and GOARM values that build for a.
func (a Arch) GOARCH() (goarch, goarm string) {
	switch a {
	case ARM64:
		return "arm64", ""
	case ARMHF:
		return "arm", "7"
	case AMD64:
		return "amd64", ""
	}
	return "", ""
}

// metaPackage is the Debian package that always depends on the newest
// kernel image of a.
func (a Arch) metaPackage() (string, error) {
	switch a {
	case ARM64:
		return "linux-image-arm64", nil
	case ARMHF:
		return "linux-image-armmp", nil
	case AMD64:
		return "linux-image-amd64", nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownArch, string(a))
}

// CacheDir returns the directory the rig keeps downloads in:
// $GRAFT_RIG_CACHE, else $XDG_CACHE_HOME/graft-rig, else
// $HOME/.cache/graft-rig. It lies outside the repository so that nothing
// downloaded is ever committed.
func CacheDir() (string, error) {
	if d := os.Getenv("GRAFT_RIG_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "graft-rig"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("rig: cache dir: %w", err)
	}
	return filepath.Join(home, ".cache", "graft-rig"), nil
}

// Kernel is an unpacked Debian kernel image package.
type Kernel struct {
	Arch    Arch
	Release string // e.g. 6.1.0-50-arm64
	Image   string // path to the vmlinuz (arm64 Image / armhf zImage / amd64 bzImage)
	Root    string // extracted package root: Root/lib/modules/<Release>/...
}

// kernelMaxAge is how long a cached kernel is used without asking the
// package index whether a newer one exists.
const kernelMaxAge = 7 * 24 * time.Hour

// FetchKernel returns Debian bookworm's current kernel for arch, unpacked
// under CacheDir()/kernels/<arch>/<release> with modules.dep generated.
//
// A kernel unpacked less than a week ago is returned without touching the
// network. Otherwise the package index is refreshed in a private apt state
// under the cache (the system's dpkg configuration is left alone), the
// release is read from the meta package's dependency, and the package is
// downloaded and unpacked into a temporary directory that is renamed into
// place. A lock file serialises callers in this and other processes; a
// stamp file marks a complete unpack. A new release replaces the older
// ones in the cache. If the index cannot be read but an older kernel is
// cached, that kernel is returned.
//
// logf receives progress lines; nil discards them.
func FetchKernel(ctx context.Context, arch Arch, logf func(format string, args ...any)) (*Kernel, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	meta, err := arch.metaPackage()
	if err != nil {
		return nil, err
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	kdir := filepath.Join(cache, "kernels", string(arch))
	fresh := func(maxAge time.Duration) *Kernel { return newestStamped(arch, kdir, maxAge) }
	return cachedUnderLock(ctx, cache, kdir, kernelMaxAge, fresh, func() (*Kernel, error) {
		a := aptState{dir: filepath.Join(cache, "apt")}
		release, err := a.resolveRelease(ctx, arch, meta, logf)
		if err != nil {
			if k := fresh(0); k != nil {
				logf("rig: %v; using cached kernel %s", err, k.Release)
				return k, nil
			}
			return nil, err
		}
		k := kernelAt(arch, kdir, release)
		err = stamped(stampPath(kdir, release), release+"\n", func() error {
			return a.unpackKernel(ctx, arch, release, kdir, logf)
		})
		if err != nil {
			return nil, err
		}
		pruneKernels(kdir, release, logf)
		return k, nil
	})
}

// cachedUnderLock returns fresh(maxAge) when the cache dir holds a recent
// enough entry; otherwise it takes the rig's lock, looks again (another
// process may have filled the cache meanwhile) and calls fill.
func cachedUnderLock[T any](ctx context.Context, cache, dir string, maxAge time.Duration, fresh func(time.Duration) *T, fill func() (*T, error)) (*T, error) {
	if v := fresh(maxAge); v != nil {
		return v, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("rig: cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "rig.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if v := fresh(maxAge); v != nil {
		return v, nil
	}
	return fill()
}

// stamped makes sure the entry a stamp file marks is complete: an
// existing stamp is touched (the entry is current again); otherwise build
// runs and the stamp is written with text.
func stamped(stamp, text string, build func() error) error {
	if _, err := os.Stat(stamp); err == nil {
		now := time.Now()
		if err := os.Chtimes(stamp, now, now); err != nil {
			return fmt.Errorf("rig: refresh stamp: %w", err)
		}
		return nil
	}
	if err := build(); err != nil {
		return err
	}
	if err := os.WriteFile(stamp, []byte(text), 0o644); err != nil {
		return fmt.Errorf("rig: write stamp: %w", err)
	}
	return nil
}

// pruneKernels removes the cached kernels of kdir other than keep: each is
// a few hundred megabytes, and a newer release replaced them.
func pruneKernels(kdir, keep string, logf func(string, ...any)) {
	stamps, _ := filepath.Glob(filepath.Join(kdir, "*.ok"))
	for _, s := range stamps {
		release := strings.TrimSuffix(filepath.Base(s), ".ok")
		if release == keep {
			continue
		}
		// The stamp goes first, so nobody picks a half-removed kernel.
		if err := os.Remove(s); err != nil {
			logf("rig: prune %s: %v", release, err)
			continue
		}
		if err := os.RemoveAll(filepath.Join(kdir, release)); err != nil {
			logf("rig: prune %s: %v", release, err)
		}
	}
}

func kernelAt(arch Arch, kdir, release string) *Kernel {
	root := filepath.Join(kdir, release)
	return &Kernel{
		Arch:    arch,
		Release: release,
		Image:   filepath.Join(root, "boot", "vmlinuz-"+release),
		Root:    root,
	}
}

func stampPath(kdir, release string) string { return filepath.Join(kdir, release+".ok") }

// newestStamped returns the most recently stamped kernel in kdir, or nil if
// there is none or (maxAge > 0) it is older than maxAge.
func newestStamped(arch Arch, kdir string, maxAge time.Duration) *Kernel {
	stamps, _ := filepath.Glob(filepath.Join(kdir, "*.ok"))
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
	k := kernelAt(arch, kdir, strings.TrimSuffix(filepath.Base(best), ".ok"))
	if _, err := os.Stat(k.Image); err != nil {
		return nil
	}
	return k
}

// lockFile takes an exclusive flock on name, polling so that ctx can end the
// wait. The returned func releases it.
func lockFile(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("rig: lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("rig: lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("rig: waiting for lock %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// indexMaxAge is how long a downloaded package index is used before
// apt-get update runs again.
const indexMaxAge = time.Hour

// aptState is a private apt configuration and package index under dir, for
// all three architectures, using the system's sources.
type aptState struct{ dir string }

func (a aptState) args() []string {
	return []string{
		"-o", "Dir::State=" + filepath.Join(a.dir, "state"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "APT::Architecture=arm64",
		"-o", "APT::Architectures::=arm64",
		"-o", "APT::Architectures::=armhf",
		"-o", "APT::Architectures::=amd64",
		"-o", "Debug::NoLocking=1",
	}
}

func (a aptState) run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	return runApt(ctx, a.args(), dir, name, args...)
}

// runApt runs an apt program (apt-get, apt-cache) in dir with a private
// configuration (opts) and returns its standard output.
func runApt(ctx context.Context, opts []string, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, append(opts, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("rig: %s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 3))
	}
	return out, nil
}

// update refreshes the index. Individual index failures (a mirror in the
// middle of a sync, a foreign repository without some architecture) are
// tolerated as long as the main suite's list for arch arrived.
func (a aptState) update(ctx context.Context, arch Arch, logf func(string, ...any)) error {
	lists := filepath.Join(a.dir, "state", "lists")
	for _, d := range []string{filepath.Join(lists, "partial"), filepath.Join(a.dir, "cache", "archives", "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("rig: apt state: %w", err)
		}
	}
	mainLists := filepath.Join(lists, "*_dists_bookworm_main_binary-"+string(arch)+"_Packages*")
	// apt gives the lists the archive's dates, so a stamp of our own says
	// when the index was last fetched.
	stamp := filepath.Join(a.dir, "updated")
	if fresh, _ := filepath.Glob(mainLists); len(fresh) > 0 {
		if fi, err := os.Stat(stamp); err == nil && time.Since(fi.ModTime()) < indexMaxAge {
			return nil
		}
	}
	logf("rig: apt-get update (private state %s)", a.dir)
	_, uerr := a.run(ctx, a.dir, "apt-get", "-q", "update")
	main, _ := filepath.Glob(mainLists)
	if len(main) == 0 {
		if uerr == nil {
			uerr = errors.New("no index arrived")
		}
		return fmt.Errorf("rig: bookworm main index for %s missing: %w", arch, uerr)
	}
	if uerr != nil {
		logf("rig: apt-get update reported errors, continuing with the main suite: %v", uerr)
	}
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		return fmt.Errorf("rig: apt state: %w", err)
	}
	return nil
}

func (a aptState) resolveRelease(ctx context.Context, arch Arch, meta string, logf func(string, ...any)) (string, error) {
	if err := a.update(ctx, arch, logf); err != nil {
		return "", err
	}
	out, err := a.run(ctx, a.dir, "apt-cache", "depends", meta+":"+string(arch))
	if err != nil {
		return "", err
	}
	release, ok := releaseFromDepends(out, arch)
	if !ok {
		return "", fmt.Errorf("%w: %s:%s depends on no linux-image-*", ErrNoKernel, meta, arch)
	}
	return release, nil
}

// releaseFromDepends reads the kernel release out of `apt-cache depends`
// output for a linux-image meta package: the first Depends line naming
// linux-image-<release>.
func releaseFromDepends(out []byte, arch Arch) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		dep, ok := strings.CutPrefix(line, "Depends:")
		if !ok {
			continue
		}
		dep = strings.TrimSpace(dep)
		dep = strings.TrimSuffix(dep, ":"+string(arch))
		rel, ok := strings.CutPrefix(dep, "linux-image-")
		if !ok || rel == "" || strings.ContainsAny(rel, " /<>:") || rel[0] < '0' || rel[0] > '9' {
			continue
		}
		return rel, true
	}
	return "", false
}

// unpackKernel downloads linux-image-<release>, unpacks it, runs depmod and
// renames the result to kdir/<release>.
func (a aptState) unpackKernel(ctx context.Context, arch Arch, release, kdir string, logf func(string, ...any)) error {
	tmp, err := os.MkdirTemp(kdir, ".tmp-"+release+"-")
	if err != nil {
		return fmt.Errorf("rig: kernel temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	dl := filepath.Join(tmp, "download")
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return fmt.Errorf("rig: kernel temp dir: %w", err)
	}
	pkg := "linux-image-" + release + ":" + string(arch)
	logf("rig: apt-get download %s", pkg)
	// apt warns that the _apt sandbox user cannot write the directory; the
	// download proceeds unsandboxed, which is harmless here.
	if _, err := a.run(ctx, dl, "apt-get", "-q", "download", pkg); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "linux-image-"+release+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("%w: download of %s left %d .deb files", ErrNoKernel, pkg, len(debs))
	}
	if err := runTool(ctx, "dpkg-deb", "-x", debs[0], root); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+release)); err != nil {
		return fmt.Errorf("%w: %s has no boot/vmlinuz-%s", ErrNoKernel, pkg, release)
	}
	logf("rig: depmod %s", release)
	if err := runTool(ctx, "depmod", "-b", root, release); err != nil {
		return err
	}
	final := filepath.Join(kdir, release)
	// A directory without a stamp is an interrupted earlier run.
	if err := os.RemoveAll(final); err != nil {
		return fmt.Errorf("rig: remove stale %s: %w", final, err)
	}
	if err := os.Rename(root, final); err != nil {
		return fmt.Errorf("rig: install kernel: %w", err)
	}
	return nil
}

func runTool(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("rig: %s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// ModuleClosure returns the absolute paths of the .ko files needed to load
// the named modules, dependencies first, each once. Names may use '-' or
// '_'. A module built into the kernel is skipped; a name that is neither a
// module nor built in is an ErrUnknownModule.
func (k *Kernel) ModuleClosure(names ...string) ([]string, error) {
	rel, err := k.moduleClosure(names...)
	if err != nil {
		return nil, err
	}
	dir := k.moduleDir()
	abs := make([]string, len(rel))
	for i, r := range rel {
		abs[i] = filepath.Join(dir, filepath.FromSlash(r))
	}
	return abs, nil
}

func (k *Kernel) moduleDir() string { return filepath.Join(k.Root, "lib", "modules", k.Release) }

// moduleClosure is ModuleClosure with paths relative to the module
// directory, as modules.dep writes them.
func (k *Kernel) moduleClosure(names ...string) ([]string, error) {
	dir := k.moduleDir()
	depFile, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("rig: modules of %s: %w", k.Release, err)
	}
	defer depFile.Close()
	deps, err := ParseModulesDep(depFile)
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				builtin[ModuleName(line)] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("rig: modules.builtin of %s: %w", k.Release, err)
	}
	return deps.Closure(builtin, names...)
}

// ModuleDeps is a parsed modules.dep: module name → its entry.
type ModuleDeps map[string]ModuleDep

// ModuleDep is one line of modules.dep.
type ModuleDep struct {
	Path string   // relative to lib/modules/<release>, e.g. kernel/fs/ext4/ext4.ko
	Deps []string // paths of the modules it needs, as listed
}

// ErrModulesDep is returned by ParseModulesDep for a malformed line.
var ErrModulesDep = errors.New("rig: malformed modules.dep")

// ParseModulesDep parses the modules.dep format written by depmod: one
// line per module, "path: dep-path dep-path ...".
func ParseModulesDep(r io.Reader) (ModuleDeps, error) {
	deps := ModuleDeps{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, rest, ok := strings.Cut(line, ":")
		p = strings.TrimSpace(p)
		if !ok || !isModulePath(p) {
			return nil, fmt.Errorf("%w: line %d: no \"path.ko:\"", ErrModulesDep, n)
		}
		e := ModuleDep{Path: p}
		for _, d := range strings.Fields(rest) {
			if !isModulePath(d) {
				return nil, fmt.Errorf("%w: line %d: bad dependency %q", ErrModulesDep, n, d)
			}
			e.Deps = append(e.Deps, d)
		}
		name := ModuleName(p)
		if _, dup := deps[name]; dup {
			return nil, fmt.Errorf("%w: line %d: module %s listed twice", ErrModulesDep, n, name)
		}
		deps[name] = e
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModulesDep, err)
	}
	return deps, nil
}

// moduleSuffixes are the file name endings depmod lists.
var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// isModulePath reports whether p is a clean relative path to a module file
// with a non-empty name.
func isModulePath(p string) bool {
	if !filepath.IsLocal(p) || path.Clean(p) != p {
		return false
	}
	b := path.Base(p)
	for _, s := range moduleSuffixes {
		if name, ok := strings.CutSuffix(b, s); ok {
			return name != "" && !strings.Contains(name, ".ko")
		}
	}
	return false
}

// ModuleName returns the kernel's name for a module path or name:
// directory and .ko/.ko.xz/.ko.zst suffix dropped, '-' written as '_'.
func ModuleName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// Closure returns the paths of the named modules and everything they need,
// dependencies first, each once. Names in builtin are skipped.
func (d ModuleDeps) Closure(builtin map[string]bool, names ...string) ([]string, error) {
	var order []string
	done := map[string]bool{}
	visiting := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		if done[name] {
			return nil
		}
		e, ok := d[name]
		if !ok {
			if builtin[name] {
				done[name] = true
				return nil
			}
			return fmt.Errorf("%w: %s", ErrUnknownModule, name)
		}
		if visiting[name] {
			return fmt.Errorf("%w: dependency cycle through %s", ErrModulesDep, name)
		}
		visiting[name] = true
		for _, dep := range e.Deps {
			if err := visit(ModuleName(dep)); err != nil {
				return err
			}
		}
		visiting[name] = false
		done[name] = true
		order = append(order, e.Path)
		return nil
	}
	for _, n := range names {
		if err := visit(ModuleName(n)); err != nil {
			return nil, err
		}
	}
	return order, nil
}
