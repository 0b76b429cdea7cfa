package rig

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

const (
	initPkg      = "github.com/graft-dev/graft/test/arm64-qemu/cmd/graft-init"
	agentPkg     = "github.com/graft-dev/graft/agent/cmd/graft-agent"
	fakeAgentPkg = "github.com/graft-dev/graft/test/arm64-qemu/cmd/graft-init/internal/fakeagent"
)

// buildGuestBinaries builds graft-init and the agent package for arch into
// dir.
func buildGuestBinaries(t *testing.T, arch Arch, dir, agentPkg string) (initBin, agentBin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	initBin = filepath.Join(dir, "graft-init")
	agentBin = filepath.Join(dir, "graft-agent")
	if err := BuildGo(ctx, arch, initPkg, initBin); err != nil {
		t.Fatal(err)
	}
	if err := BuildGo(ctx, arch, agentPkg, agentBin); err != nil {
		t.Fatal(err)
	}
	return initBin, agentBin
}

// readInitramfs reads a gzip-compressed newc archive back with u-root's
// reader: the records in archive order and their contents.
func readInitramfs(t *testing.T, name string) ([]cpio.Record, map[string][]byte) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(raw))})
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string][]byte{}
	for _, r := range recs {
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		contents[r.Name] = b
	}
	return recs, contents
}

func TestBuildInitramfs(t *testing.T) {
	k := fetchKernel(t, ARM64)
	dir := t.TempDir()
	initBin := filepath.Join(dir, "init-bin")
	agentBin := filepath.Join(dir, "agent-bin")
	if err := os.WriteFile(initBin, []byte("\x7fELF init"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agentBin, []byte("\x7fELF agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := InitramfsSpec{
		Arch:    ARM64,
		Init:    initBin,
		Agent:   agentBin,
		Kernel:  k,
		Modules: DefaultModules(ARM64),
		Files:   map[string][]byte{"etc/graft-init-fail": nil, "etc/graft/extra.conf": []byte("x = 1\n")},
	}
	out := filepath.Join(dir, "initrd.gz")
	if err := BuildInitramfs(spec, out); err != nil {
		t.Fatal(err)
	}
	recs, contents := readInitramfs(t, out)

	seen := map[string]cpio.Record{}
	for _, r := range recs {
		if parent := path.Dir(r.Name); parent != "." {
			if p, ok := seen[parent]; !ok || p.Mode&cpio.S_IFMT != cpio.S_IFDIR {
				t.Errorf("%s comes before its directory %s", r.Name, parent)
			}
		}
		if _, dup := seen[r.Name]; dup {
			t.Errorf("%s twice in the archive", r.Name)
		}
		seen[r.Name] = r
	}
	wantFiles := []struct {
		name    string
		mode    uint64
		content []byte
	}{
		{"init", cpio.S_IFREG | 0o755, []byte("\x7fELF init")},
		{"bin/graft-agent", cpio.S_IFREG | 0o755, []byte("\x7fELF agent")},
		{"etc/graft-init-fail", cpio.S_IFREG | 0o644, nil},
		{"etc/graft/extra.conf", cpio.S_IFREG | 0o644, []byte("x = 1\n")},
		{"dev/console", cpio.S_IFCHR | 0o600, nil},
	}
	for _, w := range wantFiles {
		r, ok := seen[w.name]
		if !ok {
			t.Errorf("%s missing", w.name)
			continue
		}
		if r.Mode != w.mode {
			t.Errorf("%s mode %#o, want %#o", w.name, r.Mode, w.mode)
		}
		if !bytes.Equal(contents[w.name], w.content) {
			t.Errorf("%s content %q, want %q", w.name, contents[w.name], w.content)
		}
	}
	if c := seen["dev/console"]; c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("dev/console is %d,%d, want 5,1", c.Rmajor, c.Rminor)
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "boot", "var/lib/graft"} {
		if r, ok := seen[d]; !ok || r.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("directory %s missing", d)
		}
	}

	// /etc/modules lists the closure in load order, each file present and
	// equal to the kernel's.
	closure, err := k.ModuleClosure(DefaultModules(ARM64)...)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, l := range strings.Split(strings.TrimSpace(string(contents["etc/modules"])), "\n") {
		listed = append(listed, l)
	}
	if len(listed) != len(closure) {
		t.Fatalf("etc/modules lists %d modules, closure has %d:\n%s", len(listed), len(closure), contents["etc/modules"])
	}
	for i, l := range listed {
		want := filepath.ToSlash(strings.TrimPrefix(closure[i], k.Root+string(filepath.Separator)))
		if l != want {
			t.Errorf("etc/modules line %d = %q, want %q", i+1, l, want)
		}
		host, err := os.ReadFile(closure[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(contents[l], host) {
			t.Errorf("%s in the archive differs from %s", l, closure[i])
		}
	}

	// Same inputs, same bytes.
	again := filepath.Join(dir, "again.gz")
	if err := BuildInitramfs(spec, again); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same spec differ")
	}

	// GNU cpio reads it too.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("sh", "-c", `gzip -dc "$1" | cpio -it --quiet`, "sh", out)
		got, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		names := strings.Fields(string(got))
		for _, w := range []string{"init", "bin/graft-agent", "dev/console", "etc/modules", listed[len(listed)-1]} {
			if !slices.Contains(names, w) {
				t.Errorf("cpio -t does not list %s", w)
			}
		}
	}
}

func TestBuildGoStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds graft-init three times")
	}
	tests := []struct {
		arch    Arch
		machine elf.Machine
		class   elf.Class
	}{
		{ARM64, elf.EM_AARCH64, elf.ELFCLASS64},
		{ARMHF, elf.EM_ARM, elf.ELFCLASS32},
		{AMD64, elf.EM_X86_64, elf.ELFCLASS64},
	}
	for _, tt := range tests {
		t.Run(string(tt.arch), func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "graft-init")
			if err := BuildGo(context.Background(), tt.arch, initPkg, out); err != nil {
				t.Fatal(err)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != tt.machine || f.Class != tt.class {
				t.Errorf("built %v %v, want %v %v", f.Machine, f.Class, tt.machine, tt.class)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("graft-init for %s is dynamically linked (%v)", tt.arch, p.Type)
				}
			}
			if f.Section(".symtab") != nil {
				t.Errorf("graft-init for %s is not stripped", tt.arch)
			}
		})
	}
	if err := BuildGo(context.Background(), Arch("sparc"), initPkg, filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrUnknownArch) {
		t.Errorf("BuildGo(sparc) error = %v, want ErrUnknownArch", err)
	}
}

func TestBuildInitramfsRejects(t *testing.T) {
	dir := t.TempDir()
	initBin := filepath.Join(dir, "init")
	if err := os.WriteFile(initBin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec InitramfsSpec
	}{
		{"no init", InitramfsSpec{Arch: ARM64}},
		{"file over init", InitramfsSpec{Init: initBin, Files: map[string][]byte{"init": nil}}},
		{"file over a directory", InitramfsSpec{Init: initBin, Files: map[string][]byte{"proc": nil}}},
		{"absolute path", InitramfsSpec{Init: initBin, Files: map[string][]byte{"/etc/x": nil}}},
		{"escaping path", InitramfsSpec{Init: initBin, Files: map[string][]byte{"../x": nil}}},
		{"modules without kernel", InitramfsSpec{Init: initBin, Modules: []string{"ext4"}}},
		{"kernel of another arch", InitramfsSpec{Arch: ARMHF, Init: initBin, Kernel: &Kernel{Arch: ARM64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.gz")
			if err := BuildInitramfs(tt.spec, out); !errors.Is(err, ErrInitramfs) {
				t.Errorf("BuildInitramfs error = %v, want ErrInitramfs", err)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s written for a rejected spec", out)
			}
		})
	}
}

// console collects a guest's serial output line by line with the time
// each line arrived, counted from its creation. Safe for concurrent use.
type console struct {
	start   time.Time
	mu      sync.Mutex
	partial []byte
	lines   []consoleLine
}

type consoleLine struct {
	At   time.Duration
	Text string
}

func newConsole() *console { return &console{start: time.Now()} }

// Write implements io.Writer.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Since(c.start)
	c.partial = append(c.partial, p...)
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(c.partial[:i]), "\r")
		c.lines = append(c.lines, consoleLine{At: now, Text: line})
		c.partial = c.partial[i+1:]
	}
	return len(p), nil
}

