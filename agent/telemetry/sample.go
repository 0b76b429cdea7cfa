package telemetry

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/transport"
)

// Space is one place whose size the report carries: a mount point (the
// data directory, the root) or a slot's device or image file.
type Space struct {
	Name string // as reported, e.g. "/var/lib/graft" or "slot:rootfs/B"
	Path string
	// Device: Path is a block device or an image file; its size is
	// reported, with no free space.
	Device bool
}

// State is what the agent knows beyond /proc: filled in by the caller at
// each sample.
type State struct {
	Slot, Installed, AgentVersion string
	BootCount                     uint64
	KernelPatches, UserPatches    []string
	Reconnects                    uint64
	LastUpdate                    *transport.Outcome
	Health                        *transport.Check
}

// Sampler reads the machine. Its zero value reads the real /proc and /sys.
type Sampler struct {
	Proc, Sys string // default /proc and /sys (tests point them elsewhere)
	Spaces    []Space
}

func (s Sampler) proc() string { return cmp(s.Proc, "/proc") }
func (s Sampler) sys() string  { return cmp(s.Sys, "/sys") }

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxProcFile))
}

// Sample reads the machine into a report for device at time now (unix
// ms). What cannot be read is left out; every list is cut to what the
// wire allows.
func (s Sampler) Sample(device string, now int64, st State) transport.Telemetry {
	t := transport.Telemetry{
		Device: device, Time: now, Slot: st.Slot, Installed: st.Installed, AgentVersion: st.AgentVersion,
		BootCount: st.BootCount, Reconnects: st.Reconnects, LastUpdate: st.LastUpdate, Health: st.Health,
		KernelPatches: limit(st.KernelPatches), UserPatches: limit(st.UserPatches),
	}
	if b, err := readSmall(filepath.Join(s.proc(), "uptime")); err == nil {
		t.Uptime, _ = ParseUptime(b)
	}
	if b, err := readSmall(filepath.Join(s.proc(), "loadavg")); err == nil {
		t.Load, _ = ParseLoadavg(b)
	}
	if b, err := readSmall(filepath.Join(s.proc(), "meminfo")); err == nil {
		t.MemTotal, t.MemAvailable, _ = ParseMeminfo(b)
	}
	if b, err := readSmall(filepath.Join(s.proc(), "self", "status")); err == nil {
		t.AgentRSS, _ = ParseVmRSS(b)
	}
	if b, err := readSmall(filepath.Join(s.proc(), "sys", "kernel", "osrelease")); err == nil {
		t.Kernel = clip(strings.TrimSpace(string(b)))
	}
	t.Thermal = s.thermal()
	for _, sp := range s.Spaces {
		if len(t.Disks) == maxList {
			break
		}
		if d, err := space(sp); err == nil {
			t.Disks = append(t.Disks, d)
		}
	}
	return t
}

// maxList is the wire's bound on each list in a report.
const maxList = 16

func limit(l []string) []string {
	if len(l) > maxList {
		l = l[:maxList]
	}
	out := make([]string, 0, len(l))
	for _, s := range l {
		if s = clip(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// clip keeps a name printable and within the wire's 128 bytes.
func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if len(s) > 128 {
		s = strings.ToValidUTF8(s[:128], "")
	}
	return s
}

// thermal reads /sys/class/thermal/thermal_zone*/{type,temp}, in zone
// order; zones whose temperature cannot be read (a sensor that is off)
// are left out.
func (s Sampler) thermal() []transport.Zone {
	dir := filepath.Join(s.sys(), "class", "thermal")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var zones []transport.Zone
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "thermal_zone") {
			names = append(names, e.Name())
		}
	}
	// thermal_zone2 before thermal_zone10
	slices.SortFunc(names, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	for _, n := range names {
		if len(zones) == maxList {
			break
		}
		b, err := readSmall(filepath.Join(dir, n, "temp"))
		if err != nil {
			continue
		}
		milli, err := ParseMilli(b)
		if err != nil {
			continue
		}
		name := n
		if tb, err := readSmall(filepath.Join(dir, n, "type")); err == nil {
			if tn := clip(strings.TrimSpace(string(tb))); tn != "" {
				name = tn
			}
		}
		zones = append(zones, transport.Zone{Name: name, Milli: milli})
	}
	return zones
}

// space measures one Space: statfs for a mount, the size for a device or
// an image file.
func space(sp Space) (transport.Disk, error) {
	d := transport.Disk{Mount: clip(sp.Name)}
	if d.Mount == "" {
		return d, fmt.Errorf("%w: unnamed space", ErrFormat)
	}
	if sp.Device {
		f, err := os.Open(sp.Path)
		if err != nil {
			return d, err
		}
		defer f.Close()
		n, err := f.Seek(0, io.SeekEnd) // block devices have no st_size
		if err != nil {
			return d, err
		}
		d.Total = n
		return d, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(sp.Path, &st); err != nil {
		return d, err
	}
	bs := int64(st.Bsize) //nolint:unconvert // int32 on some arches
	d.Total = int64(st.Blocks) * bs
	d.Free = int64(st.Bavail) * bs
	return d, nil
}
