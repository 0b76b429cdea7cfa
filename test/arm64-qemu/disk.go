package rig

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/agent/bootenv"
)

// Layout of the rig's disk (MBR): the two copies of the U-Boot
// environment raw at EnvOffsets (before partition 1), p1 FAT boot
// (boot.scr), p2 slot A, p3 slot B, p4 ext4 data. Partitions start at
// 1 MiB and are aligned to 1 MiB.
const (
	sectorSize = 512
	alignment  = 1 << 20

	DefaultBootSize = 16 << 20
	DefaultSlotSize = 96 << 20
	DefaultDataSize = 64 << 20
)

// Errors of the disk functions; they are wrapped with details.
var (
	// ErrBadMBR: the image does not start with a valid MBR partition table
	// holding the rig's four partitions.
	ErrBadMBR = errors.New("rig: bad MBR partition table")
	// ErrDiskSpec: a DiskSpec or file list cannot be built (a missing
	// slot image, an image larger than its partition, a bad file name).
	ErrDiskSpec = errors.New("rig: bad disk specification")
	// ErrUnknownSlot: a slot name other than "A" and "B".
	ErrUnknownSlot = errors.New("rig: unknown slot")
)

// DiskSpec describes the disk BuildDisk writes.
type DiskSpec struct {
	Arch Arch
	// Partition sizes in bytes, rounded up to MiB; 0 means the default
	// (16 MiB, 96 MiB, 64 MiB).
	BootSize, SlotSize, DataSize int64
	SlotA                        string            // slot image (a FAT file system image, see BuildSlot); required
	SlotB                        string            // optional; empty = zero-filled
	Env                          map[string]string // U-Boot environment; nil = BOOT_ORDER="A B", BOOT_A_LEFT=3, BOOT_B_LEFT=3
	Data                         map[string][]byte // files of the data partition by relative path (directories are created)
}

// Partition is a byte range of a disk image.
type Partition struct{ Offset, Size int64 }

// Disk is a disk image with the rig's layout. Parts[0] is partition 1
// (boot), Parts[1] slot A, Parts[2] slot B, Parts[3] data.
type Disk struct {
	Path  string
	Parts [4]Partition
}

// DefaultEnv returns the environment a disk gets when DiskSpec.Env is nil:
// both slots with 3 attempts, A first.
func DefaultEnv() map[string]string {
	return map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
}

// BuildSlot writes a FAT file system image of size bytes (rounded up to
// KiB) to out, holding files: name in the file system ("Image",
// "boot/x") to path on the host. Nothing is mounted: mkfs.vfat -C, mmd and
// mcopy.
func BuildSlot(ctx context.Context, out string, size int64, files map[string]string) error {
	if size <= 0 {
		return fmt.Errorf("%w: FAT image size %d", ErrDiskSpec, size)
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if _, err := toolOut(ctx, "mkfs.vfat", "-C", out, strconv.FormatInt((size+1023)/1024, 10)); err != nil {
		return err
	}
	made := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		clean, err := relName(name)
		if err != nil {
			return err
		}
		if dir := path.Dir(clean); dir != "." {
			var parts []string
			for _, p := range strings.Split(dir, "/") {
				parts = append(parts, p)
				d := strings.Join(parts, "/")
				if made[d] {
					continue
				}
				if _, err := mtools(ctx, "mmd", "-i", out, "::"+d); err != nil {
					return err
				}
				made[d] = true
			}
		}
		if _, err := mtools(ctx, "mcopy", "-o", "-i", out, files[name], "::"+clean); err != nil {
			return err
		}
	}
	return nil
}

// relName checks that name is a relative slash-separated path that stays
// inside its file system, and returns it cleaned.
func relName(name string) (string, error) {
	clean := path.Clean(name)
	if name == "" || path.IsAbs(name) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: file name %q is not a relative path inside the file system", ErrDiskSpec, name)
	}
	return clean, nil
}

