package memtrim

import (
	"bytes"
	"errors"
	"strconv"
)

// ErrUnsupported: this OS has no way to page a mapping out.
var ErrUnsupported = errors.New("memtrim: not supported on this OS")

// Mapping is one line of /proc/self/maps that Trim may advise.
type Mapping struct {
	Start, End uintptr
	Writable   bool
	Path       []byte // aliases the buffer it was parsed from
}

// Result says what Trim advised.
type Result struct {
	Mappings int    // mappings of the binary advised
	Bytes    uint64 // their size
	Advice   string // "pageout" or "dontneed"
}

// parseMaps calls fn for each line of a /proc/PID/maps buffer, without
// allocating: "start-end perms offset dev inode   path".
func parseMaps(buf []byte, fn func(Mapping)) {
	for len(buf) > 0 {
		line := buf
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else {
			buf = nil
		}
		var m Mapping
		var ok bool
		if m, ok = parseLine(line); ok {
			fn(m)
		}
	}
}

func parseLine(line []byte) (Mapping, bool) {
	var fields [6][]byte
	n := 0
	for n < 5 {
		for len(line) > 0 && line[0] == ' ' {
			line = line[1:]
		}
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			return Mapping{}, false
		}
		fields[n], line = line[:i], line[i+1:]
		n++
	}
	for len(line) > 0 && line[0] == ' ' {
		line = line[1:]
	}
	fields[5] = line
	dash := bytes.IndexByte(fields[0], '-')
	if dash < 0 || len(fields[1]) < 4 {
		return Mapping{}, false
	}
	start, err1 := strconv.ParseUint(string(fields[0][:dash]), 16, 64)
	end, err2 := strconv.ParseUint(string(fields[0][dash+1:]), 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return Mapping{}, false
	}
	return Mapping{Start: uintptr(start), End: uintptr(end), Writable: fields[1][1] == 'w', Path: fields[5]}, true
}

// binaryPath reports whether a mapping's path names the executable exe,
// also after the file was replaced on disk (" (deleted)").
func binaryPath(path, exe []byte) bool {
	if len(exe) == 0 {
		return false
	}
	return bytes.Equal(path, exe) || bytes.Equal(bytes.TrimSuffix(path, []byte(" (deleted)")), exe)
}
