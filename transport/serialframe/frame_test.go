package serialframe

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func mustFrame(t testing.TB, payload []byte) []byte {
	t.Helper()
	f, err := Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// decodeAll feeds in in chunks of step bytes and returns the payloads and
// the text found.
func decodeAll(in []byte, step int) (payloads [][]byte, text []byte, errs []error) {
	var d Decoder
	for len(in) > 0 {
		n := min(step, len(in))
		d.Feed(in[:n])
		in = in[n:]
		for {
			ev, ok := d.Next()
			if !ok {
				break
			}
			switch {
			case ev.Err != nil:
				errs = append(errs, ev.Err)
			case ev.Text != nil:
				text = append(text, ev.Text...)
			default:
				payloads = append(payloads, ev.Payload)
			}
		}
	}
	return payloads, text, errs
}

func TestDecoder(t *testing.T) {
	a, b := []byte("hello frame"), bytes.Repeat([]byte{0xF7, 'G', 'F', 1}, 100)
	fa, fb := mustFrame(t, a), mustFrame(t, b)
	damaged := bytes.Clone(fa)
	damaged[HeaderSize+3] ^= 0x40
	badHeader := bytes.Clone(fa)
	badHeader[5] ^= 1 // length
	v2 := bytes.Clone(fa)
	v2[3] = 2
	// fix both checks so only the version differs
	{
		f, _ := Encode(a)
		f[3] = 2
		v2 = reframe(f)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	kernel := []byte("[    1.234567] virtio_blk virtio1: [vda] 262144 512-byte logical blocks\r\n")
	tests := []struct {
		name        string
		in          []byte
		payloads    [][]byte
		text        []byte
		versionErrs int
	}{
		{"one frame", fa, [][]byte{a}, nil, 0},
		{"empty payload", mustFrame(t, nil), [][]byte{{}}, nil, 0},
		{"text around frames", cat(kernel, fa, kernel, fb, []byte("U-Boot> ")), [][]byte{a, b}, cat(kernel, kernel, []byte("U-Boot> ")), 0},
		{"damaged payload is text, next frame found", cat(damaged, fb), [][]byte{b}, damaged, 0},
		{"damaged header", cat(badHeader, fa), [][]byte{a}, badHeader, 0},
		{"magic bytes in text", cat([]byte{0xF7, 'G', 'x', 0xF7}, fa), [][]byte{a}, []byte{0xF7, 'G', 'x', 0xF7}, 0},
		{"frame inside a false start", cat([]byte{0xF7, 'G', 'F', 1, 0}, fa), [][]byte{a}, []byte{0xF7, 'G', 'F', 1, 0}, 0},
		{"other version", cat(v2, fa), [][]byte{a}, nil, 1},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 3, 7, 4096} {
			p, txt, errs := decodeAll(tt.in, step)
			if len(p) != len(tt.payloads) {
				t.Fatalf("%s/step %d: %d payloads, want %d", tt.name, step, len(p), len(tt.payloads))
			}
			for i := range p {
				if !bytes.Equal(p[i], tt.payloads[i]) {
					t.Errorf("%s/step %d: payload %d = %q, want %q", tt.name, step, i, p[i], tt.payloads[i])
				}
			}
			if !bytes.Equal(txt, tt.text) {
				t.Errorf("%s/step %d: text %q, want %q", tt.name, step, txt, tt.text)
			}
			if len(errs) != tt.versionErrs {
				t.Errorf("%s/step %d: %d errors, want %d", tt.name, step, len(errs), tt.versionErrs)
			}
			for _, err := range errs {
				if !errors.Is(err, ErrVersion) {
					t.Errorf("%s: error %v is not ErrVersion", tt.name, err)
				}
			}
		}
	}
}

// reframe recomputes both checks of a frame.
func reframe(f []byte) []byte {
	g, _ := Encode(f[HeaderSize : len(f)-TrailSize])
	g[3] = f[3]
	return reframeChecks(g)
}

func TestEncodeTooLarge(t *testing.T) {
	if _, err := Encode(make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := Encode(make([]byte, MaxPayload)); err != nil {
		t.Fatal(err)
	}
}

// TestNoiseRecovery: frames interleaved with random noise (bytes flipped
// in some frames) — every intact frame is found, no damaged one is.
func TestNoiseRecovery(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var in []byte
	var want [][]byte
	for i := 0; i < 300; i++ {
		noise := make([]byte, rnd.IntN(64))
		for j := range noise {
			noise[j] = byte(rnd.UintN(256))
		}
		in = append(in, noise...)
		p := make([]byte, rnd.IntN(512))
		for j := range p {
			p[j] = byte(rnd.UintN(256))
		}
		f := mustFrame(t, p)
		if rnd.IntN(4) == 0 {
			f[rnd.IntN(len(f))] ^= byte(1 + rnd.UintN(255))
		} else {
			want = append(want, p)
		}
		in = append(in, f...)
	}
	got, _, _ := decodeAll(in, 61)
	if len(got) != len(want) {
		t.Fatalf("%d frames found, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

// FuzzDecoder: whatever the bytes, the decoder never panics and never
// holds more than a frame of undecided input, and a frame sent after a
// frame's worth of plain text is found again (resynchronisation).
func FuzzDecoder(f *testing.F) {
	f.Add([]byte("plain text\n"))
	f.Add(mustFrame(f, []byte("payload")))
	f.Add([]byte{0xF7, 'G', 'F', 1, 0xff, 0xff, 0, 0})
	f.Add(append([]byte{0xF7, 'G'}, mustFrame(f, nil)...))
	tail := mustFrame(f, []byte("tail"))
	filler := bytes.Repeat([]byte("x"), MaxFrame)
	f.Fuzz(func(t *testing.T, in []byte) {
		var d Decoder
		var last []byte
		for _, chunk := range [][]byte{in, filler, tail} {
			d.Feed(chunk)
			for {
				ev, ok := d.Next()
				if !ok {
					break
				}
				if ev.Payload != nil {
					if _, err := DecodeMessage(ev.Payload); err == nil {
						_ = err // a valid message is fine too
					}
				}
				last = ev.Payload
			}
			if len(d.buf) > MaxFrame+len(chunk) {
				t.Fatalf("decoder holds %d bytes", len(d.buf))
			}
		}
		if len(d.buf) != 0 || !bytes.Equal(last, []byte("tail")) {
			t.Fatalf("tail frame not found after resync (%d bytes left)", len(d.buf))
		}
	})
}

// FuzzDecodeMessage: any payload either decodes to a valid Message or is
// refused with ErrMalformed; never a panic.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []Message{
		{Kind: KindRequest, ID: 7, Type: "hello"},
		{Kind: KindResponse, ID: 7, Body: []byte{0xa0}},
		{Kind: KindResponse, ID: 8, Error: &RemoteError{Code: "x", Message: "y"}},
		{Kind: KindEvent, Type: "progress", Body: []byte{0x01}},
	} {
		b, err := Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if _, err := EncodeMessage(m); err != nil && len(b) <= MaxPayload {
			t.Fatalf("decoded message does not encode: %v", err)
		}
	})
}
