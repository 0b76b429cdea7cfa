package ulp

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// The wire shape: CBOR maps with small integer keys (docs/ulp.md).
// Unknown keys are refused: the agent must not guess what a field of
// code it injects into processes means.
type wireBundle struct {
	Format  uint        `cbor:"0,keyasint"`
	Name    string      `cbor:"1,keyasint"`
	Arch    string      `cbor:"2,keyasint"`
	BuildID []byte      `cbor:"3,keyasint"`
	Soname  string      `cbor:"4,keyasint,omitempty"`
	Code    []byte      `cbor:"5,keyasint"`
	Data    []byte      `cbor:"6,keyasint,omitempty"`
	BSS     uint64      `cbor:"7,keyasint,omitempty"`
	Funcs   []wireFunc  `cbor:"8,keyasint"`
	Relocs  []wireReloc `cbor:"9,keyasint,omitempty"`
}

type wireFunc struct {
	Symbol   string `cbor:"0,keyasint"`
	Target   uint64 `cbor:"1,keyasint"`
	Size     uint64 `cbor:"2,keyasint"`
	Keep     uint64 `cbor:"3,keyasint,omitempty"`
	CheckLen uint64 `cbor:"4,keyasint"`
	Check    []byte `cbor:"5,keyasint"`
	New      uint64 `cbor:"6,keyasint"`
	Thumb    bool   `cbor:"7,keyasint,omitempty"`
}

// A relocation is a 5-element array, not a map: bundles carry thousands.
type wireReloc struct {
	_      struct{} `cbor:",toarray"`
	Offset uint64
	Type   uint32
	Base   Base
	Sym    uint64
	Addend int64
}

var decMode, encMode = modes()

func modes() (cbor.DecMode, cbor.EncMode) {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   4,
		MaxArrayElements:  MaxRelocs,
		MaxMapPairs:       16,
	}.DecMode()
	if err != nil {
		panic("ulp: decoder options: " + err.Error())
	}
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("ulp: encoder options: " + err.Error())
	}
	return dm, em
}

// Decode reads one bundle from b, strictly (one CBOR item, no unknown
// keys, no duplicates, no tags, no trailing bytes), and validates it.
func Decode(b []byte) (*Bundle, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("ulp: %d bytes, limit %d: %w", len(b), MaxSize, ErrTooLarge)
	}
	var w wireBundle
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("ulp: %w: %w", err, ErrMalformed)
	}
	if w.Format != FormatVersion {
		return nil, fmt.Errorf("ulp: format %d, this agent reads %d: %w", w.Format, FormatVersion, ErrUnsupportedFormat)
	}
	out := &Bundle{Format: w.Format, Name: w.Name, Arch: w.Arch, BuildID: w.BuildID, Soname: w.Soname,
		Code: w.Code, Data: w.Data, BSS: w.BSS,
		Funcs: make([]Func, len(w.Funcs)), Relocs: make([]Reloc, len(w.Relocs))}
	for i, f := range w.Funcs {
		out.Funcs[i] = Func(f)
	}
	for i, r := range w.Relocs {
		out.Relocs[i] = Reloc{Offset: r.Offset, Type: r.Type, Base: r.Base, Sym: r.Sym, Addend: r.Addend}
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// Encode validates b and returns its core deterministic CBOR encoding.
func (b *Bundle) Encode() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	w := wireBundle{Format: b.Format, Name: b.Name, Arch: b.Arch, BuildID: b.BuildID, Soname: b.Soname,
		Code: b.Code, Data: b.Data, BSS: b.BSS,
		Funcs: make([]wireFunc, len(b.Funcs)), Relocs: make([]wireReloc, len(b.Relocs))}
	for i, f := range b.Funcs {
		w.Funcs[i] = wireFunc(f)
	}
	for i, r := range b.Relocs {
		w.Relocs[i] = wireReloc{Offset: r.Offset, Type: r.Type, Base: r.Base, Sym: r.Sym, Addend: r.Addend}
	}
	out, err := encMode.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("ulp: encode: %w", err)
	}
	if len(out) > MaxSize {
		return nil, fmt.Errorf("ulp: encoded bundle is %d bytes, limit %d: %w", len(out), MaxSize, ErrTooLarge)
	}
	return out, nil
}
