package main

import (
	"bytes"
	"encoding/json"
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

// errRunConfig is returned by parseRunConfig for a bad /etc/graft-run.
var errRunConfig = errors.New("malformed run config")

// runConfig is the program run mode runs: /etc/graft-run, a JSON object
// {"argv": ["/abs/prog", "arg", ...], "env": ["KEY=VALUE", ...]}, written
// into the initramfs by the rig's RunGuest.
type runConfig struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
}

// parseRunArg reports whether the kernel command line selects run mode
// with graft.run=1 (the last graft.run= wins; any other value is off).
func parseRunArg(cmdline string) bool {
	on := false
	for _, f := range strings.Fields(cmdline) {
		if v, found := strings.CutPrefix(f, "graft.run="); found {
			on = v == "1"
		}
	}
	return on
}

// parseRunConfig decodes and checks /etc/graft-run: a program given by
// absolute path, arguments and environment entries without NUL bytes, and
// environment entries of the form KEY=VALUE with a non-empty KEY.
func parseRunConfig(data []byte) (runConfig, error) {
	var c runConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return runConfig{}, fmt.Errorf("%w: %w", errRunConfig, err)
	}
	if dec.More() {
		return runConfig{}, fmt.Errorf("%w: data after the object", errRunConfig)
	}
	if len(c.Argv) == 0 || !path.IsAbs(c.Argv[0]) {
		return runConfig{}, fmt.Errorf("%w: argv must start with an absolute path, got %q", errRunConfig, c.Argv)
	}
	for _, a := range c.Argv {
		if strings.ContainsRune(a, 0) {
			return runConfig{}, fmt.Errorf("%w: argument %q holds a NUL byte", errRunConfig, a)
		}
	}
	for _, e := range c.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.ContainsRune(e, 0) {
			return runConfig{}, fmt.Errorf("%w: environment entry %q is not KEY=VALUE", errRunConfig, e)
		}
	}
	return c, nil
}
