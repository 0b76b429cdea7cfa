package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// SignOption, VerifyOption and PublicKeyOption exist so that callers
// written against upstream compile; none can be constructed, so none is
// ever applied.
type (
	SignOption      interface{ signOption() }
	VerifyOption    interface{ verifyOption() }
	PublicKeyOption interface{ publicKeyOption() }
)

// LoadOption chooses how a signer or verifier is built (package options
// makes them): the hash, and RSASSA-PSS instead of PKCS#1 v1.5 for RSA.
// ed25519ph is not supported: ApplyED25519ph asking for it is refused.
type LoadOption interface {
	ApplyHash(*crypto.Hash)
	ApplyED25519ph(*bool)
	ApplyRSAPSS(**rsa.PSSOptions)
}

type loadOpts struct {
	hash crypto.Hash
	ph   bool
	pss  *rsa.PSSOptions
}

func applyLoad(opts []LoadOption) loadOpts {
	o := loadOpts{hash: crypto.SHA256}
	for _, x := range opts {
		x.ApplyHash(&o.hash)
		x.ApplyED25519ph(&o.ph)
		x.ApplyRSAPSS(&o.pss)
	}
	return o
}

// PublicKeyProvider returns the public half of a key.
type PublicKeyProvider interface {
	PublicKey(opts ...PublicKeyOption) (crypto.PublicKey, error)
}

// Signer signs a whole message.
type Signer interface {
	PublicKeyProvider
	SignMessage(message io.Reader, opts ...SignOption) ([]byte, error)
}

// Verifier checks a signature over a whole message.
type Verifier interface {
	PublicKeyProvider
	VerifySignature(signature, message io.Reader, opts ...VerifyOption) error
}

// SignerVerifier does both.
type SignerVerifier interface {
	Signer
	Verifier
}

var (
	errNilKey      = errors.New("signature: no public key")
	errBadHash     = errors.New("signature: unsupported hash function")
	errNilSig      = errors.New("signature: nil signature")
	errNilMessage  = errors.New("signature: nil message")
	errUnsupported = errors.New("signature: unsupported key type")
	// ErrInvalid is returned for every signature that does not verify.
	ErrInvalid = errors.New("signature: invalid signature")
)

func oneOf(h crypto.Hash, hs ...crypto.Hash) bool {
	for _, x := range hs {
		if h == x {
			return true
		}
	}
	return false
}

// digest hashes a message with h; h == 0 returns the message itself.
func digest(message io.Reader, h crypto.Hash) ([]byte, error) {
	if message == nil {
		return nil, errNilMessage
	}
	if h == 0 {
		return io.ReadAll(message)
	}
	if !h.Available() {
		return nil, errBadHash
	}
	w := h.New()
	if _, err := io.Copy(w, message); err != nil {
		return nil, fmt.Errorf("signature: hashing message: %w", err)
	}
	return w.Sum(nil), nil
}

// inputs reads what a verifier checks: the message's digest under h (the
// message itself for h == 0) and the signature's bytes.
func inputs(message, signature io.Reader, h crypto.Hash) (digested, sig []byte, err error) {
	if digested, err = digest(message, h); err != nil {
		return nil, nil, err
	}
	if sig, err = readSig(signature); err != nil {
		return nil, nil, err
	}
	return digested, sig, nil
}

func readSig(sig io.Reader) ([]byte, error) {
	if sig == nil {
		return nil, errNilSig
	}
	b, err := io.ReadAll(sig)
	if err != nil {
		return nil, fmt.Errorf("signature: reading signature: %w", err)
	}
	return b, nil
}

// LoadVerifier returns the verifier for a public key: RSA keys verify
// PKCS#1 v1.5 (TUF's rsassa-pss keys go through LoadRSAPSSVerifier), ECDSA
// keys verify over hashFunc, ed25519 keys over the message itself.
func LoadVerifier(publicKey crypto.PublicKey, hashFunc crypto.Hash) (Verifier, error) {
	switch pk := publicKey.(type) {
	case *rsa.PublicKey:
		return LoadRSAPKCS1v15Verifier(pk, hashFunc)
	case *ecdsa.PublicKey:
		return LoadECDSAVerifier(pk, hashFunc)
	case ed25519.PublicKey:
		return LoadED25519Verifier(pk)
	}
	return nil, errUnsupported
}

