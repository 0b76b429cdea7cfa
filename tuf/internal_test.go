package tuf

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestCleanName(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"image.bin", true},
		{"releases/1/image.bin", true},
		{"", false},
		{"/abs", false},
		{"a/../b", false},
		{"..", false},
		{"./a", false},
		{"a//b", false},
		{"a/", false},
		{`a\b`, false},
		{"a\x00b", false},
	}
	for _, tc := range cases {
		if got := cleanName(tc.name); got != tc.ok {
			t.Errorf("cleanName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestContentRangeStart(t *testing.T) {
	cases := []struct {
		h    string
		want int64
		ok   bool
	}{
		{"bytes 100-199/200", 100, true},
		{"bytes 0-0/*", 0, true},
		{"bytes */200", 0, false},
		{"items 1-2/3", 0, false},
		{"bytes -5-9/10", 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		got, err := contentRangeStart(tc.h)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("contentRangeStart(%q) = %d, %v; want %d ok=%v", tc.h, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseLocation(t *testing.T) {
	cases := []struct {
		in    string
		base  string
		local bool
		err   error
	}{
		{"https://updates.example.com/m/", "https://updates.example.com/m", false, nil},
		{"http://127.0.0.1:8080/metadata", "http://127.0.0.1:8080/metadata", false, nil},
		{"/mnt/usb/metadata/", "/mnt/usb/metadata", true, nil},
		{"file:///mnt/usb/my%20repo/metadata", "/mnt/usb/my repo/metadata", true, nil},
		{"file://otherhost/x", "", false, ErrInvalidConfig},
		{"ftp://example.com/x", "", false, ErrInvalidConfig},
		{"https:///nohost", "", false, ErrInvalidConfig},
		{"", "", false, ErrInvalidConfig},
	}
	for _, tc := range cases {
		l, err := parseLocation("MetadataURL", tc.in)
		if !errors.Is(err, tc.err) || (err == nil && (l.base != tc.base || l.local != tc.local)) {
			t.Errorf("parseLocation(%q) = %+v, %v; want %q local=%v err=%v", tc.in, l, err, tc.base, tc.local, tc.err)
		}
	}
	http := location{base: "https://h/t"}
	if got := http.join("dir/a b#.bin"); got != "https://h/t/dir/a%20b%23.bin" {
		t.Errorf("join = %q", got)
	}
}

// FuzzLocalMetaPath: whatever URL go-tuf builds from a (signed, but
// outside) role name, the file it maps to stays inside the directory.
func FuzzLocalMetaPath(f *testing.F) {
	for _, s := range []string{"1.root.json", "2.a%3Fb.json", "team%2Frpi4.json", "...json", "..%2F..%2Fetc%2Fpasswd.json", "%2e%2e/x.json", "a%2F%2Fb.json"} {
		f.Add(s)
	}
	const dir = "/repo/metadata"
	f.Fuzz(func(t *testing.T, name string) {
		p, err := localMetaPath(dir, dir+"/"+name)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, dir+"/") || filepath.Clean(p) != p {
			t.Fatalf("%q maps to %q, outside %s", name, p, dir)
		}
	})
}
