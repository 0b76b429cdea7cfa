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
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoHeaders is returned by FetchHeaders when the package index does not
// name the kernel's headers or a download does not hold them.
var ErrNoHeaders = errors.New("rig: kernel headers not available")

// ErrModuleBuild is returned by BuildModule when the kernel cannot be
// built for here or kbuild fails; the error carries the build's last
// lines.
var ErrModuleBuild = errors.New("rig: module build failed")

// FetchHeaders returns the build tree for out-of-tree modules of k
// (/usr/src/linux-headers-<release> with what it needs): Debian's
// linux-headers-<release>, the -common package it includes and
// linux-kbuild for this machine, downloaded with the rig's private apt
// state and unpacked under CacheDir()/headers/<arch>/<release>. Nothing
// is installed on the host. The one absolute path in the tree (the
// Makefile's include of the -common tree) is rewritten to the unpacked
// copy.
func FetchHeaders(ctx context.Context, k *Kernel, logf func(format string, args ...any)) (string, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	hdir := filepath.Join(cache, "headers", string(k.Arch))
	build := headersBuildDir(hdir, k.Release)
	stamp := stampPath(hdir, k.Release)
	if _, err := os.Stat(stamp); err == nil {
		return build, nil
	}
	if err := os.MkdirAll(hdir, 0o755); err != nil {
		return "", fmt.Errorf("rig: headers cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "rig.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(stamp); err == nil {
		return build, nil
	}

	a := aptState{dir: filepath.Join(cache, "apt")}
	if err := a.update(ctx, k.Arch, logf); err != nil {
		return "", err
	}
	pkg := "linux-headers-" + k.Release
	out, err := a.run(ctx, a.dir, "apt-cache", "depends", pkg+":"+string(k.Arch))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoHeaders, err)
	}
	pkgs := []string{pkg + ":" + string(k.Arch)}
	for _, d := range headerDepends(out) {
		switch {
		case strings.HasPrefix(d, "linux-kbuild-"):
			// kbuild's programs (fixdep, modpost) run here.
			pkgs = append(pkgs, d+":"+hostArch())
		case strings.HasSuffix(d, "-common"):
			pkgs = append(pkgs, d) // Architecture: all
		default:
			pkgs = append(pkgs, d+":"+string(k.Arch))
		}
	}
	if len(pkgs) < 3 {
		return "", fmt.Errorf("%w: %s depends on %v, want a -common and a linux-kbuild package", ErrNoHeaders, pkg, pkgs[1:])
	}

	tmp, err := os.MkdirTemp(hdir, ".tmp-"+k.Release+"-")
	if err != nil {
		return "", fmt.Errorf("rig: headers temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	dl, root := filepath.Join(tmp, "download"), filepath.Join(tmp, "root")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return "", err
	}
	logf("rig: apt-get download %s", strings.Join(pkgs, " "))
	if _, err := a.run(ctx, dl, "apt-get", append([]string{"-q", "download"}, pkgs...)...); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoHeaders, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != len(pkgs) {
		return "", fmt.Errorf("%w: download of %d packages left %d .deb files", ErrNoHeaders, len(pkgs), len(debs))
	}
	for _, deb := range debs {
		if err := runTool(ctx, "dpkg-deb", "-x", deb, root); err != nil {
			return "", err
		}
	}
	final := filepath.Join(hdir, k.Release)
	if err := relocateHeaders(root, final, k.Release); err != nil {
		return "", err
	}
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("rig: remove stale %s: %w", final, err)
	}
	if err := os.Rename(root, final); err != nil {
		return "", fmt.Errorf("rig: install headers: %w", err)
	}
	if err := os.WriteFile(stamp, []byte(k.Release+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("rig: write stamp: %w", err)
	}
	return build, nil
}

// headersBuildDir is where the build tree of release lies in the
// unpacked tree hdir/<release>.
func headersBuildDir(hdir, release string) string {
	return filepath.Join(hdir, release, "usr", "src", "linux-headers-"+release)
}

// relocateHeaders rewrites the absolute /usr/src/ include of the
// release's Makefile (unpacked under root, to be renamed to final) to
// point into final.
func relocateHeaders(root, final, release string) error {
	mk := filepath.Join(root, "usr", "src", "linux-headers-"+release, "Makefile")
	b, err := os.ReadFile(mk)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoHeaders, err)
	}
	fixed := bytes.ReplaceAll(b, []byte("include /usr/src/"), []byte("include "+filepath.Join(final, "usr", "src")+"/"))
	if bytes.Equal(fixed, b) {
		return fmt.Errorf("%w: %s includes no /usr/src/ tree", ErrNoHeaders, mk)
	}
	return os.WriteFile(mk, fixed, 0o644)
}

