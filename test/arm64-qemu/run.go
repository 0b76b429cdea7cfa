package rig

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// ErrRunSpec is returned by RunGuest for a spec it cannot run.
var ErrRunSpec = errors.New("rig: bad run spec")

// ErrRunStart is returned by RunGuest when graft-init could not start the
// program (a missing file, a missing loader, no execute permission); the
// guest's reason is in the message and in the result's Output.
var ErrRunStart = errors.New("rig: guest could not start the program")

// File is one extra initramfs entry.
type File struct {
	Path string      // path inside the guest, relative ("bin/prog") or absolute
	Src  string      // host file to copy (symbolic links followed); or
	Data []byte      // content (when Src is empty); the link target when Mode has fs.ModeSymlink
	Mode os.FileMode // 0 = 0644 for Data, the source's mode for Src; fs.ModeSymlink makes a symbolic link
}

// RunSpec is one program run as a guest's only job.
type RunSpec struct {
	Arch    Arch                             // ARM64, ARMHF or AMD64
	Kernel  *Kernel                          // nil = FetchKernel(ctx, Arch)
	Files   []File                           // extra files (programs, libraries, test binaries, data)
	Modules []string                         // extra kernel modules to load, on top of DefaultModules(Arch)
	Argv    []string                         // program and arguments, absolute guest paths
	Env     []string                         // extra environment, KEY=VALUE
	Cmdline string                           // extra kernel command line (after RunGuest's own: "loglevel=7" undoes its "quiet")
	Memory  int                              // MiB, 0 = 1024
	Timeout time.Duration                    // whole run, 0 = 5 minutes
	Console io.Writer                        // live copy of the console (may be nil)
	Extra   []string                         // extra qemu arguments, e.g. "-smp", "2" or a -drive
	Logf    func(format string, args ...any) // progress (kernel download); nil discards
}

// RunResult is what a guest run printed and how its program ended.
type RunResult struct {
	Output   string        // everything the console printed (program's stdout/stderr included), "\r\n" read as "\n"
	ExitCode int           // the program's exit status as graft-init reported it (128+N for signal N)
	Elapsed  time.Duration // from starting QEMU to its exit: boot, run and power-off
}

// The guest paths RunGuest writes itself.
const runConfigFile = "etc/graft-run"

// reservedPaths are archive paths a RunSpec's Files may not replace.
var reservedPaths = []string{initramfsInit, initramfsModules, runConfigFile}

// runGuestAddr is graft-init's network setup: QEMU's user network, the
// host's loopback at 10.0.2.2.
const runGuestAddr = "graft.ip=eth0,10.0.2.15/24,10.0.2.2"

