package memtrim

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"testing"
)

const sampleMaps = `00400000-0052a000 r-xp 00000000 fe:01 1234                               /usr/bin/graft-agent
0052a000-006d0000 r--p 0012a000 fe:01 1234                               /usr/bin/graft-agent
006d0000-006f0000 rw-p 002d0000 fe:01 1234                               /usr/bin/graft-agent
006f0000-00720000 rw-p 00000000 00:00 0 
c000000000-c000400000 rw-p 00000000 00:00 0 
7f0000000000-7f0000001000 r--p 00000000 fe:01 99 /usr/bin/graft-agent (deleted)
7f0000001000-7f0000002000 r--p 00000000 fe:01 98 /usr/bin/graft-agent-other
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
garbage line
`

func TestParseMapsPicksTheBinarysReadOnlyMappings(t *testing.T) {
	var got []string
	parseMaps([]byte(sampleMaps), func(m Mapping) {
		if !m.Writable && binaryPath(m.Path, []byte("/usr/bin/graft-agent")) {
			got = append(got, strconv.FormatUint(uint64(m.Start), 16))
		}
	})
	want := []string{"400000", "52a000", "7f0000000000"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte(sampleMaps))
	f.Add([]byte("1-0 r--p 0 0 0 x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseMaps(b, func(m Mapping) {
			if m.End <= m.Start {
				t.Fatalf("empty mapping %+v", m)
			}
		})
	})
}

func rssFileKB(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("RssFile:")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestTrimReleasesTheBinarysPages runs Trim on the test binary itself: its
// read-only mappings are advised and its file-backed resident set shrinks,
// while the process goes on running (writable data is never touched).
func TestTrimReleasesTheBinarysPages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	before := rssFileKB(t)
	res, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	t.Logf("advised %d mappings, %d KiB (%s); RssFile %d -> %d kB", res.Mappings, res.Bytes>>10, res.Advice, before, after)
	if res.Mappings < 2 {
		t.Fatalf("advised %d mappings of the test binary, want its text and rodata", res.Mappings)
	}
	if after >= before {
		t.Fatalf("RssFile %d kB -> %d kB: nothing released", before, after)
	}
}
