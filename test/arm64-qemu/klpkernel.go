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
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoLivepatchKernel is returned by CachedLivepatchKernel when no
// livepatch kernel has been built into the cache (make
// arm64-livepatch-kernel builds one).
var ErrNoLivepatchKernel = errors.New("rig: no arm64 livepatch kernel built")

// ErrKernelConfig is returned by BuildLivepatchKernel when the generated
// .config does not carry a line of the configuration fragment (a
// dependency Kconfig did not satisfy); the message names the lines.
var ErrKernelConfig = errors.New("rig: kernel config fragment not satisfied")

// ErrKernelBuild is returned by BuildLivepatchKernel when a step of the
// source build fails; the error carries the step and its last lines.
var ErrKernelBuild = errors.New("rig: kernel build failed")

// LivepatchKernel is an arm64 kernel built from Debian's linux-source
// with CONFIG_LIVEPATCH=y, for QEMU's virt machine.
type LivepatchKernel struct {
	*Kernel        // Image (arch/arm64/boot/Image) and Root/lib/modules/<Release>
	Tree    string // the configured, built source tree: the headers for out-of-tree modules (M=)
	Source  string // the linux-source package and version it was built from

	config string // hash of the configuration fragment it was built with
}

// klpConfigHash identifies klpConfigFragment: a kernel built with another
// fragment is stale.
func klpConfigHash() string {
	sum := sha256.Sum256([]byte(klpConfigFragment))
	return hex.EncodeToString(sum[:8])
}

// klpSourceSuite is where Debian keeps linux-source-7.x.
const klpSourceSuite = "trixie-backports"

// klpLocalVersion is appended to the kernel release (CONFIG_LOCALVERSION).
const klpLocalVersion = "-graft-klp"

// klpConfigFragment is forced on top of `make allnoconfig`
// (KCONFIG_ALLCONFIG): the smallest kernel that boots graft-init on
// QEMU's virt machine (PL011 console, gzip initramfs, devtmpfs, virtio
// over PCI and MMIO built in), runs a static Go test binary (futex, epoll,
// memfd, sysctl) and loads live patches (modules with unloading and
// modversions, kallsyms of all symbols, dynamic ftrace — on arm64
// DYNAMIC_FTRACE_WITH_ARGS through -fpatchable-function-entry — and
// LIVEPATCH, which arm64 has since 6.17). The filesystems and crc32c are
// built in because DefaultModules names them.
const klpConfigFragment = `CONFIG_LOCALVERSION="` + klpLocalVersion + `"
# CONFIG_LOCALVERSION_AUTO is not set
CONFIG_PRINTK=y
CONFIG_TTY=y
CONFIG_MULTIUSER=y
CONFIG_SYSCTL=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_TMPFS=y
CONFIG_SHMEM=y
CONFIG_MEMFD_CREATE=y
CONFIG_FUTEX=y
CONFIG_EPOLL=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EVENTFD=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_BINFMT_ELF=y
CONFIG_BINFMT_SCRIPT=y
CONFIG_DEVTMPFS=y
CONFIG_DEVTMPFS_MOUNT=y
CONFIG_BLOCK=y
CONFIG_PCI=y
CONFIG_PCI_HOST_GENERIC=y
CONFIG_VIRTIO_MENU=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_MMIO=y
CONFIG_BLK_DEV=y
CONFIG_VIRTIO_BLK=y
CONFIG_NET=y
CONFIG_INET=y
CONFIG_UNIX=y
CONFIG_NETDEVICES=y
CONFIG_NET_CORE=y
CONFIG_VIRTIO_NET=y
CONFIG_SERIAL_AMBA_PL011=y
CONFIG_SERIAL_AMBA_PL011_CONSOLE=y
CONFIG_EXT4_FS=y
CONFIG_VFAT_FS=y
CONFIG_NLS=y
CONFIG_NLS_CODEPAGE_437=y
CONFIG_NLS_ASCII=y
CONFIG_CRYPTO=y
CONFIG_CRYPTO_CRC32C=y
CONFIG_MODULES=y
CONFIG_MODULE_UNLOAD=y
CONFIG_MODVERSIONS=y
CONFIG_BASIC_MODVERSIONS=y
# CONFIG_MODULE_SIG is not set
CONFIG_KALLSYMS=y
CONFIG_DEBUG_KERNEL=y
CONFIG_KALLSYMS_ALL=y
CONFIG_FTRACE=y
CONFIG_FUNCTION_TRACER=y
CONFIG_DYNAMIC_FTRACE=y
CONFIG_DYNAMIC_FTRACE_WITH_ARGS=y
CONFIG_LIVEPATCH=y
`

