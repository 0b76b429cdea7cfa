package serialframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Wire layout of a frame (all integers big-endian):
//
//	offset size
//	0      3    magic 0xF7 'G' 'F'
//	3      1    version (Version)
//	4      2    payload length n (≤ MaxPayload)
//	6      2    header check: low 16 bits of CRC-32C over bytes 0..5
//	8      n    payload (one CBOR Message)
//	8+n    4    CRC-32C over bytes 0..8+n-1
//
// The magic starts with a byte that is not ASCII, so text on the line does
// not look like a frame start; the header check rejects a false start (or
// a damaged length) after 8 bytes instead of after a whole frame.
const (
	Version    = 1
	HeaderSize = 8
	TrailSize  = 4
	// MaxPayload bounds one frame's payload, and so what a Decoder holds.
	MaxPayload = 16 << 10
	// MaxFrame is the largest frame on the wire.
	MaxFrame = HeaderSize + MaxPayload + TrailSize
)

var magic = [3]byte{0xF7, 'G', 'F'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors.
var (
	// ErrTooLarge: a payload longer than MaxPayload.
	ErrTooLarge = errors.New("serialframe: payload too large")
	// ErrVersion: a frame of a version this decoder does not speak. The
	// frame is whole and checked; only its version is unknown.
	ErrVersion = errors.New("serialframe: unsupported frame version")
)

// Encode frames payload.
func Encode(payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), MaxPayload)
	}
	b := make([]byte, HeaderSize+len(payload)+TrailSize)
	copy(b, magic[:])
	b[3] = Version
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	binary.BigEndian.PutUint16(b[6:], uint16(crc32.Checksum(b[:6], castagnoli)))
	copy(b[HeaderSize:], payload)
	n := HeaderSize + len(payload)
	binary.BigEndian.PutUint32(b[n:], crc32.Checksum(b[:n], castagnoli))
	return b, nil
}

// Event is what a Decoder finds: a frame's payload, or text (bytes that
// are not part of a valid frame), or a frame of an unknown version.
type Event struct {
	Payload []byte // a valid frame's payload (a copy the caller owns)
	Text    []byte // bytes between frames: console output or noise
	// Err is ErrVersion for a well-formed frame of another version
	// (Payload is then nil).
	Err error
}

// Decoder finds frames in a byte stream shared with text. Feed it bytes as
// they arrive; Next returns what it found, in stream order. A false start
// or a damaged frame costs one byte: scanning resumes right after its
// first magic byte, so a real frame that began inside it is still found.
//
// A Decoder holds at most MaxFrame bytes of undecided input plus what one
// Feed adds. It is NOT safe for concurrent use.
type Decoder struct {
	buf []byte
	// Stats.
	Frames, BadFrames, TextBytes int64
}

// Feed appends p to the input.
func (d *Decoder) Feed(p []byte) { d.buf = append(d.buf, p...) }

// Next returns the next event, or ok=false when the input so far holds
// nothing decidable (a possible frame start waiting for more bytes).
func (d *Decoder) Next() (ev Event, ok bool) {
	for {
		i := bytes.IndexByte(d.buf, magic[0])
		if i < 0 {
			return d.text(len(d.buf))
		}
		if i > 0 {
			return d.text(i)
		}
		// d.buf starts with the first magic byte.
		if len(d.buf) < HeaderSize {
			if !bytes.HasPrefix(magic[:], d.buf[:min(len(d.buf), len(magic))]) {
				return d.text(1)
			}
			return Event{}, false
		}
		if !bytes.Equal(d.buf[:3], magic[:]) ||
			binary.BigEndian.Uint16(d.buf[6:]) != uint16(crc32.Checksum(d.buf[:6], castagnoli)) {
			return d.text(1)
		}
		n := int(binary.BigEndian.Uint16(d.buf[4:]))
		if n > MaxPayload {
			return d.text(1)
		}
		end := HeaderSize + n + TrailSize
		if len(d.buf) < end {
			return Event{}, false
		}
		if binary.BigEndian.Uint32(d.buf[end-TrailSize:]) != crc32.Checksum(d.buf[:end-TrailSize], castagnoli) {
			d.BadFrames++
			return d.text(1)
		}
		ver := d.buf[3]
		payload := bytes.Clone(d.buf[HeaderSize : end-TrailSize])
		d.consume(end)
		if ver != Version {
			d.BadFrames++
			return Event{Err: fmt.Errorf("%w: %d (this side speaks %d)", ErrVersion, ver, Version)}, true
		}
		d.Frames++
		if payload == nil {
			payload = []byte{}
		}
		return Event{Payload: payload}, true
	}
}

// text emits the first n bytes as text.
func (d *Decoder) text(n int) (Event, bool) {
	if n == 0 {
		return Event{}, false
	}
	t := bytes.Clone(d.buf[:n])
	d.consume(n)
	d.TextBytes += int64(n)
	return Event{Text: t}, true
}

func (d *Decoder) consume(n int) {
	rest := copy(d.buf, d.buf[n:])
	d.buf = d.buf[:rest]
}