// Lines returns the complete lines so far, and a last unterminated one.
func (c *console) Lines() []consoleLine {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := slices.Clone(c.lines)
	if len(c.partial) > 0 {
		lines = append(lines, consoleLine{At: time.Since(c.start), Text: string(c.partial)})
	}
	return lines
}

// Find returns the first line containing substr.
func (c *console) Find(substr string) (consoleLine, bool) {
	for _, l := range c.Lines() {
		if strings.Contains(l.Text, substr) {
			return l, true
		}
	}
	return consoleLine{}, false
}

// InOrder reports the first of wants that does not appear, in order, each
// on a later line than the one before; "" if all do.
func (c *console) InOrder(wants ...string) string {
	lines := c.Lines()
	i := 0
	for _, w := range wants {
		for i < len(lines) && !strings.Contains(lines[i].Text, w) {
			i++
		}
		if i == len(lines) {
			return w
		}
		i++
	}
	return ""
}

func (c *console) String() string {
	var b strings.Builder
	for _, l := range c.Lines() {
		fmt.Fprintf(&b, "%7.3fs %s\n", l.At.Seconds(), l.Text)
	}
	return b.String()
}

// directBoot is a QEMU machine booting a kernel and initramfs directly,
// without a bootloader.
type directBoot struct {
	arch    Arch
	kernel  string
	initrd  string
	disk    string // raw image on virtio-blk-pci, or ""
	cmdline string
}

