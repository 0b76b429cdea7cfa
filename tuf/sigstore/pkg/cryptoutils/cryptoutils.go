// Package cryptoutils is graft's stand-in for sigstore's cryptoutils: the
// two PEM helpers go-tuf's metadata package calls for public keys.
package cryptoutils

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types for public keys.
const (
	PublicKeyPEMType      = "PUBLIC KEY"
	PKCS1PublicKeyPEMType = "RSA PUBLIC KEY"
)

// UnmarshalPEMToPublicKey parses the first PEM block: a PKIX public key,
// or a PKCS#1 RSA public key. Any other block type is refused.
func UnmarshalPEMToPublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("cryptoutils: no PEM block")
	}
	switch block.Type {
	case PublicKeyPEMType:
		return x509.ParsePKIXPublicKey(block.Bytes)
	case PKCS1PublicKeyPEMType:
		return x509.ParsePKCS1PublicKey(block.Bytes)
	}
	return nil, fmt.Errorf("cryptoutils: PEM block %q is not a public key", block.Type)
}

// MarshalPublicKeyToPEM writes a public key as a PKIX "PUBLIC KEY" block.
func MarshalPublicKeyToPEM(pub crypto.PublicKey) ([]byte, error) {
	if pub == nil {
		return nil, errors.New("cryptoutils: empty key")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PublicKeyPEMType, Bytes: der}), nil
}

// PassFunc returns the passphrase of an encrypted key.
type PassFunc func(confirm bool) ([]byte, error)

// SkipPassword is a PassFunc for keys that are not encrypted.
func SkipPassword(bool) ([]byte, error) { return nil, nil }

// UnmarshalPEMToPrivateKey parses a PKCS#8, PKCS#1 RSA or SEC 1 EC private
// key. Encrypted keys are refused: graft keeps its own key files.
func UnmarshalPEMToPrivateKey(pemBytes []byte, _ PassFunc) (crypto.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("cryptoutils: no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("cryptoutils: PEM block %q is not a private key graft reads", block.Type)
}
