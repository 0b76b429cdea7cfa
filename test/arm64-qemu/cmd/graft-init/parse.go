package main

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// errIPArg is returned by parseIPArg for a malformed graft.ip= value.
var errIPArg = errors.New("malformed graft.ip")

// errModuleList is returned by parseModuleList for a bad line.
var errModuleList = errors.New("malformed module list")

// ipConfig is the network setup the kernel command line asks for with
// graft.ip=IFACE,ADDR/PREFIX[,GATEWAY].
type ipConfig struct {
	Iface   string
	Prefix  netip.Prefix // address with its prefix length, e.g. 10.0.2.15/24
	Gateway netip.Addr   // zero if no default route is wanted
}

// parseIPArg finds graft.ip= in a kernel command line. ok is false if the
// command line has none.
func parseIPArg(cmdline string) (cfg ipConfig, ok bool, err error) {
	var val string
	for _, f := range strings.Fields(cmdline) {
		if v, found := strings.CutPrefix(f, "graft.ip="); found {
			val, ok = v, true // the last one wins, as for kernel parameters
		}
	}
	if !ok {
		return ipConfig{}, false, nil
	}
	parts := strings.Split(val, ",")
	if len(parts) < 2 || len(parts) > 3 {
		return ipConfig{}, true, fmt.Errorf("%w: %q: want IFACE,ADDR/PREFIX[,GATEWAY]", errIPArg, val)
	}
	cfg.Iface = parts[0]
	if cfg.Iface == "" || len(cfg.Iface) >= 16 || strings.ContainsAny(cfg.Iface, "/\x00") {
		return ipConfig{}, true, fmt.Errorf("%w: interface name %q", errIPArg, cfg.Iface)
	}
	cfg.Prefix, err = netip.ParsePrefix(parts[1])
	if err != nil || !cfg.Prefix.Addr().Is4() {
		return ipConfig{}, true, fmt.Errorf("%w: address %q is not IPv4 ADDR/PREFIX", errIPArg, parts[1])
	}
	if len(parts) == 3 {
		cfg.Gateway, err = netip.ParseAddr(parts[2])
		if err != nil || !cfg.Gateway.Is4() {
			return ipConfig{}, true, fmt.Errorf("%w: gateway %q is not IPv4", errIPArg, parts[2])
		}
	}
	return cfg, true, nil
}

// netmask returns the IPv4 netmask of p as 4 bytes.
func netmask(p netip.Prefix) []byte {
	bits := p.Bits()
	m := make([]byte, 4)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// parseModuleList reads /etc/modules: one module file per line, relative
// to / (a leading slash is accepted), in load order. Blank lines and lines
// starting with # are skipped. The result is absolute.
func parseModuleList(data []byte) ([]string, error) {
	var mods []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := strings.TrimLeft(line, "/")
		if p == "" || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || !strings.HasSuffix(p, ".ko") {
			return nil, fmt.Errorf("%w: line %d: %q is not a clean path to a .ko file", errModuleList, i+1, line)
		}
		mods = append(mods, "/"+p)
	}
	return mods, nil
}
