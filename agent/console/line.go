package console

import (
	"encoding/binary"
	"io"
	"sync"
	"time"

	"github.com/graft-dev/graft/transport/serialframe"
)

// line is the console's side of the serial line. Reads pass frames through
// untouched; the text between them is echoed (a terminal in raw mode shows
// only what the device sends back) and a carriage return ends a line.
// Writes are serialized and bounded by a deadline, so a wedged terminal
// drops output instead of blocking the agent.
type line struct {
	rw      io.ReadWriter
	timeout time.Duration

	wmu sync.Mutex

	// frame-skipping state of the reader
	hdr  []byte // header bytes of a frame seen so far (0 = in text)
	left int    // bytes of the current frame still to pass through
}

type deadliner interface{ SetWriteDeadline(time.Time) error }

func (l *line) Write(p []byte) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if d, ok := l.rw.(deadliner); ok {
		if d.SetWriteDeadline(time.Now().Add(l.timeout)) == nil {
			defer d.SetWriteDeadline(time.Time{})
		}
	}
	return l.rw.Write(p)
}

func (l *line) Read(p []byte) (int, error) {
	n, err := l.rw.Read(p)
	if n == 0 {
		return n, err
	}
	var echo []byte
	for i := 0; i < n; i++ {
		c := p[i]
		switch {
		case l.left > 0:
			l.left--
			continue
		case len(l.hdr) > 0 || c == 0xF7:
			l.hdr = append(l.hdr, c)
			if !l.frameHeader() {
				l.hdr = l.hdr[:0]
			}
			continue
		}
		switch {
		case c == '\r':
			p[i] = '\n'
			echo = append(echo, '\r', '\n')
		case c == '\n':
			echo = append(echo, '\r', '\n')
		case c == 0x7f || c == '\b':
			echo = append(echo, '\b', ' ', '\b')
		case c >= 0x20 && c < 0x7f:
			echo = append(echo, c)
		}
	}
	if len(echo) > 0 {
		l.Write(echo) // best effort: a wedged terminal loses its echo
	}
	return n, err
}

// frameHeader follows a frame's header as its bytes arrive: false when
// they cannot start a frame. Once the length is known the rest of the
// frame is passed through as it is.
func (l *line) frameHeader() bool {
	h := l.hdr
	want := [3]byte{0xF7, 'G', 'F'}
	for i := 0; i < len(h) && i < 3; i++ {
		if h[i] != want[i] {
			return false
		}
	}
	if len(h) < 6 {
		return true
	}
	size := int(binary.BigEndian.Uint16(h[4:6]))
	if size > serialframe.MaxPayload {
		return false
	}
	l.left = serialframe.HeaderSize - 6 + size + serialframe.TrailSize
	l.hdr = l.hdr[:0]
	return true
}

// crlf writes text for a raw terminal: every "\n" becomes "\r\n".
type crlf struct{ w io.Writer }

func (c crlf) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+8)
	for _, b := range p {
		if b == '\n' {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
