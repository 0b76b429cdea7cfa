// Package signature is graft's stand-in for sigstore's signature package:
// the Signer and Verifier interfaces go-tuf's metadata package uses, and
// verifiers and signers for exactly the TUF key types and schemes go-tuf
// supports — ed25519, ecdsa-sha2-nistp256/nistp384 (ASN.1 DER or IEEE
// P1363 signatures) and rsassa-pss-sha256 — plus RSA PKCS#1 v1.5, which
// upstream's LoadVerifier returns for RSA keys.
//
// It accepts and refuses what upstream v1.10.6 does (graft's
// tuf/testdata/sigvectors.json records upstream's verdicts), except that a
// malformed ed25519 key is refused with an error where upstream panics.
// Options are accepted for signature compatibility and ignored: nothing
// outside this module can construct one.
package signature
