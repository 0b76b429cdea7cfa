package serialtty

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

var bauds = map[int]uint32{
	9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800, 921600: unix.B921600,
	1500000: unix.B1500000, 3000000: unix.B3000000,
}

// Open opens name read-write without making it the controlling terminal
// and puts it in raw mode at baud (a line that is not a tty is left as it
// is). Reads and writes go through Go's poller, so write deadlines work.
func Open(name string, baud int) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := MakeRaw(f, baud); err != nil {
		f.Close()
		return nil, fmt.Errorf("serialtty: %s: %w", name, err)
	}
	return f, nil
}

// MakeRaw puts a tty in raw mode at baud (cfmakeraw, 8N1, no flow
// control). A file that is not a tty is left as it is.
func MakeRaw(f *os.File, baud int) error {
	fd := int(f.Fd())
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil // not a tty
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CRTSCTS
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if b, ok := bauds[baud]; ok {
		t.Cflag &^= unix.CBAUD
		t.Cflag |= b
		t.Ispeed, t.Ospeed = b, b
	} else if baud != 0 {
		return fmt.Errorf("serialtty: unsupported baud %d", baud)
	}
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
