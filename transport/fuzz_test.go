package transport

import (
	"bytes"
	"testing"
)

// The seed corpora live in testdata/fuzz/<Target>; they run in plain
// `go test`. Invariants: decoding never panics, and whatever decodes
// re-encodes to bytes that decode to the same value and re-encode to the
// same bytes (deterministic encoding).

func FuzzDecodeNotice(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := DecodeNotice(data)
		if err != nil {
			return
		}
		b, err := EncodeNotice(n)
		if err != nil {
			t.Fatalf("decoded %+v but cannot re-encode: %v", n, err)
		}
		n2, err := DecodeNotice(b)
		if err != nil || n2 != n {
			t.Fatalf("re-decode %+v, %v; want %+v", n2, err, n)
		}
		if b2, _ := EncodeNotice(n2); !bytes.Equal(b, b2) {
			t.Fatalf("encoding not deterministic: %x then %x", b, b2)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeStatus(data)
		if err != nil {
			return
		}
		b, err := EncodeStatus(s)
		if err != nil {
			t.Fatalf("decoded %+v but cannot re-encode: %v", s, err)
		}
		s2, err := DecodeStatus(b)
		if err != nil || s2 != s {
			t.Fatalf("re-decode %+v, %v; want %+v", s2, err, s)
		}
		if b2, _ := EncodeStatus(s2); !bytes.Equal(b, b2) {
			t.Fatalf("encoding not deterministic: %x then %x", b, b2)
		}
	})
}

func FuzzDecodeTelemetry(f *testing.F) {
	full, err := EncodeTelemetry(fullTelemetry())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Fuzz(func(t *testing.T, data []byte) {
		tm, err := DecodeTelemetry(data)
		if err != nil {
			return
		}
		b, err := EncodeTelemetry(tm)
		if err != nil {
			t.Fatalf("decoded %+v but cannot re-encode: %v", tm, err)
		}
		tm2, err := DecodeTelemetry(b)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if b2, _ := EncodeTelemetry(tm2); !bytes.Equal(b, b2) {
			t.Fatalf("encoding not deterministic: %x then %x", b, b2)
		}
	})
}

func FuzzDecodeInventory(f *testing.F) {
	seed, _ := EncodeInventory(Inventory{Device: "d1", Board: "sim", Arch: "arm64", Groups: []string{"lab", "canary"},
		Labels: map[string]string{"cluster": "ceph-a"}, AgentVersion: "1.0"})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := DecodeInventory(data)
		if err != nil {
			return
		}
		b, err := EncodeInventory(inv)
		if err != nil {
			t.Fatalf("decoded %+v but cannot re-encode: %v", inv, err)
		}
		inv2, err := DecodeInventory(b)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if b2, _ := EncodeInventory(inv2); !bytes.Equal(b, b2) {
			t.Fatalf("encoding not deterministic: %x then %x", b, b2)
		}
	})
}
