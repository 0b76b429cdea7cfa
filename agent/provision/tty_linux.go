package provision

import (
	"os"

	"golang.org/x/sys/unix"
)

func openTTY(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
}

var bauds = map[int]uint32{
	9600: unix.B9600, 19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600,
	115200: unix.B115200, 230400: unix.B230400, 460800: unix.B460800, 921600: unix.B921600,
	1500000: unix.B1500000, 3000000: unix.B3000000,
}

// makeRaw puts a tty in raw mode at baud (cfmakeraw, 8N1, no flow
// control), so that frames pass unchanged and kernel line editing stays
// out. A line that is not a tty is left as it is.
func makeRaw(f *os.File, baud int) error {
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
	}
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