// klpMakeArgs cross-build for arm64.
var klpMakeArgs = []string{"ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"}

// klpBuiltinAliases are names DefaultModules asks for that this kernel
// builds in under another name: 7.x renamed crc32c_generic to
// crc32c-cryptoapi (CONFIG_CRYPTO_CRC32C=y). They are added to
// modules.builtin so that ModuleClosure skips them as built in.
var klpBuiltinAliases = []string{"kernel/crypto/crc32c_generic.ko"}

// klpDir is the cache directory of livepatch kernels.
func klpDir() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "klp-kernel"), nil
}

// CachedLivepatchKernel returns the newest livepatch kernel
// BuildLivepatchKernel left in the cache, without building or touching
// the network; ErrNoLivepatchKernel when there is none.
func CachedLivepatchKernel() (*LivepatchKernel, error) {
	dir, err := klpDir()
	if err != nil {
		return nil, err
	}
	stamps, _ := filepath.Glob(filepath.Join(dir, "*.ok"))
	var best string
	var bestTime time.Time
	for _, s := range stamps {
		fi, err := os.Stat(s)
		if err == nil && (best == "" || fi.ModTime().After(bestTime)) {
			best, bestTime = s, fi.ModTime()
		}
	}
	if best == "" {
		return nil, fmt.Errorf("%w in %s (make arm64-livepatch-kernel)", ErrNoLivepatchKernel, dir)
	}
	return livepatchKernelFromStamp(best)
}

// livepatchKernelFromStamp reads a stamp next to the version's directory:
// "<package>=<version>\n<release>\n<config hash>\n". A kernel built with
// another configuration fragment is stale (ErrNoLivepatchKernel).
func livepatchKernelFromStamp(stamp string) (*LivepatchKernel, error) {
	b, err := os.ReadFile(stamp)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoLivepatchKernel, err)
	}
	f := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(f) != 3 || f[1] == "" || strings.ContainsAny(f[1], "/ ") {
		return nil, fmt.Errorf("%w: malformed stamp %s", ErrNoLivepatchKernel, stamp)
	}
	source, release, config := f[0], f[1], f[2]
	if config != klpConfigHash() {
		return nil, fmt.Errorf("%w: %s was built with another configuration (%s, now %s)", ErrNoLivepatchKernel, release, config, klpConfigHash())
	}
	vdir := strings.TrimSuffix(stamp, ".ok")
	lk := livepatchKernelAt(vdir, source, release)
	if _, err := os.Stat(lk.Image); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoLivepatchKernel, err)
	}
	return lk, nil
}

// livepatchKernelAt lays a build out: vdir/<package> is the tree (the
// tarball's top directory has the package's name), vdir/root the install.
func livepatchKernelAt(vdir, source, release string) *LivepatchKernel {
	pkg, _, _ := strings.Cut(source, "=")
	root := filepath.Join(vdir, "root")
	return &LivepatchKernel{
		Kernel: &Kernel{
			Arch:    ARM64,
			Release: release,
			Image:   filepath.Join(root, "boot", "vmlinuz-"+release),
			Root:    root,
		},
		Tree:   filepath.Join(vdir, pkg),
		Source: source,
		config: klpConfigHash(),
	}
}

