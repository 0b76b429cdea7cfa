package slot

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// sysBlock is where Linux describes block devices; loop devices show their
// backing file under <sysBlock>/loopN/loop/backing_file and partitions
// their disk under /sys/dev/block/M:m.
const (
	sysBlock    = "/sys/block"
	sysDevBlock = "/sys/dev/block"
)

// CheckWritable refuses a target that is the booted slot's device
// (ErrActiveSlot) or is mounted (ErrMounted), including when dev reaches
// either only through symlinks or another name for the same device.
// mountinfo is the content of /proc/self/mountinfo.
//
// Two names denote the same target when their resolved paths are equal or
// they are the same object: the same device number for block devices, the
// same device and inode for regular files (so a hard link counts too).
// dev counts as mounted when a mount's device number is dev's (block
// devices), when a mount's source or mount point is dev, when a mount's
// source is a loop device backed by dev, or when dev is the whole disk of
// a mounted partition. bootedDev must name an existing file or device:
// when it cannot be resolved, the check fails rather than passes.
func CheckWritable(dev string, bootedDev string, mountinfo io.Reader) error {
	target, err := identify(dev)
	if err != nil {
		return fmt.Errorf("slot: check target: %w", err)
	}
	if bootedDev == "" {
		return fmt.Errorf("%w: booted slot device unknown, refusing %s", ErrActiveSlot, dev)
	}
	booted, err := identify(bootedDev)
	if err != nil {
		return fmt.Errorf("slot: resolve booted slot device: %w", err)
	}
	if target.same(booted) {
		return fmt.Errorf("%w: %s is the booted slot %s", ErrActiveSlot, dev, bootedDev)
	}
	if target.block && booted.block && diskOf(sysDevBlock, booted.rdev) == target.rdev {
		return fmt.Errorf("%w: %s is the disk holding the booted slot %s", ErrActiveSlot, dev, bootedDev)
	}
	mounts, err := parseMountinfo(mountinfo)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if why := target.usedBy(m); why != "" {
			where := m.MountPoint
			if where == "/" {
				where = "/ (the root file system)"
			}
			return fmt.Errorf("%w: %s %s mounted at %s", ErrMounted, dev, why, where)
		}
	}
	return nil
}

// object identifies a file or block device.
type object struct {
	path  string // absolute, symlinks resolved
	block bool
	rdev  uint64 // block devices
	dev   uint64 // regular files: device and inode
	ino   uint64
}

func identify(name string) (object, error) {
	p, err := filepath.EvalSymlinks(name)
	if err != nil {
		return object{}, err
	}
	if p, err = filepath.Abs(p); err != nil {
		return object{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return object{}, err
	}
	o := object{path: p}
	m := fi.Mode()
	switch {
	case m.IsRegular():
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		o.block = true
	default:
		return object{}, fmt.Errorf("%w: %s is %v", ErrTarget, name, m.Type())
	}
	ids, ok := statIDs(fi)
	if !ok {
		return object{}, fmt.Errorf("slot: no device numbers for %s on this system", name)
	}
	if o.block {
		o.rdev = ids.rdev
	} else {
		o.dev, o.ino = ids.dev, ids.ino
	}
	return o, nil
}

func (o object) same(p object) bool {
	if o.path == p.path {
		return true
	}
	if o.block != p.block {
		return false
	}
	if o.block {
		return o.rdev == p.rdev
	}
	return o.dev == p.dev && o.ino == p.ino
}

// usedBy says how mount m uses o, or "" when it does not.
func (o object) usedBy(m mount) string {
	if o.block && m.Dev == o.rdev {
		return "is"
	}
	if o.block && diskOf(sysDevBlock, m.Dev) == o.rdev {
		return "holds a partition"
	}
	if strings.HasPrefix(m.Source, "/") {
		if s, err := identify(m.Source); err == nil {
			if o.same(s) {
				return "is"
			}
			if s.block && strings.HasPrefix(filepath.Base(s.path), "loop") {
				if b, err := identify(loopBacking(filepath.Base(s.path))); err == nil && o.same(b) {
					return "backs loop device " + s.path
				}
			}
		}
	}
	if !o.block {
		// A file bind-mounted onto a path: the mount point is the file.
		if mp, err := identify(m.MountPoint); err == nil && o.same(mp) {
			return "is bind"
		}
	}
	return ""
}

// loopBacking returns the backing file of loop device name ("loop3"), or
// "" when there is none.
func loopBacking(name string) string {
	b, err := os.ReadFile(filepath.Join(sysBlock, name, "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// diskOf returns the device number of the disk holding partition devnum,
// or 0 when devnum is not a partition (or sysfs cannot tell). devBlock is
// /sys/dev/block, where M:m links to the device's directory; a partition's
// directory has a "partition" file and sits inside its disk's directory.
func diskOf(devBlock string, devnum uint64) uint64 {
	maj, mnr := splitDev(devnum)
	dir := filepath.Join(devBlock, fmt.Sprintf("%d:%d", maj, mnr))
	if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
		return 0
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(resolved), "dev"))
	if err != nil {
		return 0
	}
	d, err := parseDevnum(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return d
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	ID, Parent int
	Dev        uint64 // st_dev of the mounted file system
	Root       string
	MountPoint string
	FSType     string
	Source     string
}

// parseMountinfo parses the kernel's mountinfo format (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// with octal escapes (\040 for a space) in paths.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		m, err := parseMountLine(text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrMountinfo, line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMountinfo, err)
	}
	return out, nil
}

func parseMountLine(text string) (mount, error) {
	f := strings.Fields(text)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 7 || sep < 0 || len(f) < sep+3 {
		return mount{}, fmt.Errorf("want at least 10 fields with a \"-\" separator, got %d", len(f))
	}
	var m mount
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return mount{}, fmt.Errorf("mount ID: %w", err)
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return mount{}, fmt.Errorf("parent ID: %w", err)
	}
	if m.Dev, err = parseDevnum(f[2]); err != nil {
		return mount{}, err
	}
	m.Root = unescapeMount(f[3])
	m.MountPoint = unescapeMount(f[4])
	m.FSType = unescapeMount(f[sep+1])
	m.Source = unescapeMount(f[sep+2])
	return m, nil
}

// parseDevnum parses "major:minor".
func parseDevnum(s string) (uint64, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("device number %q is not major:minor", s)
	}
	maj, err := strconv.ParseUint(a, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("device major %q: %w", a, err)
	}
	mnr, err := strconv.ParseUint(b, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("device minor %q: %w", b, err)
	}
	return makeDev(uint32(maj), uint32(mnr)), nil
}

// unescapeMount undoes the kernel's octal escapes (\040, \011, \012, \134).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			v := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
