package tuf

import (
	"errors"
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
