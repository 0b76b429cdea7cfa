package serve_test

import (
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/graft-dev/graft/tools/fleet/serve"
)

// FuzzDecodeSubscribers: notify decodes whatever a broker sends on the
// subscriber-query topic; it must never panic, and what it accepts
// encodes back to an equal answer.
func FuzzDecodeSubscribers(f *testing.F) {
	b, _ := cbor.Marshal(serve.Subscribers{Subscribed: 3, Connected: 2})
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Add([]byte("not cbor"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := serve.DecodeSubscribers(data)
		if err != nil {
			return
		}
		again, err := cbor.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if s2, err := serve.DecodeSubscribers(again); err != nil || s2 != s {
			t.Fatalf("%+v → %x → %+v, %v", s, again, s2, err)
		}
	})
}