// mtools runs an mtools command without its media checks (image files
// have no real geometry) and without prompts.
func mtools(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w: %s", ErrTool, name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// BuildDisk writes a disk image with the rig's layout to out: an MBR
// written by sfdisk, the U-Boot environment (agent/bootenv, redundant, at
// EnvOffsets), a FAT boot partition holding boot.scr (CompileBootScript),
// the slot images at their partitions, and an ext4 data partition made by
// mkfs.ext4 -d. Every file system is built as a separate file and copied
// in at its offset; zero blocks are skipped, so the image is sparse.
func BuildDisk(ctx context.Context, spec DiskSpec, out string) (*Disk, error) {
	if _, err := ubootFor(spec.Arch); err != nil {
		return nil, err
	}
	if spec.SlotA == "" {
		return nil, fmt.Errorf("%w: no slot A image", ErrDiskSpec)
	}
	sizes := [4]int64{spec.BootSize, spec.SlotSize, spec.SlotSize, spec.DataSize}
	defaults := [4]int64{DefaultBootSize, DefaultSlotSize, DefaultSlotSize, DefaultDataSize}
	var parts [4]Partition
	next := int64(alignment)
	for i := range sizes {
		if sizes[i] <= 0 {
			sizes[i] = defaults[i]
		}
		parts[i] = Partition{Offset: next, Size: alignUp(sizes[i], alignment)}
		next += parts[i].Size
	}
	env := spec.Env
	if env == nil {
		env = DefaultEnv()
	}
	if _, err := bootenv.EncodeUBoot(env, EnvSize, true, 0); err != nil {
		return nil, fmt.Errorf("%w: environment: %w", ErrDiskSpec, err)
	}

	tmp, err := os.MkdirTemp("", "graft-disk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	scr := filepath.Join(tmp, "boot.scr")
	if err := CompileBootScript(ctx, spec.Arch, scr); err != nil {
		return nil, err
	}
	bootImg := filepath.Join(tmp, "boot.img")
	if err := BuildSlot(ctx, bootImg, parts[0].Size, map[string]string{"boot.scr": scr}); err != nil {
		return nil, err
	}
	dataImg := filepath.Join(tmp, "data.img")
	if err := buildExt4(ctx, dataImg, filepath.Join(tmp, "data"), parts[3].Size, spec.Data); err != nil {
		return nil, err
	}

	d, err := assembleDisk(ctx, out, next, parts, [4]string{bootImg, spec.SlotA, spec.SlotB, dataImg})
	if err != nil {
		return nil, err
	}
	if err := d.SetEnv(env); err != nil {
		return nil, err
	}
	return d, nil
}

// assembleDisk writes a raw disk of size bytes to out: the MBR for parts,
// then each partition image (an empty name leaves it zero), and opens it,
// checking the partition table sfdisk wrote.
func assembleDisk(ctx context.Context, out string, size int64, parts [4]Partition, images [4]string) (*Disk, error) {
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	if err := partition(ctx, out, parts); err != nil {
		return nil, err
	}
	for i, img := range images {
		if img == "" {
			continue
		}
		if err := copyAt(f, parts[i], img); err != nil {
			return nil, fmt.Errorf("partition %d: %w", i+1, err)
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	d, err := OpenDisk(out)
	if err != nil {
		return nil, err
	}
	if d.Parts != parts {
		return nil, fmt.Errorf("%w: sfdisk wrote %v, want %v", ErrBadMBR, d.Parts, parts)
	}
	return d, nil
}

// partition writes the MBR with sfdisk: p1 bootable FAT (type c), p2 and
// p3 FAT slots (type c), p4 Linux (83).
func partition(ctx context.Context, img string, parts [4]Partition) error {
	var b strings.Builder
	b.WriteString("label: dos\nlabel-id: 0x67726166\nunit: sectors\n\n")
	types := [4]string{"c, bootable", "c", "c", "83"}
	for i, p := range parts {
		fmt.Fprintf(&b, "start=%d, size=%d, type=%s\n", p.Offset/sectorSize, p.Size/sectorSize, types[i])
	}
	cmd := exec.CommandContext(ctx, "sfdisk", "--no-reread", "--no-tell-kernel", "-q", img)
	cmd.Stdin = strings.NewReader(b.String())
	if outb, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: sfdisk %s: %w: %s", ErrTool, img, err, strings.TrimSpace(string(outb)))
	}
	return nil
}

// buildExt4 writes the files to dir and makes an ext4 image of size bytes
// from it.
func buildExt4(ctx context.Context, img, dir string, size int64, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		clean, err := relName(name)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(clean))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = toolOut(ctx, "mkfs.ext4", "-q", "-F", "-L", "data", "-E", "root_owner=0:0", "-d", dir, img)
	return err
}

// copyAt copies the file src into p of dst, skipping blocks of zeros
// (dst is freshly truncated, so they already read as zeros).
func copyAt(dst *os.File, p Partition, src string) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	st, err := s.Stat()
	if err != nil {
		return err
	}
	if st.Size() > p.Size {
		return fmt.Errorf("%w: %s is %d bytes, the partition holds %d", ErrDiskSpec, src, st.Size(), p.Size)
	}
	buf := make([]byte, 1<<16)
	for off := int64(0); ; {
		n, err := io.ReadFull(s, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, werr := dst.WriteAt(buf[:n], p.Offset+off); werr != nil {
					return werr
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// OpenDisk reads the partition table of the disk image at path.
func OpenDisk(path string) (*Disk, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mbr := make([]byte, sectorSize)
	if _, err := io.ReadFull(f, mbr); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadMBR, path, err)
	}
	parts, err := ParseMBR(mbr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		if p.Size == 0 {
			return nil, fmt.Errorf("%w: %s: partition %d is empty", ErrBadMBR, path, i+1)
		}
		if p.Offset+p.Size > st.Size() {
			return nil, fmt.Errorf("%w: %s: partition %d ends at %d, past the image's %d bytes", ErrBadMBR, path, i+1, p.Offset+p.Size, st.Size())
		}
	}
	return &Disk{Path: path, Parts: parts}, nil
}

// ParseMBR reads the four primary partition entries of an MBR (the first
// 512 bytes of a disk). An unused entry is a zero Partition. It checks the
// 0x55AA signature and that used entries do not overlap the MBR or each
// other; it does not follow extended partitions.
func ParseMBR(b []byte) ([4]Partition, error) {
	var parts [4]Partition
	if len(b) < sectorSize {
		return parts, fmt.Errorf("%w: %d bytes, an MBR has %d", ErrBadMBR, len(b), sectorSize)
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return parts, fmt.Errorf("%w: no 0x55AA signature (%#02x%02x)", ErrBadMBR, b[510], b[511])
	}
	for i := range parts {
		e := b[446+16*i : 446+16*(i+1)]
		if e[0] != 0 && e[0] != 0x80 {
			return parts, fmt.Errorf("%w: entry %d: status byte %#02x", ErrBadMBR, i+1, e[0])
		}
		typ := e[4]
		start := int64(binary.LittleEndian.Uint32(e[8:]))
		count := int64(binary.LittleEndian.Uint32(e[12:]))
		if typ == 0 || count == 0 {
			continue
		}
		if start == 0 {
			return parts, fmt.Errorf("%w: entry %d starts in the MBR", ErrBadMBR, i+1)
		}
		parts[i] = Partition{Offset: start * sectorSize, Size: count * sectorSize}
	}
	for i, p := range parts {
		for _, q := range parts[:i] {
			if p.Size > 0 && q.Size > 0 && p.Offset < q.Offset+q.Size && q.Offset < p.Offset+p.Size {
				return parts, fmt.Errorf("%w: entry %d overlaps an earlier one", ErrBadMBR, i+1)
			}
		}
	}
	return parts, nil
}

// image returns the mtools spelling of partition i (0-based) of d.
func (d *Disk) image(i int) string { return fmt.Sprintf("%s@@%d", d.Path, d.Parts[i].Offset) }

// EnvLocations returns where the two copies of the U-Boot environment lie
// in the disk image, as agent/bootenv takes them.
func (d *Disk) EnvLocations() []bootenv.FWLocation {
	return []bootenv.FWLocation{
		{Device: d.Path, Offset: EnvOffsets[0], Size: EnvSize},
		{Device: d.Path, Offset: EnvOffsets[1], Size: EnvSize},
	}
}

// FWEnvConfig returns the fw_env.config text that makes fw_printenv read
// the disk image's environment.
func (d *Disk) FWEnvConfig() string {
	var b strings.Builder
	for _, l := range d.EnvLocations() {
		fmt.Fprintf(&b, "%s %#x %#x\n", l.Device, l.Offset, l.Size)
	}
	return b.String()
}

func (d *Disk) envStore() (*bootenv.UBoot, error) {
	u, err := bootenv.NewUBoot(d.EnvLocations()...)
	if err != nil {
		return nil, err
	}
	u.LockFile = "" // a host file, not the host's own environment
	return u, nil
}

// Env reads the U-Boot environment the way U-Boot and the agent do: the
// newer of the two copies with a valid CRC.
func (d *Disk) Env() (map[string]string, error) {
	u, err := d.envStore()
	if err != nil {
		return nil, err
	}
	env, err := u.Load()
	if err != nil {
		return nil, fmt.Errorf("%s: environment: %w", d.Path, err)
	}
	return env, nil
}

// SetEnv saves env as agent/bootenv does: into the copy that is not
// current, with its counter + 1.
func (d *Disk) SetEnv(env map[string]string) error {
	u, err := d.envStore()
	if err != nil {
		return err
	}
	return u.Save(env)
}

// EnvCopy returns the raw bytes of copy i (0 or 1) of the environment.
func (d *Disk) EnvCopy(i int) ([]byte, error) {
	f, err := os.Open(d.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, EnvSize)
	if _, err := f.ReadAt(b, EnvOffsets[i]); err != nil {
		return nil, fmt.Errorf("%s: environment copy %d: %w", d.Path, i+1, err)
	}
	return b, nil
}

// WriteEnvCopy overwrites copy i (0 or 1) of the environment with b (at
// most EnvSize bytes), as a torn or hand-made write would.
func (d *Disk) WriteEnvCopy(i int, b []byte) error {
	if len(b) > EnvSize {
		return fmt.Errorf("%w: environment copy of %d bytes", ErrDiskSpec, len(b))
	}
	f, err := os.OpenFile(d.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, EnvOffsets[i]); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadData returns the file name (a path relative to the root) from the
// ext4 data partition, read with debugfs at the partition's offset. A
// missing file is an error matching fs.ErrNotExist.
func (d *Disk) ReadData(name string) ([]byte, error) {
	clean, err := relName(name)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(clean, "\"\n") {
		return nil, fmt.Errorf("%w: file name %q", ErrDiskSpec, name)
	}
	tmp, err := os.MkdirTemp("", "graft-data-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "out")
	// A powered-off guest leaves committed transactions in ext4's journal
	// that debugfs does not read: replay it on a copy first, as the next
	// mount would.
	dev := filepath.Join(tmp, "data.img")
	if err := d.copyPart(3, dev); err != nil {
		return nil, err
	}
	if err := exec.Command("e2fsck", "-E", "journal_only", "-y", dev).Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			return nil, fmt.Errorf("%s data partition: e2fsck: %w", d.Path, err)
		}
	}
	if _, err := toolOut(context.Background(), "debugfs", "-R", fmt.Sprintf("dump \"/%s\" \"%s\"", clean, out), dev); err != nil {
		return nil, err
	}
	// debugfs exits 0 for a missing file; dump then creates no output.
	b, err := os.ReadFile(out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s data partition: /%s: %w", d.Path, clean, fs.ErrNotExist)
	}
	return b, err
}

// copyPart copies partition i to a new file.
func (d *Disk) copyPart(i int, dst string) error {
	src, err := os.Open(d.Path)
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, io.NewSectionReader(src, d.Parts[i].Offset, d.Parts[i].Size))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Slot returns the raw bytes of slot "A" (partition 2) or "B" (partition
// 3), for hashing. The caller closes it.
func (d *Disk) Slot(name string) (io.ReadCloser, error) {
	var p Partition
	switch name {
	case "A":
		p = d.Parts[1]
	case "B":
		p = d.Parts[2]
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownSlot, name)
	}
	f, err := os.Open(d.Path)
	if err != nil {
		return nil, err
	}
	return sectionCloser{io.NewSectionReader(f, p.Offset, p.Size), f}, nil
}

type sectionCloser struct {
	*io.SectionReader
	io.Closer
}