// LoadSigner returns the signer for a private key; RSA keys sign PKCS#1
// v1.5 unless options.WithRSAPSS is given to LoadSignerWithOpts.
func LoadSigner(privateKey crypto.PrivateKey, hashFunc crypto.Hash) (Signer, error) {
	return LoadSignerVerifierWithOpts(privateKey, hashOpt(hashFunc))
}

// LoadSignerWithOpts is LoadSigner with load options.
func LoadSignerWithOpts(privateKey crypto.PrivateKey, opts ...LoadOption) (Signer, error) {
	return LoadSignerVerifierWithOpts(privateKey, opts...)
}

// LoadSignerVerifier returns a signer that also verifies.
func LoadSignerVerifier(privateKey crypto.PrivateKey, hashFunc crypto.Hash) (SignerVerifier, error) {
	return LoadSignerVerifierWithOpts(privateKey, hashOpt(hashFunc))
}

// LoadSignerVerifierWithOpts is LoadSignerVerifier with load options.
func LoadSignerVerifierWithOpts(privateKey crypto.PrivateKey, opts ...LoadOption) (SignerVerifier, error) {
	o := applyLoad(opts)
	switch pk := privateKey.(type) {
	case *rsa.PrivateKey:
		if o.pss != nil {
			return LoadRSAPSSSigner(pk, o.hash, o.pss)
		}
		return LoadRSAPKCS1v15Signer(pk, o.hash)
	case *ecdsa.PrivateKey:
		return LoadECDSASigner(pk, o.hash)
	case ed25519.PrivateKey:
		if o.ph {
			return nil, errors.New("signature: ed25519ph is not supported")
		}
		return LoadED25519Signer(pk)
	}
	return nil, errUnsupported
}

// LoadRSAPSSSignerVerifier is LoadRSAPSSSigner.
func LoadRSAPSSSignerVerifier(priv *rsa.PrivateKey, hashFunc crypto.Hash, opts *rsa.PSSOptions) (*RSAPSSSigner, error) {
	return LoadRSAPSSSigner(priv, hashFunc, opts)
}

// LoadSignerFromPEMFile reads a PEM private key (PKCS#8, PKCS#1 or SEC 1;
// encrypted keys are refused) and returns LoadSigner's signer for it.
func LoadSignerFromPEMFile(path string, hashFunc crypto.Hash, pf cryptoutils.PassFunc) (Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(b, pf)
	if err != nil {
		return nil, err
	}
	return LoadSigner(priv, hashFunc)
}

type hashOpt crypto.Hash

func (h hashOpt) ApplyHash(p *crypto.Hash)   { *p = crypto.Hash(h) }
func (hashOpt) ApplyED25519ph(*bool)         {}
func (hashOpt) ApplyRSAPSS(**rsa.PSSOptions) {}

// ED25519Verifier verifies pure ed25519 signatures.
type ED25519Verifier struct{ pub ed25519.PublicKey }

// LoadED25519Verifier refuses a nil key; a key of the wrong length is
// refused when verifying (upstream panics there).
func LoadED25519Verifier(pub ed25519.PublicKey) (*ED25519Verifier, error) {
	if pub == nil {
		return nil, errNilKey
	}
	return &ED25519Verifier{pub: pub}, nil
}

func (v *ED25519Verifier) PublicKey(...PublicKeyOption) (crypto.PublicKey, error) { return v.pub, nil }