// RunGuest boots qemu-system-{aarch64,arm,x86_64} (TCG) directly with
// -kernel and -initrd — no firmware, no bootloader, no disk — with
// graft-init in run mode: it loads DefaultModules(Arch) and spec.Modules,
// configures eth0 as 10.0.2.15/24 (the host's loopback is 10.0.2.2), runs
// spec.Argv with spec.Env, prints "graft-run: exit N" and powers off.
// RunGuest returns when QEMU exits.
//
// dir receives the built graft-init and initramfs. The initramfs is
// BuildInitramfs's archive followed by a second, uncompressed archive of
// spec.Files (the kernel unpacks both).
//
// When the console never shows "graft-run: exit N", the error wraps
// ErrVMExited (the guest powered off, rebooted or panicked) or
// ErrWaitCanceled (spec.Timeout or ctx ended first; QEMU is killed by PID)
// and quotes the console's last lines; ErrRunStart means graft-init could
// not start the program. The result is returned with every error that
// comes after QEMU started.
func RunGuest(ctx context.Context, dir string, spec RunSpec) (*RunResult, error) {
	m, err := runMachineFor(spec.Arch)
	if err != nil {
		return nil, err
	}
	conf, err := encodeRunConfig(spec.Argv, spec.Env)
	if err != nil {
		return nil, err
	}
	extra, err := buildFilesArchive(spec.Files)
	if err != nil {
		return nil, err
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	k := spec.Kernel
	if k == nil {
		if k, err = FetchKernel(ctx, spec.Arch, spec.Logf); err != nil {
			return nil, err
		}
	}
	if k.Arch != spec.Arch {
		return nil, fmt.Errorf("%w: kernel is %s, spec is %s", ErrRunSpec, k.Arch, spec.Arch)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("rig: %w", err)
	}
	initBin := filepath.Join(dir, "graft-init")
	if err := buildRunInit(ctx, spec.Arch, initBin); err != nil {
		return nil, err
	}
	initrd := filepath.Join(dir, "run-initrd.img")
	if err := BuildInitramfs(InitramfsSpec{
		Arch: spec.Arch, Init: initBin, Kernel: k,
		Modules: append(DefaultModules(spec.Arch), spec.Modules...),
		Files:   map[string][]byte{runConfigFile: conf},
	}, initrd); err != nil {
		return nil, err
	}
	if err := appendArchive(initrd, extra); err != nil {
		return nil, err
	}
	image := k.Image
	if spec.Arch == AMD64 {
		image = pvhImage(ctx, k, spec.Logf)
	}
	name, args := m.args(image, initrd, spec.Memory, spec.Cmdline, spec.Extra)
	return runQEMU(ctx, name, args, spec.Console)
}

// runMachine is how RunGuest boots an architecture.
type runMachine struct {
	qemu, machine, cpu, console string
}

func runMachineFor(a Arch) (runMachine, error) {
	switch a {
	case ARM64:
		// -cpu max with the architected pointer-authentication algorithm
		// makes TCG about four times slower; the implementation-defined
		// one is cheap.
		return runMachine{"qemu-system-aarch64", "virt", "max,pauth-impdef=on", "ttyAMA0"}, nil
	case ARMHF:
		// armmp has no LPAE: with highmem on, virt puts the PCIe ECAM
		// above 4 GiB and the kernel finds no PCI devices.
		return runMachine{"qemu-system-arm", "virt,highmem=off", "cortex-a15", "ttyAMA0"}, nil
	case AMD64:
		return runMachine{"qemu-system-x86_64", "q35", "max", "ttyS0"}, nil
	}
	return runMachine{}, fmt.Errorf("%w: %q", ErrUnknownArch, string(a))
}

// args returns the qemu command line. -no-reboot turns a reboot or a
// kernel panic (panic=1) into QEMU's exit.
func (m runMachine) args(kernel, initrd string, mem int, cmdline string, extra []string) (string, []string) {
	if mem <= 0 {
		mem = 1024
	}
	appendLine := "console=" + m.console + " panic=1 quiet graft.run=1 " + runGuestAddr
	if c := strings.TrimSpace(cmdline); c != "" {
		appendLine += " " + c
	}
	args := []string{
		"-M", m.machine, "-cpu", m.cpu, "-accel", "tcg", "-m", strconv.Itoa(mem),
		"-nodefaults", "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", appendLine,
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
	}
	return m.qemu, append(args, extra...)
}

// encodeRunConfig writes /etc/graft-run as graft-init reads it (see its
// parseRunConfig).
func encodeRunConfig(argv, env []string) ([]byte, error) {
	if len(argv) == 0 || !path.IsAbs(argv[0]) {
		return nil, fmt.Errorf("%w: Argv must start with an absolute guest path, got %q", ErrRunSpec, argv)
	}
	for _, a := range argv {
		if !utf8.ValidString(a) || strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("%w: argument %q is not NUL-free UTF-8", ErrRunSpec, a)
		}
	}
	for _, e := range env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || !utf8.ValidString(e) || strings.ContainsRune(e, 0) {
			return nil, fmt.Errorf("%w: environment entry %q is not KEY=VALUE in NUL-free UTF-8", ErrRunSpec, e)
		}
	}
	if env == nil {
		env = []string{}
	}
	b, err := json.Marshal(struct {
		Argv []string `json:"argv"`
		Env  []string `json:"env"`
	}{argv, env})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRunSpec, err)
	}
	return append(b, '\n'), nil
}

