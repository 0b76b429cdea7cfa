package transport

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plainCBOR encodes a value with the library's default (non-strict) mode,
// to build test inputs the strict encoder would not produce.
func plainCBOR(t testing.TB, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNoticeGoldenEncoding(t *testing.T) {
	n := Notice{Release: "v2", Manifest: "m", Sequence: 7, Time: 1}
	got, err := EncodeNotice(n)
	if err != nil {
		t.Fatal(err)
	}
	// {1: "v2", 2: "m", 3: 7, 4: 1}, keys in core deterministic order.
	want := mustHex(t, "a4 01 62 7632 02 61 6d 03 07 04 01")
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding %x, want %x", got, want)
	}
	// Zero optional fields are omitted.
	got, err = EncodeNotice(Notice{Release: "v2", Manifest: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "a2 01 62 7632 02 61 6d"); !bytes.Equal(got, want) {
		t.Fatalf("encoding %x, want %x", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	n := Notice{Release: "v2", Manifest: "releases/v2/manifest.cbor", Sequence: 42, Time: 1_700_000_000_000}
	b, err := EncodeNotice(n)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeNotice(b); err != nil || got != n {
		t.Fatalf("notice round trip: %+v, %v", got, err)
	}

	s := Status{
		EventID: "ev-1", Device: "dev-1", Time: 5, State: StateRolledBack, Release: "v2",
		Sequence: 3, Path: PathAB, Reason: "health check failed:\n\tsshd not running", Slot: "B",
		Done: 10, Total: 20, AgentVersion: "0.1.0", Installed: "v1",
	}
	b, err = EncodeStatus(s)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeStatus(b); err != nil || got != s {
		t.Fatalf("status round trip: %+v, %v", got, err)
	}

	tm := Telemetry{Device: "dev-1", Time: 9, Uptime: 100, Slot: "A", Installed: "v1", AgentVersion: "0.1.0"}
	b, err = EncodeTelemetry(tm)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeTelemetry(b); err != nil || !reflect.DeepEqual(got, tm) {
		t.Fatalf("telemetry round trip: %+v, %v", got, err)
	}
}

func TestDecodeNoticeStrict(t *testing.T) {
	valid := map[uint64]any{1: "v2", 2: "m"}
	with := func(k uint64, v any) map[uint64]any {
		m := map[uint64]any{}
		for k, v := range valid {
			m[k] = v
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name    string
		in      []byte
		want    error // nil: accepted
		unknown bool  // also ErrUnknownKey
	}{
		{name: "valid", in: plainCBOR(t, valid)},
		{name: "extension key ignored", in: plainCBOR(t, with(300, []any{1, "x", map[uint64]any{1: 2}}))},
		{name: "unknown key below 256", in: plainCBOR(t, with(5, "x")), want: ErrMalformed, unknown: true},
		{name: "unknown key 255", in: plainCBOR(t, with(255, 0)), want: ErrMalformed, unknown: true},
		{name: "too large", in: make([]byte, MaxPayload+1), want: ErrTooLarge},
		// {1: "v2", 2: "m", 1: "v3"}
		{name: "duplicate key", in: mustHex(t, "a3 01 62 7632 02 61 6d 01 62 7633"), want: ErrMalformed},
		// indefinite-length map {_ 1: "v2", 2: "m"}
		{name: "indefinite map", in: mustHex(t, "bf 01 62 7632 02 61 6d ff"), want: ErrMalformed},
		// {1: (_ "v", "2"), 2: "m"}
		{name: "indefinite string", in: mustHex(t, "a2 01 7f 61 76 61 32 ff 02 61 6d"), want: ErrMalformed},
		{name: "text keys", in: plainCBOR(t, map[string]any{"release": "v2", "manifest": "m"}), want: ErrMalformed},
		{name: "negative key", in: mustHex(t, "a3 01 62 7632 02 61 6d 20 00"), want: ErrMalformed},
		{name: "trailing bytes", in: append(plainCBOR(t, valid), 0x00), want: ErrMalformed},
		{name: "tag", in: mustHex(t, "c0 a2 01 62 7632 02 61 6d"), want: ErrMalformed},
		{name: "too deep", in: plainCBOR(t, with(300, []any{[]any{[]any{[]any{[]any{[]any{[]any{[]any{1}}}}}}}})), want: ErrMalformed},
		{name: "not a map", in: plainCBOR(t, []any{"v2", "m"}), want: ErrMalformed},
		{name: "null", in: []byte{0xf6}, want: ErrMalformed},
		{name: "empty", in: nil, want: ErrMalformed},
		{name: "truncated", in: plainCBOR(t, valid)[:5], want: ErrMalformed},
		{name: "wrong type", in: plainCBOR(t, with(3, "seven")), want: ErrMalformed},
		{name: "missing manifest", in: plainCBOR(t, map[uint64]any{1: "v2"}), want: ErrMalformed},
		{name: "control character", in: plainCBOR(t, with(1, "v2\x1b[31m")), want: ErrMalformed},
		{name: "invalid UTF-8", in: mustHex(t, "a2 01 62 ff fe 02 61 6d"), want: ErrMalformed},
		{name: "negative time", in: plainCBOR(t, with(4, -1)), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := DecodeNotice(tt.in)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if n.Release != "v2" || n.Manifest != "m" {
					t.Fatalf("decoded %+v", n)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if tt.unknown != errors.Is(err, ErrUnknownKey) {
				t.Fatalf("error %v: ErrUnknownKey is %v, want %v", err, !tt.unknown, tt.unknown)
			}
		})
	}
}

func TestStatusChecks(t *testing.T) {
	base := Status{EventID: "e", Device: "d", State: StateIdle}
	tests := []struct {
		name   string
		change func(*Status)
		ok     bool
	}{
		{name: "minimal", change: func(*Status) {}, ok: true},
		{name: "live path", change: func(s *Status) { s.Path = PathLive }, ok: true},
		{name: "no event ID", change: func(s *Status) { s.EventID = "" }},
		{name: "bad device", change: func(s *Status) { s.Device = "a/b" }},
		{name: "wildcard device", change: func(s *Status) { s.Device = "+" }},
		{name: "unknown state", change: func(s *Status) { s.State = "dancing" }},
		{name: "unknown path", change: func(s *Status) { s.Path = "usb" }},
		{name: "negative done", change: func(s *Status) { s.Done = -1 }},
		{name: "long reason", change: func(s *Status) { s.Reason = strings.Repeat("x", maxReason+1) }},
		{name: "escape in slot", change: func(s *Status) { s.Slot = "A\n" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.change(&s)
			b, err := EncodeStatus(s)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := DecodeStatus(b); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("encode: %v, want ErrMalformed", err)
			}
			// The decoder applies the same check to bytes from elsewhere.
			if _, err := DecodeStatus(plainCBOR(t, s)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestEncodeTooLarge(t *testing.T) {
	// Each field is within its limit, but many extension-free fields can
	// not exceed MaxPayload; an oversized payload is built by hand.
	big := plainCBOR(t, map[uint64]any{1: "v2", 2: "m", 300: strings.Repeat("x", MaxPayload)})
	if _, err := DecodeNotice(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("decode: %v, want ErrTooLarge", err)
	}
	if _, err := DecodeStatus(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("decode status: %v, want ErrTooLarge", err)
	}
}

func TestOnline(t *testing.T) {
	for _, v := range []bool{true, false} {
		got, err := DecodeOnline(EncodeOnline(v))
		if err != nil || got != v {
			t.Fatalf("online %v: got %v, %v", v, got, err)
		}
	}
	if !bytes.Equal(EncodeOnline(true), plainCBOR(t, true)) {
		t.Fatal("online true is not the CBOR bool")
	}
	for _, in := range [][]byte{nil, {0xf6}, {0xf5, 0x00}, []byte("true"), {0x01}} {
		if _, err := DecodeOnline(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeOnline(%x): %v, want ErrMalformed", in, err)
		}
	}
	if _, err := DecodeOnline(make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized online: %v, want ErrTooLarge", err)
	}
}
