package memtrim

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Trim pages out the read-only mappings of the running binary.
func Trim() (Result, error) {
	var exeBuf [4096]byte
	n, err := unix.Readlink("/proc/self/exe", exeBuf[:])
	if err != nil {
		return Result{}, fmt.Errorf("memtrim: %w", err)
	}
	exe := bytes.TrimSuffix(exeBuf[:n], []byte(" (deleted)"))
	var buf [32 << 10]byte
	maps, err := readAll("/proc/self/maps", buf[:])
	if err != nil {
		return Result{}, err
	}
	var targets [32]Mapping
	nt := 0
	parseMaps(maps, func(m Mapping) {
		if !m.Writable && binaryPath(m.Path, exe) && nt < len(targets) {
			targets[nt] = m
			nt++
		}
	})
	res := Result{Advice: "pageout"}
	for _, m := range targets[:nt] {
		err := madvise(m, unix.MADV_PAGEOUT)
		if errors.Is(err, unix.EINVAL) {
			// Before Linux 5.4: drop only pages the file can give back.
			res.Advice = "dontneed"
			if anon, aerr := anonymousKB(m.Start); aerr != nil || anon != 0 {
				continue
			}
			err = madvise(m, unix.MADV_DONTNEED)
		}
		if err != nil {
			return res, fmt.Errorf("memtrim: madvise %x-%x: %w", m.Start, m.End, err)
		}
		res.Mappings++
		res.Bytes += uint64(m.End - m.Start)
	}
	return res, nil
}

func madvise(m Mapping, advice int) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, m.Start, m.End-m.Start, uintptr(advice))
	if e != 0 {
		return e
	}
	return nil
}

// readAll reads a proc file into buf and fails if it did not fit.
func readAll(name string, buf []byte) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("memtrim: %w", err)
	}
	defer f.Close()
	n := 0
	for n < len(buf) {
		k, err := f.Read(buf[n:])
		n += k
		if k == 0 || err != nil {
			return buf[:n], nil
		}
	}
	return nil, fmt.Errorf("memtrim: %s is larger than %d bytes", name, len(buf))
}

// anonymousKB reads the "Anonymous:" figure of the mapping at start from
// /proc/self/smaps (only on kernels without MADV_PAGEOUT).
func anonymousKB(start uintptr) (int, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	in := false
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if m, ok := parseLine(line); ok {
			in = m.Start == start
			continue
		}
		if in && bytes.HasPrefix(line, []byte("Anonymous:")) {
			var kb int
			_, err := fmt.Sscanf(string(line), "Anonymous: %d kB", &kb)
			return kb, err
		}
	}
	return 0, fmt.Errorf("memtrim: mapping %x not in smaps", start)
}
