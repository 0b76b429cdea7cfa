package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/transport"
)

// ErrPacketTooLarge: the broker sent a control packet (not a PUBLISH)
// larger than any this client expects; the connection is dropped.
var ErrPacketTooLarge = errors.New("mqtt: incoming packet too large")

const (
	typePublish = 3
	// maxPublish is the largest PUBLISH handed to paho whole: a payload of
	// transport.MaxPayload plus room for the topic and packet ID.
	maxPublish = transport.MaxPayload + 1024
	// maxControl bounds every other packet the broker may send (CONNACK,
	// SUBACK, PUBACK, ...): they are a few bytes.
	maxControl = 4096
)

// limitReader sits between the broker's byte stream and paho, which reads
// whole packets into memory however large the remaining length says they
// are. It parses each fixed header: a packet within the limits passes
// through as it is; a PUBLISH over maxPublish is read past in small pieces
// and replaced by the same PUBLISH with an empty payload (same topic,
// flags and packet ID), which paho acknowledges and the session ignores,
// so a retained oversized notice costs bandwidth on every subscribe but
// never memory and never the connection. Any other oversized packet, or a
// malformed remaining length, is an error: the connection drops.
type limitReader struct {
	r       *bufio.Reader
	max     int64 // maxPublish, smaller in tests
	log     *slog.Logger
	pending []byte // header bytes to hand to paho before reading on
	body    int64  // bytes of the current packet still to pass through
	dropped func(topic string, size int64)
}

func (l *limitReader) Read(p []byte) (int, error) {
	for {
		if len(l.pending) > 0 {
			n := copy(p, l.pending)
			l.pending = l.pending[n:]
			return n, nil
		}
		if l.body > 0 {
			if int64(len(p)) > l.body {
				p = p[:l.body]
			}
			n, err := l.r.Read(p)
			l.body -= int64(n)
			return n, err
		}
		if err := l.next(); err != nil {
			return 0, err
		}
	}
}

// next reads the fixed header of the next packet and decides its fate.
func (l *limitReader) next() error {
	first, err := l.r.ReadByte()
	if err != nil {
		return err
	}
	hdr := []byte{first}
	var rem int64
	for i := 0; ; i++ {
		if i == 4 {
			return fmt.Errorf("%w: remaining length longer than 4 bytes", ErrPacketTooLarge)
		}
		b, err := l.r.ReadByte()
		if err != nil {
			return noEOF(err)
		}
		hdr = append(hdr, b)
		rem |= int64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			break
		}
	}
	if first>>4 != typePublish {
		if rem > maxControl {
			return fmt.Errorf("%w: packet type %d of %d bytes", ErrPacketTooLarge, first>>4, rem)
		}
		l.pending, l.body = hdr, rem
		return nil
	}
	if rem <= l.max {
		l.pending, l.body = hdr, rem
		return nil
	}
	return l.drop(first, rem)
}

// drop reads past an oversized PUBLISH of rem bytes after its fixed
// header and queues its empty-payload replacement.
func (l *limitReader) drop(first byte, rem int64) error {
	var n [2]byte
	if _, err := io.ReadFull(l.r, n[:]); err != nil {
		return noEOF(err)
	}
	topicLen := int64(n[0])<<8 | int64(n[1])
	vh := 2 + topicLen
	if (first>>1)&3 > 0 {
		vh += 2 // packet identifier
	}
	if vh > rem {
		return fmt.Errorf("%w: PUBLISH header of %d bytes in a packet of %d", ErrPacketTooLarge, vh, rem)
	}
	head := make([]byte, vh)
	copy(head, n[:])
	if _, err := io.ReadFull(l.r, head[2:]); err != nil {
		return noEOF(err)
	}
	size := rem - vh
	if _, err := io.CopyN(io.Discard, l.r, size); err != nil {
		return noEOF(err)
	}
	topic := string(head[2 : 2+topicLen])
	l.log.Warn("mqtt: dropped an oversized message before reading it", "topic", topic, "size", size, "limit", transport.MaxPayload)
	if l.dropped != nil {
		l.dropped(topic, size)
	}
	l.pending = append(appendRemLen([]byte{first}, int64(len(head))), head...)
	return nil
}

func appendRemLen(b []byte, n int64) []byte {
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

// noEOF: a stream that ends inside a packet was cut.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// limitConn is a broker connection whose reads go through a limitReader.
type limitConn struct {
	net.Conn
	lr *limitReader
}

func (c *limitConn) Read(p []byte) (int, error) { return c.lr.Read(p) }

func newLimitConn(c net.Conn, log *slog.Logger, max int64, dropped func(string, int64)) *limitConn {
	return &limitConn{Conn: c, lr: &limitReader{r: bufio.NewReaderSize(c, 16<<10), max: max, log: log, dropped: dropped}}
}

// openConn is paho's custom connection function: it dials the broker
// (plain TCP, or TLS with the session's configuration) within opTimeout
// and wraps the connection in the packet-size limit.
func (s *Session) openConn(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	d := &net.Dialer{}
	var c net.Conn
	var err error
	switch u.Scheme {
	case "tcp", "mqtt":
		c, err = d.DialContext(ctx, "tcp", u.Host)
	default: // ssl, tls, mqtts: check() allows no others
		cfg := s.cfg.TLS
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c, err = (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", u.Host)
	}
	if err != nil {
		return nil, err
	}
	return newLimitConn(c, s.log, maxPublish, nil), nil
}
