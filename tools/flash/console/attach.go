package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.bug.st/serial"
)

// EscapeByte ends an attached session: Ctrl-] as in telnet and tio.
const EscapeByte = 0x1d

// AttachOptions configure Attach.
type AttachOptions struct {
	Spec string // port spec, resolved again at every reconnect (FindPort)
	Baud int
	// Log, when set, gets every byte from the device, a timestamp at the
	// start of each line, and a line for each unplug and replug.
	Log io.Writer
	// Retry is how often a missing port is looked for again (default 500ms).
	Retry time.Duration
	// Now is the clock of the log (default time.Now).
	Now func() time.Time
}

// Attach passes the terminal through to the device's line until ctx ends,
// in reads EscapeByte, or in ends: what the device sends goes to out, what
// is typed goes to the device unchanged (so U-Boot's autoboot can be
// interrupted and its prompt used). When the port goes away the session
// waits for it to come back, and the log shows the gap.
func Attach(ctx context.Context, in io.Reader, out io.Writer, o AttachOptions) error {
	if o.Retry <= 0 {
		o.Retry = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	lg := &tsLog{w: o.Log, now: o.Now}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex
	var cur serial.Port // the open port, nil while unplugged
	typed := make(chan error, 1)
	go func() { // keyboard → device
		buf := make([]byte, 256)
		for {
			n, err := in.Read(buf)
			if i := bytes.IndexByte(buf[:n], EscapeByte); i >= 0 {
				n, err = i, io.EOF
			}
			if n > 0 {
				mu.Lock()
				if cur != nil {
					cur.Write(buf[:n])
				}
				mu.Unlock()
			}
			if err != nil {
				typed <- err
				cancel()
				return
			}
		}
	}()

	gone := false
	for ctx.Err() == nil {
		path, err := FindPort(o.Spec)
		var p serial.Port
		if err == nil {
			p, err = serial.Open(path, &serial.Mode{BaudRate: o.Baud})
		}
		if err != nil {
			if !gone {
				gone = true
				lg.event(fmt.Sprintf("port %s unavailable (%v); waiting for it", o.Spec, err))
			}
			select {
			case <-ctx.Done():
			case <-time.After(o.Retry):
			}
			continue
		}
		if gone {
			lg.event("port " + path + " is back")
			gone = false
		} else {
			lg.event("connected to " + path)
		}
		p.SetReadTimeout(100 * time.Millisecond)
		mu.Lock()
		cur = p
		mu.Unlock()
		rerr := pump(ctx, p, out, lg)
		mu.Lock()
		cur = nil
		mu.Unlock()
		p.Close()
		if ctx.Err() == nil {
			gone = true
			lg.event(fmt.Sprintf("port %s lost (%v); waiting for it", path, rerr))
		}
	}
	select {
	case err := <-typed:
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	default:
	}
	return nil
}

// pump copies the device's output until the port fails or ctx ends.
func pump(ctx context.Context, p serial.Port, out io.Writer, lg *tsLog) error {
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		n, err := p.Read(buf)
		if n > 0 {
			out.Write(buf[:n])
			lg.data(buf[:n])
		}
		if err != nil {
			return err // an unplugged adapter (or a closed pty) reads EIO
		}
	}
	return ctx.Err()
}

// tsLog writes the device's output with a timestamp at each line start.
type tsLog struct {
	w       io.Writer
	now     func() time.Time
	midLine bool
}

func (l *tsLog) stamp() string { return l.now().UTC().Format("2006-01-02T15:04:05.000Z") + " " }

func (l *tsLog) data(b []byte) {
	if l.w == nil {
		return
	}
	var out bytes.Buffer
	for _, c := range b {
		if !l.midLine {
			out.WriteString(l.stamp())
			l.midLine = true
		}
		out.WriteByte(c)
		if c == '\n' {
			l.midLine = false
		}
	}
	l.w.Write(out.Bytes())
}

func (l *tsLog) event(msg string) {
	if l.w == nil {
		return
	}
	prefix := ""
	if l.midLine {
		prefix = "\n"
		l.midLine = false
	}
	fmt.Fprintf(l.w, "%s%s[graft-flash] %s\n", prefix, l.stamp(), msg)
}
