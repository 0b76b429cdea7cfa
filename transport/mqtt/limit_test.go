package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// publish encodes a PUBLISH packet (QoS 1 with packet ID 7 when qos1).
func publish(topic string, payload []byte, qos1, retain bool) []byte {
	first := byte(typePublish << 4)
	if qos1 {
		first |= 1 << 1
	}
	if retain {
		first |= 1
	}
	var vh []byte
	vh = append(vh, byte(len(topic)>>8), byte(len(topic)))
	vh = append(vh, topic...)
	if qos1 {
		vh = append(vh, 0, 7)
	}
	pkt := appendRemLen([]byte{first}, int64(len(vh)+len(payload)))
	return append(append(pkt, vh...), payload...)
}

func newTestReader(stream []byte, max int64, drops *[]string) *limitReader {
	return &limitReader{r: bufio.NewReader(bytes.NewReader(stream)), max: max, log: slog.New(slog.DiscardHandler),
		dropped: func(topic string, _ int64) { *drops = append(*drops, topic) }}
}

func TestLimitReader(t *testing.T) {
	puback := []byte{0x40, 0x02, 0x00, 0x07}
	small := publish("graft/v1/dev/d/notify", []byte("ok"), true, true)
	big := publish("graft/v1/dev/d/notify", bytes.Repeat([]byte{1}, 5000), true, true)
	bigQoS0 := publish("graft/v1/group/g/notify", bytes.Repeat([]byte{1}, 5000), false, false)
	tests := []struct {
		name   string
		stream []byte
		want   []byte
		drops  int
		err    error
	}{
		{"small packets pass as they are", concat(small, puback, small), concat(small, puback, small), 0, nil},
		{"oversized PUBLISH becomes an empty one", concat(small, big, puback),
			concat(small, publish("graft/v1/dev/d/notify", nil, true, true), puback), 1, nil},
		{"oversized QoS 0 PUBLISH", bigQoS0, publish("graft/v1/group/g/notify", nil, false, false), 1, nil},
		{"oversized control packet", concat([]byte{0x90}, appendRemLen(nil, maxControl+1), make([]byte, maxControl+1)), nil, 0, ErrPacketTooLarge},
		{"remaining length of 5 bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, nil, 0, ErrPacketTooLarge},
		{"topic longer than the packet", concat([]byte{0x30}, appendRemLen(nil, 3000), []byte{0xff, 0xff}), nil, 0, ErrPacketTooLarge},
		{"cut inside a dropped packet", big[:3000], nil, 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var drops []string
			got, err := io.ReadAll(newTestReader(tt.stream, 1024, &drops))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("read % x\nwant % x", got, tt.want)
			}
			if len(drops) != tt.drops {
				t.Fatalf("%d drops, want %d", len(drops), tt.drops)
			}
		})
	}
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// FuzzLimitReader: any byte stream is read without panic, the output is
// never longer than the input, and no packet handed on is over the limit.
func FuzzLimitReader(f *testing.F) {
	f.Add(publish("t", []byte("x"), true, false))
	f.Add(publish("t", bytes.Repeat([]byte{1}, 300), true, true))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{0x20, 0x02, 0x00, 0x00, 0x90, 0x03, 0x00, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, stream []byte) {
		var drops []string
		got, _ := io.ReadAll(newTestReader(stream, 256, &drops))
		if len(got) > len(stream) {
			t.Fatalf("read %d bytes from a stream of %d", len(got), len(stream))
		}
	})
}