// BuildLivepatchKernel builds (or finds in the cache) a small arm64 kernel
// with CONFIG_LIVEPATCH=y from Debian's newest linux-source in
// trixie-backports, under CacheDir()/klp-kernel/<version>/:
//
//   - the package index comes from a private apt state
//     (CacheDir()/apt-trixie-backports, its own sources.list; the system's
//     apt configuration is left alone), and linux-source's dependency
//     names the current linux-source-7.x;
//   - the source tarball is unpacked into <version>/linux-source-7.x/
//     (the tree), configured with `make allnoconfig` plus
//     klpConfigFragment, and every line of the fragment is checked in the
//     resulting .config (ErrKernelConfig);
//   - `nice -n 19 make ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- -j2
//     Image modules modules_prepare` builds it (about 13 minutes on a
//     shared 2-core machine; make is incremental, so an interrupted build
//     or a changed fragment continues in the same tree);
//   - modules_install writes root/lib/modules/<release> (modules.dep and
//     modules.builtin, which RunGuest's initramfs reads) and the Image is
//     copied to root/boot/vmlinuz-<release>.
//
// A stamp <version>.ok marks a finished build (package, release, hash of
// the fragment); a stamped version that is still current and built with
// this fragment is returned without building, and when the index cannot
// be read a stamped kernel is returned as it is. A lock file serialises
// builders. Older versions are removed after a new one is built.
//
// logf receives progress lines; nil discards them.
func BuildLivepatchKernel(ctx context.Context, logf func(format string, args ...any)) (*LivepatchKernel, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir, err := klpDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("rig: livepatch kernel cache: %w", err)
	}
	// Its own lock: a build holds it for many minutes, and FetchKernel's
	// callers must not wait for that.
	unlock, err := lockFile(ctx, filepath.Join(dir, "build.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	a := suiteApt{dir: filepath.Join(cache, "apt-"+klpSourceSuite), suite: klpSourceSuite}
	pkg, version, err := a.newestSource(ctx, logf)
	if err != nil {
		if lk, cerr := CachedLivepatchKernel(); cerr == nil {
			logf("rig: %v; using the cached livepatch kernel %s", err, lk.Release)
			return lk, nil
		}
		return nil, err
	}
	source := pkg + "=" + version
	vdir := filepath.Join(dir, version)
	stamp := vdir + ".ok"
	if lk, err := livepatchKernelFromStamp(stamp); err == nil {
		return lk, nil
	}
	start := time.Now()
	tree, err := a.unpackSource(ctx, pkg, version, vdir, logf)
	if err != nil {
		return nil, err
	}
	release, err := configureKernel(ctx, tree, logf)
	if err != nil {
		return nil, err
	}
	logf("rig: building %s from %s (nice -n 19 make -j2 Image modules modules_prepare)", release, source)
	buildStart := time.Now()
	if err := kmake(ctx, tree, "nice", "-n", "19", "make", "-j2", "Image", "modules", "modules_prepare"); err != nil {
		return nil, err
	}
	logf("rig: make took %v", time.Since(buildStart).Round(time.Second))
	lk := livepatchKernelAt(vdir, source, release)
	if err := installKernel(ctx, lk); err != nil {
		return nil, err
	}
	if err := os.WriteFile(stamp, []byte(source+"\n"+release+"\n"+klpConfigHash()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("rig: write stamp: %w", err)
	}
	logf("rig: livepatch kernel %s ready in %v", release, time.Since(start).Round(time.Second))
	pruneLivepatchKernels(dir, version, logf)
	return lk, nil
}

// configureKernel writes tree/.config (allnoconfig + klpConfigFragment),
// checks it and returns the kernel release.
func configureKernel(ctx context.Context, tree string, logf func(string, ...any)) (string, error) {
	frag := filepath.Join(tree, "graft-klp.config")
	if err := os.WriteFile(frag, []byte(klpConfigFragment), 0o644); err != nil {
		return "", fmt.Errorf("rig: config fragment: %w", err)
	}
	logf("rig: make allnoconfig KCONFIG_ALLCONFIG=%s", frag)
	if err := kmake(ctx, tree, "make", "KCONFIG_ALLCONFIG="+frag, "allnoconfig"); err != nil {
		return "", err
	}
	cfg, err := os.ReadFile(filepath.Join(tree, ".config"))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrKernelConfig, err)
	}
	if unmet := UnmetConfig([]byte(klpConfigFragment), cfg); len(unmet) > 0 {
		return "", fmt.Errorf("%w: .config lacks %s", ErrKernelConfig, strings.Join(unmet, "; "))
	}
	out, err := kmakeOutput(ctx, tree, "make", "-s", "kernelrelease")
	if err != nil {
		return "", err
	}
	release := strings.TrimSpace(string(out))
	if release == "" || strings.ContainsAny(release, "/ \n") {
		return "", fmt.Errorf("%w: make kernelrelease printed %q", ErrKernelBuild, release)
	}
	return release, nil
}

