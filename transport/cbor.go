package transport

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Errors returned by the decoders (and by the encoders for messages that
// would not decode). Each is wrapped with the check that failed.
var (
	// ErrTooLarge: the payload exceeds MaxPayload; nothing was parsed.
	ErrTooLarge = errors.New("transport: payload too large")
	// ErrMalformed: the payload is not a well-formed, valid message.
	ErrMalformed = errors.New("transport: malformed message")
	// ErrUnknownKey: a map key below FirstExtensionKey that this version
	// does not know. Always wrapped together with ErrMalformed.
	ErrUnknownKey = errors.New("transport: unknown key")
)

// FirstExtensionKey is the smallest map key that a decoder ignores when it
// does not know it. Keys below it are reserved for this contract, and an
// unknown one is refused: it means the sender speaks a newer contract whose
// meaning this decoder cannot guess.
const FirstExtensionKey = 256

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  8,
		MaxArrayElements: 256,
		MaxMapPairs:      64,
		UTF8:             cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// decodeMap strictly decodes a CBOR map with integer keys into v (a
// pointer to a struct with keyasint tags), given the set of keys the
// struct knows.
func decodeMap(data []byte, known func(uint64) bool, v any) error {
	if len(data) > MaxPayload {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxPayload)
	}
	// First pass: well-formedness, limits, duplicates, key types and
	// unknown keys; values stay raw.
	var raw map[uint64]cbor.RawMessage
	if err := decMode.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if raw == nil {
		return fmt.Errorf("%w: not a map", ErrMalformed)
	}
	for k := range raw {
		if k < FirstExtensionKey && !known(k) {
			return fmt.Errorf("%w: %w %d", ErrMalformed, ErrUnknownKey, k)
		}
	}
	// Second pass: types of the known fields; extension keys are skipped.
	if err := decMode.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

func encode(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %w", ErrMalformed, err)
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%w: encoded %d bytes, limit %d", ErrTooLarge, len(b), MaxPayload)
	}
	return b, nil
}

func keyIn(lo, hi uint64) func(uint64) bool {
	return func(k uint64) bool { return k >= lo && k <= hi }
}
