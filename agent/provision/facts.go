package provision

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/boards"
)

// ReadFacts reads what the device says about itself: the device tree's
// compatible strings and serial number (or /proc/cpuinfo's Serial, or
// the SoC bus's serial_number), the MACs of its network interfaces, and
// the size of the disk holding slot A. Missing facts stay empty.
func ReadFacts(b boards.Board) Facts {
	var f Facts
	f.Compatible, _ = boards.ReadCompatible("/proc/device-tree/compatible")
	f.Serial = socSerial()
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) == 6 {
				f.MACs = append(f.MACs, i.HardwareAddr.String())
			}
		}
	}
	if g, err := b.Group("rootfs"); err == nil && len(g.Slots) > 0 {
		f.Storage = diskSize(g.Slots[0].Device)
	}
	return f
}

func socSerial() string {
	for _, p := range []string{"/proc/device-tree/serial-number", "/sys/devices/soc0/serial_number"} {
		if b, err := os.ReadFile(p); err == nil {
			if s := strings.TrimSpace(string(bytes.TrimRight(b, "\x00"))); s != "" {
				return s
			}
		}
	}
	if fh, err := os.Open("/proc/cpuinfo"); err == nil {
		defer fh.Close()
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "Serial" {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}

// diskSize is the size of the whole disk a partition belongs to (from
// sysfs), or of the file or device itself.
func diskSize(dev string) uint64 {
	if real, err := filepath.EvalSymlinks(dev); err == nil {
		base := filepath.Base(real)
		for _, p := range []string{"/sys/class/block/" + base + "/../size", "/sys/class/block/" + base + "/size"} {
			if b, err := os.ReadFile(p); err == nil {
				if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
					return n * 512
				}
			}
		}
	}
	f, err := os.Open(dev)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, err := f.Seek(0, 2)
	if err != nil || n < 0 {
		return 0
	}
	return uint64(n)
}