func (b directBoot) args() []string {
	var args []string
	switch b.arch {
	case ARM64:
		// -cpu max emulates pointer authentication with the architected
		// QARMA algorithm, which makes TCG about four times slower to boot
		// Debian's kernel; the implementation-defined one is cheap.
		args = []string{"qemu-system-aarch64", "-M", "virt", "-cpu", "max,pauth-impdef=on"}
	case ARMHF:
		// Debian's armmp kernel has no LPAE: with highmem on, virt puts the
		// PCIe ECAM above 4 GiB and the kernel finds no PCI devices.
		args = []string{"qemu-system-arm", "-M", "virt,highmem=off", "-cpu", "cortex-a15"}
	}
	args = append(args, "-m", "1024", "-accel", "tcg", "-nographic", "-no-reboot",
		"-kernel", b.kernel, "-initrd", b.initrd,
		"-append", "console=ttyAMA0 panic=1 "+b.cmdline,
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")
	if b.disk != "" {
		args = append(args, "-drive", "if=none,file="+b.disk+",format=raw,id=hd0", "-device", "virtio-blk-pci,drive=hd0")
	}
	return args
}

// run boots the machine and returns its console once QEMU exits; with
// -no-reboot, QEMU exits when the guest reboots or its kernel panics
// (panic=1). timeout bounds the whole run; QEMU is killed by PID if the
// test ends first.
func (b directBoot) run(t *testing.T, timeout time.Duration) *console {
	t.Helper()
	args := b.args()
	if _, err := exec.LookPath(args[0]); err != nil {
		t.Skipf("%s not installed", args[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	con := newConsole()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout = con
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	err := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %v; console:\n%s", args[0], timeout, con)
	}
	if err != nil {
		t.Fatalf("%s: %v: %s; console:\n%s", args[0], err, stderr.String(), con)
	}
	return con
}

// makeDisk writes a raw disk image with an MBR: partition 1 an empty FAT
// file system, partition 4 ext4 holding data (path → content).
func makeDisk(t *testing.T, dir string, data map[string][]byte) string {
	t.Helper()
	for _, tool := range []string{"mkfs.vfat", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	const (
		sector    = 512
		bootStart = 2048
		bootSize  = 16 << 20 / sector
		dataStart = bootStart + bootSize
		dataSize  = 16 << 20 / sector
	)
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, (dataStart+dataSize)*sector); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	// MBR with entries 1 and 4 only (sfdisk numbers partitions
	// consecutively): status, CHS (unused), type, CHS, LBA start, sectors.
	mbr := make([]byte, sector)
	for _, p := range []struct {
		n           int
		typ         byte
		start, size uint32
	}{{1, 0x0c, bootStart, bootSize}, {4, 0x83, dataStart, dataSize}} {
		e := mbr[0x1be+16*(p.n-1):]
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		e[4] = p.typ
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		binary.LittleEndian.PutUint32(e[8:], p.start)
		binary.LittleEndian.PutUint32(e[12:], p.size)
	}
	mbr[510], mbr[511] = 0x55, 0xaa

	bootImg := filepath.Join(dir, "boot.vfat")
	run("mkfs.vfat", "-C", bootImg, fmt.Sprint(bootSize*sector/1024))
	root := filepath.Join(dir, "data-root")
	for name, content := range data {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	dataImg := filepath.Join(dir, "data.ext4")
	run("mkfs.ext4", "-q", "-F", "-d", root, dataImg, fmt.Sprintf("%dk", dataSize*sector/1024))

	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range []struct {
		img   string
		start int64
	}{{"", 0}, {bootImg, bootStart}, {dataImg, dataStart}} {
		b := mbr
		if p.img != "" {
			var err error
			if b, err = os.ReadFile(p.img); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.WriteAt(b, p.start*sector); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return disk
}

// TestBootInit boots Debian's arm64 and armhf kernels under QEMU with an
// initramfs holding graft-init and the real graft-agent, and reads the
// serial console: modules load, the network comes up, the boot and data
// partitions mount, the agent runs and fails on its incomplete config,
// and init restarts the machine. Without a disk, init reports the missing
// disk and restarts; with the fail marker, init exits and the kernel
// panics.
func TestBootInit(t *testing.T) {
	// The agent's config lacks the required [mqtt] and [tuf] keys, so
	// graft-agent run exits at once with status 1.
	agentConf := []byte("[device]\nid = rig-boot-test\nboard = qemu-virt-arm64\n")
	const cmdline = "graft.ip=eth0,10.0.2.15/24,10.0.2.2"
	tests := []struct {
		name   string
		arch   Arch
		disk   bool
		files  map[string][]byte
		wants  func(nmods int) []string
		panics bool
		// initError is the one error init may report.
		initError string
		agent     string // package to build as /bin/graft-agent, default the real one
		noDelay   bool   // init restarts at once, without "restarting in 2s"
	}{
		{
			name: "arm64 disk", arch: ARM64, disk: true,
			wants: func(n int) []string {
				return []string{
					"graft-init: starting",
					"graft-init: mounted devtmpfs on /dev",
					fmt.Sprintf("graft-init: loaded %d of %d modules", n, n),
					"graft-init: network eth0 10.0.2.15/24 up, default route via 10.0.2.2",
					"graft-init: mounted /dev/vda1 (vfat) on /boot",
					"graft-init: mounted /dev/vda4 (ext4) on /var/lib/graft",
					"graft-init: starting /bin/graft-agent run --config /var/lib/graft/agent.conf",
					"graft-agent run:",
					"graft-init: agent exited with status 1",
					"graft-init: rebooting",
				}
			},
		},
		{
			name: "armhf disk", arch: ARMHF, disk: true,
			wants: func(n int) []string {
				return []string{
					"graft-init: starting",
					fmt.Sprintf("graft-init: loaded %d of %d modules", n, n),
					"graft-init: network eth0 10.0.2.15/24 up, default route via 10.0.2.2",
					"graft-init: mounted /dev/vda1 (vfat) on /boot",
					"graft-init: mounted /dev/vda4 (ext4) on /var/lib/graft",
					"graft-agent run:",
					"graft-init: agent exited with status 1",
					"graft-init: rebooting",
				}
			},
		},
		{
			name: "arm64 agent asks for reboot", arch: ARM64, disk: true, agent: fakeAgentPkg,
			wants: func(int) []string {
				return []string{
					"graft-init: mounted /dev/vda4 (ext4) on /var/lib/graft",
					"fakeagent: run --config /var/lib/graft/agent.conf; PATH=/bin; exiting with status 75",
					"graft-init: agent exited with status 75",
					"graft-init: rebooting",
				}
			},
			noDelay: true,
		},
		{
			name: "arm64 no disk", arch: ARM64, initError: "/dev/vda did not appear",
			wants: func(n int) []string {
				return []string{
					fmt.Sprintf("graft-init: loaded %d of %d modules", n, n),
					"graft-init: network eth0 10.0.2.15/24 up",
					"graft-init: error: /dev/vda did not appear within 10s",
					"graft-init: rebooting",
				}
			},
		},
		{
			name: "armhf built to fail", arch: ARMHF,
			files: map[string][]byte{"etc/graft-init-fail": nil},
			wants: func(int) []string {
				return []string{
					"graft-init: this image is built to fail",
					"Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
				}
			},
			panics: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := fetchKernel(t, tt.arch)
			dir := t.TempDir()
			agent := agentPkg
			if tt.agent != "" {
				agent = tt.agent
			}
			initBin, agentBin := buildGuestBinaries(t, tt.arch, dir, agent)
			mods := DefaultModules(tt.arch)
			closure, err := k.ModuleClosure(mods...)
			if err != nil {
				t.Fatal(err)
			}
			initrd := filepath.Join(dir, "initrd.gz")
			spec := InitramfsSpec{Arch: tt.arch, Init: initBin, Agent: agentBin, Kernel: k, Modules: mods, Files: tt.files}
			if err := BuildInitramfs(spec, initrd); err != nil {
				t.Fatal(err)
			}
			b := directBoot{arch: tt.arch, kernel: k.Image, initrd: initrd, cmdline: cmdline}
			if tt.disk {
				b.disk = makeDisk(t, dir, map[string][]byte{"agent.conf": agentConf})
			}
			con := b.run(t, 90*time.Second)
			if missing := con.InOrder(tt.wants(len(closure))...); missing != "" {
				t.Fatalf("console lacks %q (in order); console:\n%s", missing, con)
			}
			for _, l := range con.Lines() {
				if strings.Contains(l.Text, "graft-init: error") && (tt.initError == "" || !strings.Contains(l.Text, tt.initError)) {
					t.Errorf("init reported an error: %s", l.Text)
				}
			}
			if _, ok := con.Find("graft-init: restarting in"); ok == tt.noDelay && !tt.panics {
				t.Errorf("init delayed the restart: %v, want %v; console:\n%s", ok, !tt.noDelay, con)
			}
			if _, ok := con.Find("Kernel panic"); ok != tt.panics {
				t.Errorf("kernel panic on the console: %v, want %v; console:\n%s", ok, tt.panics, con)
			}
			if os.Getenv("GRAFT_RIG_CONSOLE") != "" {
				t.Logf("console:\n%s", con)
			}
			if l, ok := con.Find("graft-init: starting"); ok {
				t.Logf("%s: init started %.2fs after QEMU started", tt.name, l.At.Seconds())
			}
			if l, ok := con.Find("graft-init: starting /bin/graft-agent"); ok {
				t.Logf("%s: agent started %.2fs after QEMU started", tt.name, l.At.Seconds())
			}
		})
	}
}