// buildFilesArchive returns an uncompressed newc archive of files, with a
// directory record for every parent, owned by root with time 0.
func buildFilesArchive(files []File) ([]byte, error) {
	var recs []cpio.Record
	dirs := map[string]bool{}
	seen := map[string]bool{}
	var addDirs func(p string)
	addDirs = func(p string) {
		if p == "." || p == "/" || p == "" || dirs[p] {
			return
		}
		addDirs(path.Dir(p))
		dirs[p] = true
		recs = append(recs, cpio.Directory(p, 0o755))
	}
	for _, f := range files {
		name := strings.TrimPrefix(f.Path, "/")
		if name == "" || !filepath.IsLocal(name) || path.Clean(name) != name {
			return nil, fmt.Errorf("%w: file path %q is not clean", ErrRunSpec, f.Path)
		}
		if slices.Contains(reservedPaths, name) {
			return nil, fmt.Errorf("%w: %q is RunGuest's own", ErrRunSpec, f.Path)
		}
		if seen[name] || dirs[name] {
			return nil, fmt.Errorf("%w: %q given twice (or as a file and a directory)", ErrRunSpec, f.Path)
		}
		rec, err := f.record()
		if err != nil {
			return nil, err
		}
		addDirs(path.Dir(name))
		seen[name] = true
		rec.Name = name
		recs = append(recs, rec)
	}
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	for i, r := range recs {
		r.Ino = uint64(i + 1)
		if err := w.WriteRecord(r); err != nil {
			return nil, fmt.Errorf("rig: initramfs %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("rig: initramfs trailer: %w", err)
	}
	return buf.Bytes(), nil
}

// record is f's cpio record, without a name.
func (f File) record() (cpio.Record, error) {
	if f.Mode&fs.ModeSymlink != 0 {
		if f.Src != "" || len(f.Data) == 0 {
			return cpio.Record{}, fmt.Errorf("%w: symbolic link %q needs its target in Data and no Src", ErrRunSpec, f.Path)
		}
		return cpio.Symlink("", string(f.Data)), nil
	}
	if f.Mode&^fs.ModePerm != 0 {
		return cpio.Record{}, fmt.Errorf("%w: %q: mode %v is neither a file nor a link", ErrRunSpec, f.Path, f.Mode)
	}
	data, perm := f.Data, f.Mode
	if f.Src != "" {
		b, err := os.ReadFile(f.Src)
		if err != nil {
			return cpio.Record{}, fmt.Errorf("%w: %q: %w", ErrRunSpec, f.Path, err)
		}
		if perm == 0 {
			fi, err := os.Stat(f.Src)
			if err != nil {
				return cpio.Record{}, fmt.Errorf("%w: %q: %w", ErrRunSpec, f.Path, err)
			}
			perm = fi.Mode().Perm()
		}
		data = b
	} else if perm == 0 {
		perm = 0o644
	}
	return cpio.StaticRecord(data, cpio.Info{Mode: cpio.S_IFREG | uint64(perm), NLink: 1}), nil
}

// appendArchive appends an uncompressed archive to an initramfs. The
// kernel looks for the next archive at a 4-byte boundary, so zeros pad the
// first one.
func appendArchive(initrd string, archive []byte) error {
	f, err := os.OpenFile(initrd, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("rig: initramfs: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("rig: initramfs: %w", err)
	}
	pad := make([]byte, (4-fi.Size()%4)%4)
	if _, err := f.Write(append(pad, archive...)); err != nil {
		f.Close()
		return fmt.Errorf("rig: initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("rig: initramfs: %w", err)
	}
	return nil
}

// runInits holds graft-init binaries already built by this process, per
// architecture: a Go build with a warm cache still takes a second.
var runInits struct {
	sync.Mutex
	bin map[Arch][]byte
}

// buildRunInit writes graft-init for arch to out.
func buildRunInit(ctx context.Context, arch Arch, out string) error {
	runInits.Lock()
	defer runInits.Unlock()
	if b, ok := runInits.bin[arch]; ok {
		return os.WriteFile(out, b, 0o755)
	}
	if err := BuildGo(ctx, arch, "github.com/graft-dev/graft/test/arm64-qemu/cmd/graft-init", out); err != nil {
		return err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("rig: graft-init: %w", err)
	}
	if runInits.bin == nil {
		runInits.bin = map[Arch][]byte{}
	}
	runInits.bin[arch] = b
	return nil
}

// runQEMU runs QEMU to its exit and reads the guest's verdict off the
// console.
func runQEMU(ctx context.Context, name string, args []string, console io.Writer) (*RunResult, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	// QEMU dies with the test process, even one killed by a test timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = &out
	if console != nil {
		cmd.Stdout = io.MultiWriter(&out, console)
	}
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTool, name, err)
	}
	werr := cmd.Wait()
	res := &RunResult{Output: strings.ReplaceAll(out.String(), "\r\n", "\n"), Elapsed: time.Since(start)}
	code, ok := ParseRunExit(res.Output)
	res.ExitCode = code
	tail := "last console lines:\n\t" + strings.ReplaceAll(lastLines(res.Output, consoleTail), " | ", "\n\t")
	if e := strings.TrimSpace(stderr.String()); e != "" {
		tail += "\nqemu stderr: " + e
	}
	switch {
	case ok && runStartError.MatchString(res.Output):
		return res, fmt.Errorf("%w: %s; %s", ErrRunStart, runStartError.FindString(res.Output), tail)
	case ok:
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("%w: %w: no \"graft-run: exit\" after %v; %s", ErrWaitCanceled, ctx.Err(), res.Elapsed.Round(time.Millisecond), tail)
	default:
		return res, fmt.Errorf("%w (%v) without \"graft-run: exit\"; %s", ErrVMExited, werr, tail)
	}
}

var (
	runExitLine   = regexp.MustCompile(`(?m)graft-run: exit (\d+)$`)
	runStartError = regexp.MustCompile(`(?m)^graft-run: error: .*$`)
)

// ParseRunExit returns the exit status of the last "graft-run: exit N"
// line of a guest's console output; ok is false if there is none.
func ParseRunExit(output string) (code int, ok bool) {
	all := runExitLine.FindAllStringSubmatch(output, -1)
	if len(all) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(all[len(all)-1][1])
	if err != nil {
		return 0, false
	}
	return n, true
}

// pvhImage returns an uncompressed vmlinux for an amd64 kernel, which QEMU
// starts at its PVH entry point: under TCG that skips about 3 s of
// real-mode setup and decompression of Debian's xz-compressed bzImage.
// The vmlinux is extracted once, next to the image in the cache
// (boot/vmlinux-<release>.pvh, stripped: no symbols for tools). If the
// kernel cannot be booted that way, the bzImage itself is returned.
func pvhImage(ctx context.Context, k *Kernel, logf func(string, ...any)) string {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	out := filepath.Join(filepath.Dir(k.Image), "vmlinux-"+k.Release+".pvh")
	if hasPVHNote(out) {
		return out
	}
	img, err := os.ReadFile(k.Image)
	if err != nil {
		logf("rig: PVH boot: %v; booting the bzImage", err)
		return k.Image
	}
	vmlinux, err := extractVmlinux(ctx, img)
	if err == nil {
		err = writeFileAtomic(out, vmlinux, 0o644)
	}
	if err != nil || !hasPVHNote(out) {
		logf("rig: PVH boot of %s not possible (%v); booting the bzImage", k.Release, err)
		return k.Image
	}
	return out
}

// ErrBzImage is returned by extractVmlinux for a file that is not an x86
// bzImage with a payload it can decompress.
var ErrBzImage = errors.New("rig: not a bzImage with a known payload")

// extractVmlinux decompresses the vmlinux ELF file a bzImage carries: the
// payload the setup header (boot protocol 2.08 or later) locates,
// compressed with xz (xz tool), zstd or gzip.
func extractVmlinux(ctx context.Context, img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" || binary.LittleEndian.Uint16(img[0x206:]) < 0x208 {
		return nil, fmt.Errorf("%w: no setup header of protocol 2.08+", ErrBzImage)
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	off := uint64(setupSects+1)*512 + uint64(binary.LittleEndian.Uint32(img[0x248:]))
	n := uint64(binary.LittleEndian.Uint32(img[0x24c:]))
	if off+n > uint64(len(img)) || n < 6 {
		return nil, fmt.Errorf("%w: payload %d+%d outside the file", ErrBzImage, off, n)
	}
	payload := img[off : off+n]
	var vmlinux []byte
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(payload)
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%w: xz: %w", ErrBzImage, err)
		}
		vmlinux = b
	case bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %w", ErrBzImage, err)
		}
		defer d.Close()
		if vmlinux, err = io.ReadAll(d); err != nil {
			return nil, fmt.Errorf("%w: zstd: %w", ErrBzImage, err)
		}
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrBzImage, err)
		}
		z.Multistream(false)
		if vmlinux, err = io.ReadAll(z); err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrBzImage, err)
		}
	default:
		return nil, fmt.Errorf("%w: payload starts % x", ErrBzImage, payload[:6])
	}
	if !bytes.HasPrefix(vmlinux, []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("%w: payload is not an ELF file", ErrBzImage)
	}
	return vmlinux, nil
}

// hasPVHNote reports whether name is an ELF file with the Xen note
// XEN_ELFNOTE_PHYS32_ENTRY (18), the PVH entry point QEMU boots.
func hasPVHNote(name string) bool {
	f, err := elf.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return false
		}
		for len(b) >= 12 {
			namesz := binary.LittleEndian.Uint32(b[0:])
			descsz := binary.LittleEndian.Uint32(b[4:])
			typ := binary.LittleEndian.Uint32(b[8:])
			nameEnd := 12 + (uint64(namesz)+3)&^3
			end := nameEnd + (uint64(descsz)+3)&^3
			if end > uint64(len(b)) {
				break
			}
			if typ == 18 && string(bytes.TrimRight(b[12:12+namesz], "\x00")) == "Xen" {
				return true
			}
			b = b[end:]
		}
	}
	return false
}
