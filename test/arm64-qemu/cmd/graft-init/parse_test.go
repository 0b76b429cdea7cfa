package main

import (
	"bytes"
	"errors"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"
)

func TestParseIPArg(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    ipConfig
		ok      bool
		wantErr error
	}{
		{"absent", "console=ttyAMA0 panic=1\n", ipConfig{}, false, nil},
		{
			"address", "console=ttyAMA0 graft.ip=eth0,10.0.2.15/24 panic=1\n",
			ipConfig{Iface: "eth0", Prefix: netip.MustParsePrefix("10.0.2.15/24")}, true, nil,
		},
		{
			"with gateway", "graft.ip=eth0,10.0.2.15/24,10.0.2.2",
			ipConfig{Iface: "eth0", Prefix: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2")}, true, nil,
		},
		{
			"last wins", "graft.ip=eth0,10.0.2.15/24 graft.ip=eth1,192.168.7.2/16",
			ipConfig{Iface: "eth1", Prefix: netip.MustParsePrefix("192.168.7.2/16")}, true, nil,
		},
		{"no prefix", "graft.ip=eth0,10.0.2.15", ipConfig{}, true, errIPArg},
		{"ipv6", "graft.ip=eth0,fd00::2/64", ipConfig{}, true, errIPArg},
		{"no interface", "graft.ip=,10.0.2.15/24", ipConfig{}, true, errIPArg},
		{"long interface", "graft.ip=abcdefghijklmnopq,10.0.2.15/24", ipConfig{}, true, errIPArg},
		{"bad gateway", "graft.ip=eth0,10.0.2.15/24,host", ipConfig{}, true, errIPArg},
		{"too many fields", "graft.ip=eth0,10.0.2.15/24,10.0.2.2,x", ipConfig{}, true, errIPArg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := parseIPArg(tt.cmdline)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseIPArg = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNetmask(t *testing.T) {
	tests := []struct {
		prefix string
		want   []byte
	}{
		{"10.0.2.15/24", []byte{255, 255, 255, 0}},
		{"10.0.2.15/0", []byte{0, 0, 0, 0}},
		{"10.0.2.15/20", []byte{255, 255, 240, 0}},
		{"10.0.2.15/32", []byte{255, 255, 255, 255}},
		{"10.0.2.15/1", []byte{128, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			if got := netmask(netip.MustParsePrefix(tt.prefix)); !bytes.Equal(got, tt.want) {
				t.Errorf("netmask = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseModuleList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr error
	}{
		{"empty", "", nil, nil},
		{
			"relative and absolute, comments",
			"# load order\nlib/modules/6.1.0-50-arm64/kernel/fs/fat/fat.ko\n\n/lib/modules/6.1.0-50-arm64/kernel/fs/fat/vfat.ko\n",
			[]string{"/lib/modules/6.1.0-50-arm64/kernel/fs/fat/fat.ko", "/lib/modules/6.1.0-50-arm64/kernel/fs/fat/vfat.ko"},
			nil,
		},
		{"escapes", "../etc/x.ko\n", nil, errModuleList},
		{"unclean", "lib/modules/../../x.ko\n", nil, errModuleList},
		{"not a module", "lib/modules/x.ko.xz\n", nil, errModuleList},
		{"root", "/\n", nil, errModuleList},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseModuleList([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseModuleList = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParseIPArg(f *testing.F) {
	f.Add("console=ttyAMA0 panic=1 graft.ip=eth0,10.0.2.15/24,10.0.2.2")
	f.Add("graft.ip=eth0,10.0.2.15/24")
	f.Add("graft.ip=,,")
	f.Fuzz(func(t *testing.T, cmdline string) {
		cfg, ok, err := parseIPArg(cmdline)
		if err != nil || !ok {
			return
		}
		if cfg.Iface == "" || len(cfg.Iface) > 15 || !cfg.Prefix.Addr().Is4() {
			t.Fatalf("accepted %+v from %q", cfg, cmdline)
		}
		if cfg.Gateway.IsValid() && !cfg.Gateway.Is4() {
			t.Fatalf("accepted gateway %v from %q", cfg.Gateway, cmdline)
		}
		if len(netmask(cfg.Prefix)) != 4 {
			t.Fatal("netmask is not 4 bytes")
		}
	})
}

func FuzzParseModuleList(f *testing.F) {
	f.Add([]byte("lib/modules/6.1.0-50-arm64/kernel/fs/fat/fat.ko\n# c\n/lib/x.ko\n"))
	f.Add([]byte("../x.ko"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mods, err := parseModuleList(data)
		if err != nil {
			return
		}
		for _, m := range mods {
			if !strings.HasPrefix(m, "/") || !strings.HasSuffix(m, ".ko") || path.Clean(m) != m {
				t.Fatalf("accepted %q", m)
			}
		}
	})
}