// headerDepends returns the linux-headers-* and linux-kbuild-* packages
// that `apt-cache depends` lists as direct dependencies, without
// architecture qualifiers.
func headerDepends(out []byte) []string {
	var deps []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends:")
		if !ok {
			continue
		}
		dep = strings.Trim(strings.TrimSpace(dep), "<>")
		dep, _, _ = strings.Cut(dep, ":")
		if (strings.HasPrefix(dep, "linux-headers-") || strings.HasPrefix(dep, "linux-kbuild-")) && !slices.Contains(deps, dep) {
			deps = append(deps, dep)
		}
	}
	return deps
}

// hostArch is the Debian name of this machine's architecture.
func hostArch() string {
	if runtime.GOARCH == "arm" {
		return string(ARMHF)
	}
	return runtime.GOARCH
}

// BuildModule builds the out-of-tree module whose sources (a Kbuild or
// Makefile and its .c files) are in srcDir for k with `make -C <headers>
// M=<copy of srcDir> modules`, and returns the path of the one .ko it
// makes. Results are cached under CacheDir()/modules/<release>/<hash of
// the sources>/, so an unchanged module is not rebuilt. Only kernels of
// this machine's architecture are supported (no cross-compiling).
func BuildModule(ctx context.Context, k *Kernel, srcDir string) (string, error) {
	if string(k.Arch) != hostArch() {
		return "", fmt.Errorf("%w: kernel is %s, this machine %s", ErrModuleBuild, k.Arch, hostArch())
	}
	sum, files, err := hashSources(srcDir, k.Release)
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "modules", k.Release, sum)
	if kos, _ := filepath.Glob(filepath.Join(dir, "*.ko")); len(kos) == 1 {
		return kos[0], nil
	}
	headers, err := FetchHeaders(ctx, k, nil)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "graft-kbuild-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for name, b := range files {
		p := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return "", err
		}
	}
	cmd := exec.CommandContext(ctx, "make", "-C", headers, "M="+tmp, "modules")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: make -C %s M=%s modules: %w: %s", ErrModuleBuild, headers, srcDir, err, lastLines(string(out), 8))
	}
	kos, _ := filepath.Glob(filepath.Join(tmp, "*.ko"))
	if len(kos) != 1 {
		return "", fmt.Errorf("%w: %s made %d .ko files, want 1", ErrModuleBuild, srcDir, len(kos))
	}
	ko, err := os.ReadFile(kos[0])
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-"+sum[:12]+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	if err := os.WriteFile(filepath.Join(stage, filepath.Base(kos[0])), ko, 0o644); err != nil {
		return "", err
	}
	// A concurrent build of the same sources may have won; its result is
	// as good.
	if err := os.Rename(stage, dir); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return "", fmt.Errorf("rig: cache module: %w", err)
	}
	return filepath.Join(dir, filepath.Base(kos[0])), nil
}

// hashSources reads the regular files under srcDir and returns a hash of
// their names and contents together with release, and the files by
// relative path.
func hashSources(srcDir, release string) (string, map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(srcDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(srcDir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		return "", nil, fmt.Errorf("%w: sources: %w", ErrModuleBuild, err)
	}
	if len(files) == 0 {
		return "", nil, fmt.Errorf("%w: no sources in %s", ErrModuleBuild, srcDir)
	}
	h := sha256.New()
	fmt.Fprintf(h, "release %s\n", release)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s %d\n", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil)), files, nil
}
