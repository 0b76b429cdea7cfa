package rig

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// ErrInitramfs is returned by BuildInitramfs for a spec it cannot build.
var ErrInitramfs = errors.New("rig: bad initramfs spec")

// InitramfsSpec says what goes into a guest initramfs.
type InitramfsSpec struct {
	Arch    Arch
	Init    string            // path to the built graft-init binary → /init
	Agent   string            // path to the built graft-agent → /bin/graft-agent
	Kernel  *Kernel           // required when Modules is not empty
	Modules []string          // module names; their closure goes in (under /lib/modules/<release>/...) and /etc/modules lists them in load order
	Files   map[string][]byte // extra files: archive path → content (e.g. "etc/graft-init-fail")
}

// The archive paths graft-init relies on.
const (
	initramfsInit    = "init"
	initramfsAgent   = "bin/graft-agent"
	initramfsModules = "etc/modules"
)

// initramfsDirs are created in every initramfs; graft-init mounts on them.
var initramfsDirs = []string{"bin", "boot", "dev", "etc", "proc", "run", "sys", "tmp", "var", "var/lib", "var/lib/graft"}

// BuildInitramfs writes a gzip-compressed newc cpio archive for spec to out:
// the directories graft-init mounts on, /dev/console (char 5,1) so that the
// kernel hands init a console, /init and /bin/graft-agent (0755), the
// closure of spec.Modules under lib/modules/<release>/ with /etc/modules
// listing it in load order, and spec.Files. All entries are owned by root
// with time 0, so the same inputs give the same archive. out is replaced
// atomically.
func BuildInitramfs(spec InitramfsSpec, out string) error {
	if spec.Init == "" {
		return fmt.Errorf("%w: no init binary", ErrInitramfs)
	}
	if spec.Kernel != nil && spec.Arch != "" && spec.Kernel.Arch != spec.Arch {
		return fmt.Errorf("%w: kernel is %s, spec is %s", ErrInitramfs, spec.Kernel.Arch, spec.Arch)
	}
	recs := []cpio.Record{}
	dirs := map[string]bool{}
	files := map[string]bool{}
	var addDirs func(p string)
	addDirs = func(p string) {
		if p == "." || p == "" || dirs[p] {
			return
		}
		addDirs(path.Dir(p))
		dirs[p] = true
		recs = append(recs, cpio.Directory(p, 0o755))
	}
	addFile := func(name string, rec cpio.Record) error {
		if !filepath.IsLocal(name) || path.Clean(name) != name {
			return fmt.Errorf("%w: archive path %q is not clean and relative", ErrInitramfs, name)
		}
		if files[name] || dirs[name] {
			return fmt.Errorf("%w: %q given twice", ErrInitramfs, name)
		}
		addDirs(path.Dir(name))
		files[name] = true
		rec.Name = name
		recs = append(recs, rec)
		return nil
	}
	addHostFile := func(name, src string, perm uint64) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("rig: initramfs %s: %w", name, err)
		}
		return addFile(name, cpio.StaticRecord(b, cpio.Info{Mode: cpio.S_IFREG | perm, NLink: 1}))
	}

	for _, d := range initramfsDirs {
		addDirs(d)
	}
	if err := addFile("dev/console", cpio.CharDev("dev/console", 0o600, 5, 1)); err != nil {
		return err
	}
	if err := addHostFile(initramfsInit, spec.Init, 0o755); err != nil {
		return err
	}
	if spec.Agent != "" {
		if err := addHostFile(initramfsAgent, spec.Agent, 0o755); err != nil {
			return err
		}
	}
	if len(spec.Modules) > 0 {
		if spec.Kernel == nil {
			return fmt.Errorf("%w: modules without a kernel", ErrInitramfs)
		}
		mods, err := spec.Kernel.moduleClosure(spec.Modules...)
		if err != nil {
			return err
		}
		var list strings.Builder
		for _, m := range mods {
			name := path.Join("lib/modules", spec.Kernel.Release, m)
			if err := addHostFile(name, filepath.Join(spec.Kernel.moduleDir(), filepath.FromSlash(m)), 0o644); err != nil {
				return err
			}
			list.WriteString(name + "\n")
		}
		if err := addFile(initramfsModules, cpio.StaticFile("", list.String(), 0o644)); err != nil {
			return err
		}
	}
	for _, name := range sortedNames(spec.Files) {
		if err := addFile(name, cpio.StaticFile("", string(spec.Files[name]), 0o644)); err != nil {
			return err
		}
	}

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := cpio.Newc.Writer(zw)
	for i, r := range recs {
		r.Ino = uint64(i + 1)
		if err := w.WriteRecord(r); err != nil {
			return fmt.Errorf("rig: initramfs %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return fmt.Errorf("rig: initramfs trailer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("rig: initramfs gzip: %w", err)
	}
	return writeFileAtomic(out, buf.Bytes(), 0o644)
}

func sortedNames(m map[string][]byte) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return fmt.Errorf("rig: write %s: %w", name, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("rig: write %s: %w", name, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("rig: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rig: write %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("rig: write %s: %w", name, err)
	}
	return nil
}

// BuildGo builds the Go main package pkg (an import path or a ./relative
// path, resolved from the current directory's module) as a static binary
// for arch: CGO_ENABLED=0 GOOS=linux, -trimpath, -ldflags "-s -w". Go's
// build cache makes a repeated build fast.
func BuildGo(ctx context.Context, arch Arch, pkg, out string) error {
	goarch, goarm := arch.GOARCH()
	if goarch == "" {
		return fmt.Errorf("%w: %q", ErrUnknownArch, string(arch))
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rig: go build %s for %s: %w: %s", pkg, arch, err, lastLines(string(b), 10))
	}
	return nil
}

// DefaultModules returns the modules a guest needs on QEMU's virt machine
// (pc on amd64): virtio over PCI and MMIO, the block and network drivers,
// vfat with its default code page and character set, and ext4 with the
// crc32c driver it needs. Names that
// a kernel has built in are skipped by ModuleClosure, so the list is the
// same for every Debian flavour: Debian's arm64 and armmp 6.1 kernels have
// the virtio core built in and all of these as modules.
func DefaultModules(arch Arch) []string {
	mods := []string{
		"virtio_pci", "virtio_blk", "virtio_net",
		"vfat", "nls_ascii", "nls_cp437",
		// ext4 asks for the "crc32c" crypto driver at mount time (a
		// softdep, not in modules.dep) to check metadata checksums,
		// which mkfs.ext4 turns on by default.
		"crc32c_generic", "ext4",
	}
	switch arch {
	case ARM64, ARMHF:
		// virt also offers virtio-mmio transports (-device virtio-*-device).
		mods = append([]string{"virtio_mmio"}, mods...)
	}
	return mods
}
