package serialframe

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Kind says what a Message is.
type Kind uint8

// Kinds of message.
const (
	KindRequest  Kind = 1 // asks the other side to do Type; answered by one KindResponse with the same ID
	KindResponse Kind = 2 // answers the request with the same ID: Body, or Error
	KindEvent    Kind = 3 // unsolicited news (progress); never answered
)

// Message is the payload of every frame: CBOR, a map with integer keys.
type Message struct {
	Kind  Kind            `cbor:"1,keyasint"`
	ID    uint32          `cbor:"2,keyasint,omitempty"`
	Type  string          `cbor:"3,keyasint,omitempty"`
	Body  cbor.RawMessage `cbor:"4,keyasint,omitempty"`
	Error *RemoteError    `cbor:"5,keyasint,omitempty"`
}

// RemoteError is an error the other side returned for a request: a stable
// code a program can test (errors.Is against a *RemoteError with only Code
// set, or Code itself) and a message for people.
type RemoteError struct {
	Code    string `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint,omitempty"`
}

func (e *RemoteError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Message
}

// Is matches another *RemoteError with the same code.
func (e *RemoteError) Is(target error) bool {
	t, ok := target.(*RemoteError)
	return ok && t.Code == e.Code
}

// ErrMalformed: a frame's payload is not a valid Message.
var ErrMalformed = errors.New("serialframe: malformed message")

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   16,
		MaxArrayElements:  4096,
		MaxMapPairs:       256,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v (a body) as CBOR the way messages are encoded.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("serialframe: encode: %w", err)
	}
	return b, nil
}

// Unmarshal strictly decodes a body: unknown fields, duplicate keys,
// indefinite lengths and tags are refused.
func Unmarshal(b []byte, v any) error {
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return nil
}

// EncodeMessage encodes m and frames it.
func EncodeMessage(m Message) ([]byte, error) {
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	return Encode(b)
}

// DecodeMessage decodes a frame's payload.
func DecodeMessage(payload []byte) (Message, error) {
	var m Message
	if err := Unmarshal(payload, &m); err != nil {
		return Message{}, err
	}
	switch m.Kind {
	case KindRequest, KindEvent:
		if m.Type == "" {
			return Message{}, fmt.Errorf("%w: %d without a type", ErrMalformed, m.Kind)
		}
	case KindResponse:
	default:
		return Message{}, fmt.Errorf("%w: kind %d", ErrMalformed, m.Kind)
	}
	return m, nil
}
