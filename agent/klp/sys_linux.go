package klp

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// loadModule hands b to the kernel: written to a memfd (so the kernel
// reads exactly these bytes, from nothing another process can write) and
// loaded with finit_module.
func loadModule(name string, b []byte, params string) error {
	fd, err := unix.MemfdCreate("graft-klp-"+name, unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:graft-klp-"+name)
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write memfd: %w", err)
	}
	for {
		err = unix.FinitModule(int(f.Fd()), params, 0)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// unloadModule deletes the module without waiting for its users.
func unloadModule(name string) error {
	for {
		err := unix.DeleteModule(name, unix.O_NONBLOCK)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// retryUnload reports whether a delete_module error may clear by itself:
// the module is still in use (a patch being freed holds a reference).
func retryUnload(err error) bool {
	return errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EAGAIN)
}

func uname() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// kmsgReader reads the kernel log records that arrive after it was
// opened. A nil *kmsgReader reads nothing.
type kmsgReader struct{ fd int }

func openKmsg(path string) (*kmsgReader, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &kmsgReader{fd: fd}, nil
}

// read returns the messages logged since the last read (or the open).
func (r *kmsgReader) read() []string {
	var lines []string
	for _, rec := range r.records() {
		lines = append(lines, rec.msg)
	}
	return lines
}

// records returns the records logged since the last read (or the open).
func (r *kmsgReader) records() []kmsgRecord {
	if r == nil {
		return nil
	}
	var lines []kmsgRecord
	buf := make([]byte, 8192) // one record per read; the kernel's limit is smaller
	for {
		n, err := unix.Read(r.fd, buf)
		if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.EINTR) {
			continue // records overwritten before they were read; go on with the next
		}
		if err != nil || n <= 0 {
			return lines
		}
		if m, ok := parseKmsg(buf[:n]); ok {
			lines = append(lines, m)
		}
	}
}

func (r *kmsgReader) close() {
	if r != nil {
		unix.Close(r.fd)
	}
}

// monotonicUsec reads CLOCK_MONOTONIC in microseconds, the clock the
// kernel log's timestamps are close to; 0 if it cannot.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