// installKernel runs modules_install into lk.Root (depmod included),
// declares klpBuiltinAliases and copies the Image.
func installKernel(ctx context.Context, lk *LivepatchKernel) error {
	if err := os.RemoveAll(lk.Root); err != nil {
		return fmt.Errorf("rig: %w", err)
	}
	if err := kmake(ctx, lk.Tree, "make", "INSTALL_MOD_PATH="+lk.Root, "modules_install"); err != nil {
		return err
	}
	mdir := filepath.Join(lk.Root, "lib", "modules", lk.Release)
	builtin, err := os.ReadFile(filepath.Join(mdir, "modules.builtin"))
	if err != nil {
		return fmt.Errorf("%w: modules_install: %w", ErrKernelBuild, err)
	}
	for _, a := range klpBuiltinAliases {
		if !bytes.Contains(builtin, []byte(a+"\n")) {
			builtin = append(builtin, a+"\n"...)
		}
	}
	if err := os.WriteFile(filepath.Join(mdir, "modules.builtin"), builtin, 0o644); err != nil {
		return fmt.Errorf("rig: %w", err)
	}
	img, err := os.ReadFile(filepath.Join(lk.Tree, "arch", "arm64", "boot", "Image"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKernelBuild, err)
	}
	if err := os.MkdirAll(filepath.Dir(lk.Image), 0o755); err != nil {
		return fmt.Errorf("rig: %w", err)
	}
	return writeFileAtomic(lk.Image, img, 0o644)
}

// kmake runs a make command line (possibly behind nice) in tree with the
// cross-build variables.
func kmake(ctx context.Context, tree string, argv ...string) error {
	_, err := kmakeOutput(ctx, tree, argv...)
	return err
}

func kmakeOutput(ctx context.Context, tree string, argv ...string) ([]byte, error) {
	args := append(slices.Clone(argv[1:]), klpMakeArgs...)
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Dir = tree
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w: %s", ErrKernelBuild, strings.Join(argv, " "), err,
			lastLines(stderr.String()+string(out), 10))
	}
	return out, nil
}

// BuildModule builds the out-of-tree module in srcDir (a Kbuild and its
// .c files) against lk's tree for arm64 (`make -C <tree> M=<copy>
// modules`) and returns the path of the one .ko it makes, cached like
// rig.BuildModule's under CacheDir()/modules/<release>/<hash of the
// sources>/.
func (lk *LivepatchKernel) BuildModule(ctx context.Context, srcDir string) (string, error) {
	// The release does not change with the package revision or the
	// configuration; the module's CRCs do.
	sum, files, err := hashSources(srcDir, lk.Release+" "+lk.Source+" "+lk.config)
	if err != nil {
		return "", err
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "modules", lk.Release, sum)
	if kos, _ := filepath.Glob(filepath.Join(dir, "*.ko")); len(kos) == 1 {
		return kos[0], nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	stage, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-"+sum[:12]+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	build := filepath.Join(stage, "build")
	for name, b := range files {
		p := filepath.Join(build, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return "", err
		}
	}
	if err := kmake(ctx, lk.Tree, "make", "-C", lk.Tree, "M="+build, "modules"); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrModuleBuild, srcDir, err)
	}
	kos, _ := filepath.Glob(filepath.Join(build, "*.ko"))
	if len(kos) != 1 {
		return "", fmt.Errorf("%w: %s made %d .ko files, want 1", ErrModuleBuild, srcDir, len(kos))
	}
	out := filepath.Join(stage, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(kos[0], filepath.Join(out, filepath.Base(kos[0]))); err != nil {
		return "", err
	}
	// A concurrent build of the same sources may have won; its result is
	// as good.
	if err := os.Rename(out, dir); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return "", fmt.Errorf("rig: cache module: %w", err)
	}
	return filepath.Join(dir, filepath.Base(kos[0])), nil
}

