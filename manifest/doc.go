// Package manifest is graft's release manifest: the Go types, a strict CBOR
// decoder, a deterministic CBOR encoder, and pure checks of a manifest
// against a device. The wire format is specified in docs/manifest.cddl.
//
// A manifest is a CBOR map with small unsigned-integer keys. Keys 0..255 of
// every map belong to the format: a key this package does not know is
// refused with ErrUnknownKey, because an agent must not guess what a core
// field means (MinAgentVersion exists so that newer manifests can demand a
// newer agent). Keys 256 and above are extensions and are ignored (after a
// strict well-formedness check of their values).
//
// Decode refuses anything it cannot read exactly one way: input above
// MaxSize, duplicate map keys, indefinite lengths, tags, invalid UTF-8,
// trailing bytes, wrong types, missing required fields, and values that fail
// Validate. Encode writes RFC 8949 core deterministic CBOR, so one manifest
// has exactly one encoding.
//
// The package is pure: it must never do I/O, read the clock, log, or decide
// how a release is applied. Callers feed it bytes and a Device description
// and get decisions back as errors that wrap the sentinels below.
package manifest
