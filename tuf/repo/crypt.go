package repo

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"
)

// scrypt cost of a key file's passphrase (2^15, r 8, p 1: about 32 MiB
// and a tenth of a second per key, the cost recommended for interactive
// logins).
const (
	scryptN = 1 << 15
	scryptR = 8
	scryptP = 1
)

// sealed is a private key encrypted with a passphrase: scrypt derives a
// 256-bit key, XChaCha20-Poly1305 seals the ed25519 seed, and the key ID is
// the additional data (a sealed seed moved to another key file does not
// open).
type sealed struct {
	KDF        string `json:"kdf"` // "scrypt"
	N          int    `json:"n"`
	R          int    `json:"r"`
	P          int    `json:"p"`
	Salt       string `json:"salt"`
	Cipher     string `json:"cipher"` // "xchacha20poly1305"
	Nonce      string `json:"nonce"`
	Ciphertext string `json:"ciphertext"`
}

// kdfCache remembers scrypt results within the process, and the salt
// used for each passphrase: the keys one process seals share a salt (each
// file has its own random 24-byte nonce, so sharing the derived key is
// safe), and opening them costs one derivation, not one per key.
var kdfCache = struct {
	sync.Mutex
	keys  map[[32]byte][]byte
	salts map[[32]byte][]byte
}{keys: map[[32]byte][]byte{}, salts: map[[32]byte][]byte{}}

func seal(seed, passphrase []byte, keyID string) (*sealed, error) {
	s := &sealed{KDF: "scrypt", N: scryptN, R: scryptR, P: scryptP, Cipher: "xchacha20poly1305"}
	pk := sha256.Sum256(passphrase)
	kdfCache.Lock()
	salt := kdfCache.salts[pk]
	if salt == nil {
		salt = make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			kdfCache.Unlock()
			return nil, err
		}
		kdfCache.salts[pk] = salt
	}
	kdfCache.Unlock()
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	aead, err := s.aead(passphrase, salt)
	if err != nil {
		return nil, err
	}
	s.Salt, s.Nonce = hex.EncodeToString(salt), hex.EncodeToString(nonce)
	s.Ciphertext = hex.EncodeToString(aead.Seal(nil, nonce, seed, []byte(keyID)))
	return s, nil
}

func (s *sealed) open(passphrase []byte, keyID string) ([]byte, error) {
	if s.KDF != "scrypt" || s.Cipher != "xchacha20poly1305" {
		return nil, fmt.Errorf("%w: kdf %q cipher %q, want scrypt and xchacha20poly1305", ErrKey, s.KDF, s.Cipher)
	}
	// bounds keep a hostile file from asking for gigabytes
	if s.N < 1<<10 || s.N > 1<<20 || s.R < 1 || s.R > 32 || s.P < 1 || s.P > 16 {
		return nil, fmt.Errorf("%w: scrypt parameters out of range", ErrKey)
	}
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w: the key is encrypted and no passphrase was given", ErrPassphrase)
	}
	salt, err1 := hex.DecodeString(s.Salt)
	nonce, err2 := hex.DecodeString(s.Nonce)
	ct, err3 := hex.DecodeString(s.Ciphertext)
	if err1 != nil || err2 != nil || err3 != nil || len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, fmt.Errorf("%w: sealed key is not hex", ErrKey)
	}
	aead, err := s.aead(passphrase, salt)
	if err != nil {
		return nil, err
	}
	seed, err := aead.Open(nil, nonce, ct, []byte(keyID))
	if err != nil {
		return nil, fmt.Errorf("%w: wrong passphrase (or a damaged key file)", ErrPassphrase)
	}
	return seed, nil
}

func (s *sealed) aead(passphrase, salt []byte) (interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%d %d %d %x %x ", s.N, s.R, s.P, salt, sha256.Sum256(passphrase))
	var ck [32]byte
	copy(ck[:], h.Sum(nil))
	kdfCache.Lock()
	k := kdfCache.keys[ck]
	kdfCache.Unlock()
	if k == nil {
		var err error
		if k, err = scrypt.Key(passphrase, salt, s.N, s.R, s.P, chacha20poly1305.KeySize); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		kdfCache.Lock()
		kdfCache.keys[ck] = k
		kdfCache.Unlock()
	}
	return chacha20poly1305.NewX(k)
}