// unpackSource downloads pkg=version and unpacks its tarball into
// vdir/<pkg>, unless a finished unpack (vdir/<pkg>.ok) is there.
func (a suiteApt) unpackSource(ctx context.Context, pkg, version, vdir string, logf func(string, ...any)) (string, error) {
	tree := filepath.Join(vdir, pkg)
	done := tree + ".ok"
	if _, err := os.Stat(done); err == nil {
		return tree, nil
	}
	if err := os.RemoveAll(vdir); err != nil {
		return "", fmt.Errorf("rig: remove stale %s: %w", vdir, err)
	}
	dl := filepath.Join(vdir, "download")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", fmt.Errorf("rig: %w", err)
	}
	logf("rig: apt-get download %s=%s (%s)", pkg, version, a.suite)
	if _, err := a.run(ctx, dl, "apt-get", "-q", "download", pkg+"="+version); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("%w: download of %s left %d .deb files", ErrKernelBuild, pkg, len(debs))
	}
	pkgRoot := filepath.Join(vdir, "pkg")
	if err := runTool(ctx, "dpkg-deb", "-x", debs[0], pkgRoot); err != nil {
		return "", err
	}
	tarball := filepath.Join(pkgRoot, "usr", "src", pkg+".tar.xz")
	logf("rig: unpacking %s", filepath.Base(tarball))
	if err := runTool(ctx, "tar", "-xf", tarball, "-C", vdir); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err != nil {
		return "", fmt.Errorf("%w: %s did not unpack to %s: %w", ErrKernelBuild, tarball, tree, err)
	}
	for _, d := range []string{pkgRoot, dl} {
		if err := os.RemoveAll(d); err != nil {
			return "", fmt.Errorf("rig: %w", err)
		}
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return "", fmt.Errorf("rig: %w", err)
	}
	return tree, nil
}

// pruneLivepatchKernels removes the built versions in dir other than keep
// (each is about a gigabyte).
func pruneLivepatchKernels(dir, keep string, logf func(string, ...any)) {
	stamps, _ := filepath.Glob(filepath.Join(dir, "*.ok"))
	for _, s := range stamps {
		v := strings.TrimSuffix(filepath.Base(s), ".ok")
		if v == keep {
			continue
		}
		if err := os.Remove(s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logf("rig: prune %s: %v", v, err)
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, v)); err != nil {
			logf("rig: prune %s: %v", v, err)
		}
	}
}

// suiteApt is a private apt state under dir whose only source is one
// Debian suite (main), for packages of all architectures ("all").
type suiteApt struct{ dir, suite string }

func (a suiteApt) sourcesList() string { return filepath.Join(a.dir, "sources.list") }

func (a suiteApt) args() []string {
	return []string{
		"-o", "Dir::State=" + filepath.Join(a.dir, "state"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Dir::Etc::SourceList=" + a.sourcesList(),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(a.dir, "sources.list.d"),
		"-o", "APT::Architecture=" + hostArch(),
		"-o", "Debug::NoLocking=1",
	}
}

func (a suiteApt) run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	return runApt(ctx, a.args(), dir, name, args...)
}