func (v *ED25519Verifier) VerifySignature(signature, message io.Reader, _ ...VerifyOption) error {
	msg, sig, err := inputs(message, signature, 0)
	if err != nil {
		return err
	}
	if len(v.pub) != ed25519.PublicKeySize {
		return fmt.Errorf("signature: ed25519 public key is %d bytes, want %d", len(v.pub), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(v.pub, msg, sig) {
		return ErrInvalid
	}
	return nil
}

// ED25519Signer signs with ed25519 and verifies its own signatures.
type ED25519Signer struct {
	*ED25519Verifier
	priv ed25519.PrivateKey
}

func LoadED25519Signer(priv ed25519.PrivateKey) (*ED25519Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("signature: invalid ed25519 private key")
	}
	return &ED25519Signer{ED25519Verifier: &ED25519Verifier{pub: priv.Public().(ed25519.PublicKey)}, priv: priv}, nil
}

func (s *ED25519Signer) SignMessage(message io.Reader, _ ...SignOption) ([]byte, error) {
	msg, err := digest(message, 0)
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(s.priv, msg), nil
}

// ECDSAVerifier verifies ECDSA signatures in ASN.1 DER or IEEE P1363 form.
type ECDSAVerifier struct {
	pub  *ecdsa.PublicKey
	hash crypto.Hash
}

func LoadECDSAVerifier(pub *ecdsa.PublicKey, hashFunc crypto.Hash) (*ECDSAVerifier, error) {
	if pub == nil {
		return nil, errNilKey
	}
	if !oneOf(hashFunc, crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA224) {
		return nil, errBadHash
	}
	return &ECDSAVerifier{pub: pub, hash: hashFunc}, nil
}

func (v *ECDSAVerifier) PublicKey(...PublicKeyOption) (crypto.PublicKey, error) { return v.pub, nil }

func (v *ECDSAVerifier) VerifySignature(signature, message io.Reader, _ ...VerifyOption) error {
	d, sig, err := inputs(message, signature, v.hash)
	if err != nil {
		return err
	}
	// ECDH validates the point (on the curve, not infinity) without panicking.
	if _, err := v.pub.ECDH(); err != nil {
		return fmt.Errorf("signature: invalid ECDSA public key: %w", err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &rs); err == nil {
		if !ecdsa.VerifyASN1(v.pub, d, sig) {
			return ErrInvalid
		}
		return nil
	}
	// IEEE P1363: r || s, each half the signature.
	if len(sig) == 0 || len(sig) > 132 || len(sig)%2 != 0 {
		return ErrInvalid
	}
	r := new(big.Int).SetBytes(sig[:len(sig)/2])
	s := new(big.Int).SetBytes(sig[len(sig)/2:])
	if !ecdsa.Verify(v.pub, d, r, s) {
		return ErrInvalid
	}
	return nil
}

// ECDSASigner signs ASN.1 DER ECDSA signatures.
type ECDSASigner struct {
	*ECDSAVerifier
	priv *ecdsa.PrivateKey
}

func LoadECDSASigner(priv *ecdsa.PrivateKey, hashFunc crypto.Hash) (*ECDSASigner, error) {
	if priv == nil {
		return nil, errors.New("signature: invalid ECDSA private key")
	}
	v, err := LoadECDSAVerifier(&priv.PublicKey, hashFunc)
	if err != nil {
		return nil, err
	}
	return &ECDSASigner{ECDSAVerifier: v, priv: priv}, nil
}

func (s *ECDSASigner) SignMessage(message io.Reader, _ ...SignOption) ([]byte, error) {
	d, err := digest(message, s.hash)
	if err != nil {
		return nil, err
	}
	return ecdsa.SignASN1(rand.Reader, s.priv, d)
}

// RSAPSSVerifier verifies RSASSA-PSS signatures (salt length detected).
type RSAPSSVerifier struct {
	pub  *rsa.PublicKey
	hash crypto.Hash
	opts *rsa.PSSOptions
}

func LoadRSAPSSVerifier(pub *rsa.PublicKey, hashFunc crypto.Hash, opts *rsa.PSSOptions) (*RSAPSSVerifier, error) {
	if pub == nil {
		return nil, errNilKey
	}
	if !oneOf(hashFunc, crypto.SHA256, crypto.SHA384, crypto.SHA512) {
		return nil, errBadHash
	}
	return &RSAPSSVerifier{pub: pub, hash: hashFunc, opts: opts}, nil
}

func (v *RSAPSSVerifier) PublicKey(...PublicKeyOption) (crypto.PublicKey, error) { return v.pub, nil }

func (v *RSAPSSVerifier) VerifySignature(signature, message io.Reader, _ ...VerifyOption) error {
	d, sig, err := inputs(message, signature, v.hash)
	if err != nil {
		return err
	}
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}
	if v.opts != nil {
		opts = &rsa.PSSOptions{SaltLength: v.opts.SaltLength}
	}
	if err := rsa.VerifyPSS(v.pub, v.hash, d, sig, opts); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// RSAPSSSigner signs RSASSA-PSS with a salt as long as the hash.
type RSAPSSSigner struct {
	*RSAPSSVerifier
	priv *rsa.PrivateKey
}

func LoadRSAPSSSigner(priv *rsa.PrivateKey, hashFunc crypto.Hash, opts *rsa.PSSOptions) (*RSAPSSSigner, error) {
	if priv == nil {
		return nil, errors.New("signature: invalid RSA private key")
	}
	v, err := LoadRSAPSSVerifier(&priv.PublicKey, hashFunc, opts)
	if err != nil {
		return nil, err
	}
	return &RSAPSSSigner{RSAPSSVerifier: v, priv: priv}, nil
}

func (s *RSAPSSSigner) SignMessage(message io.Reader, _ ...SignOption) ([]byte, error) {
	d, err := digest(message, s.hash)
	if err != nil {
		return nil, err
	}
	return rsa.SignPSS(rand.Reader, s.priv, s.hash, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
}

// RSAPKCS1v15Verifier verifies RSASSA-PKCS1-v1_5 signatures.
type RSAPKCS1v15Verifier struct {
	pub  *rsa.PublicKey
	hash crypto.Hash
}

func LoadRSAPKCS1v15Verifier(pub *rsa.PublicKey, hashFunc crypto.Hash) (*RSAPKCS1v15Verifier, error) {
	if pub == nil {
		return nil, errNilKey
	}
	if !oneOf(hashFunc, crypto.SHA256, crypto.SHA384, crypto.SHA512) {
		return nil, errBadHash
	}
	return &RSAPKCS1v15Verifier{pub: pub, hash: hashFunc}, nil
}

func (v *RSAPKCS1v15Verifier) PublicKey(...PublicKeyOption) (crypto.PublicKey, error) {
	return v.pub, nil
}

func (v *RSAPKCS1v15Verifier) VerifySignature(signature, message io.Reader, _ ...VerifyOption) error {
	d, sig, err := inputs(message, signature, v.hash)
	if err != nil {
		return err
	}
	if err := rsa.VerifyPKCS1v15(v.pub, v.hash, d, sig); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// RSAPKCS1v15Signer signs RSASSA-PKCS1-v1_5.
type RSAPKCS1v15Signer struct {
	*RSAPKCS1v15Verifier
	priv *rsa.PrivateKey
}

func LoadRSAPKCS1v15Signer(priv *rsa.PrivateKey, hashFunc crypto.Hash) (*RSAPKCS1v15Signer, error) {
	if priv == nil {
		return nil, errors.New("signature: invalid RSA private key")
	}
	v, err := LoadRSAPKCS1v15Verifier(&priv.PublicKey, hashFunc)
	if err != nil {
		return nil, err
	}
	return &RSAPKCS1v15Signer{RSAPKCS1v15Verifier: v, priv: priv}, nil
}

func (s *RSAPKCS1v15Signer) SignMessage(message io.Reader, _ ...SignOption) ([]byte, error) {
	d, err := digest(message, s.hash)
	if err != nil {
		return nil, err
	}
	return rsa.SignPKCS1v15(rand.Reader, s.priv, s.hash, d)
}