// update writes the sources list and refreshes the index when it is older
// than indexMaxAge.
func (a suiteApt) update(ctx context.Context, logf func(string, ...any)) error {
	for _, d := range []string{
		filepath.Join(a.dir, "state", "lists", "partial"),
		filepath.Join(a.dir, "cache", "archives", "partial"),
		filepath.Join(a.dir, "sources.list.d"),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("rig: apt state: %w", err)
		}
	}
	list := "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian " + a.suite + " main\n"
	if err := os.WriteFile(a.sourcesList(), []byte(list), 0o644); err != nil {
		return fmt.Errorf("rig: apt state: %w", err)
	}
	stamp := filepath.Join(a.dir, "updated")
	if fi, err := os.Stat(stamp); err == nil && time.Since(fi.ModTime()) < indexMaxAge {
		return nil
	}
	logf("rig: apt-get update (%s, private state %s)", a.suite, a.dir)
	if _, err := a.run(ctx, a.dir, "apt-get", "-q", "update"); err != nil {
		return err
	}
	return os.WriteFile(stamp, nil, 0o644)
}

// newestSource returns the linux-source-7.x package the linux-source meta
// package depends on, and its candidate version.
func (a suiteApt) newestSource(ctx context.Context, logf func(string, ...any)) (pkg, version string, err error) {
	if err := a.update(ctx, logf); err != nil {
		return "", "", err
	}
	out, err := a.run(ctx, a.dir, "apt-cache", "depends", "linux-source")
	if err != nil {
		return "", "", err
	}
	pkg, ok := sourceFromDepends(out)
	if !ok {
		return "", "", fmt.Errorf("%w: linux-source in %s depends on no linux-source-7.x", ErrKernelBuild, a.suite)
	}
	out, err = a.run(ctx, a.dir, "apt-cache", "policy", pkg)
	if err != nil {
		return "", "", err
	}
	version, ok = candidateVersion(out)
	if !ok {
		return "", "", fmt.Errorf("%w: %s has no candidate version in %s", ErrKernelBuild, pkg, a.suite)
	}
	return pkg, version, nil
}

// sourceFromDepends reads `apt-cache depends linux-source` output: the
// first dependency linux-source-<major>.<minor> with a major version of 7
// or more.
func sourceFromDepends(out []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends:")
		if !ok {
			continue
		}
		dep = strings.TrimSpace(dep)
		v, ok := strings.CutPrefix(dep, "linux-source-")
		if !ok {
			continue
		}
		major, minor, ok := strings.Cut(v, ".")
		if !ok || !allDigits(major) || !allDigits(minor) || len(major) > 3 {
			continue
		}
		if len(major) == 1 && major < "7" {
			continue
		}
		return dep, true
	}
	return "", false
}

// candidateVersion reads the "Candidate:" line of `apt-cache policy`.
func candidateVersion(out []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Candidate:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || v == "(none)" || strings.ContainsAny(v, " /") {
			return "", false
		}
		return v, true
	}
	return "", false
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// UnmetConfig returns the lines of a Kconfig fragment that a .config does
// not satisfy: "CONFIG_X=v" must appear as it is; "# CONFIG_X is not set"
// means no "CONFIG_X=" line. Other lines of the fragment are ignored.
func UnmetConfig(fragment, config []byte) []string {
	set := map[string]string{}
	for _, l := range strings.Split(string(config), "\n") {
		if name, val, ok := strings.Cut(strings.TrimSpace(l), "="); ok && strings.HasPrefix(name, "CONFIG_") {
			set[name] = val
		}
	}
	var unmet []string
	for _, l := range strings.Split(string(fragment), "\n") {
		l = strings.TrimSpace(l)
		if off, ok := strings.CutPrefix(l, "# "); ok {
			name, ok := strings.CutSuffix(off, " is not set")
			if !ok || !strings.HasPrefix(name, "CONFIG_") {
				continue
			}
			if v, on := set[name]; on && v != "n" {
				unmet = append(unmet, l)
			}
			continue
		}
		name, val, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(name, "CONFIG_") {
			continue
		}
		if got, on := set[name]; !on || got != val {
			unmet = append(unmet, l)
		}
	}
	return unmet
}
