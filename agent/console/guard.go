package console

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/graft-dev/graft/transport/identity"
)

// Text forms of a challenge and a token: one line each, so a technician
// can copy them between a terminal and a signing machine.
const (
	ChallengePrefix = "graft-challenge-v1:"
	TokenPrefix     = "graft-token-v1:"
)

// MaxTTL bounds how long a token may keep a console unlocked.
const MaxTTL = time.Hour

// Errors of the unlock. Every refusal is one of them.
var (
	ErrLocked      = errors.New("console: locked: this command needs an unlock token (unlock)")
	ErrNoChallenge = errors.New("console: no challenge outstanding (run challenge first)")
	ErrToken       = errors.New("console: malformed token")
	ErrCertificate = errors.New("console: the token's certificate is not an operator certificate of this fleet")
	ErrRole        = errors.New("console: the operator's role may not change devices")
	ErrSignature   = errors.New("console: the token's signature does not verify")
	ErrDevice      = errors.New("console: the token was signed for another device")
	ErrStale       = errors.New("console: the token answers another or an older challenge")
	ErrExpired     = errors.New("console: the token has expired")
	ErrScope       = errors.New("console: the token does not allow this command")
)

// Challenge is what the device asks an operator to sign: its ID and a
// one-time nonce.
type Challenge struct {
	Device string `cbor:"1,keyasint"`
	Nonce  []byte `cbor:"2,keyasint"`
	Issued int64  `cbor:"3,keyasint"` // device clock, Unix ms: for people only
}

// Grant is what the operator signs: the challenge as the device sent it,
// the commands it unlocks ("*" for all) and for how long after the
// device issued the challenge.
type Grant struct {
	Challenge []byte   `cbor:"1,keyasint"` // the challenge's CBOR bytes
	Scope     []string `cbor:"2,keyasint"`
	TTL       int64    `cbor:"3,keyasint"` // seconds
}

// Token is a signed grant with the operator's certificate.
type Token struct {
	Grant []byte `cbor:"1,keyasint"` // the grant's CBOR bytes
	Cert  []byte `cbor:"2,keyasint"` // operator certificate, DER
	Sig   []byte `cbor:"3,keyasint"` // ECDSA P-256 over SHA-256(Grant), ASN.1
}

var encMode, _ = cbor.CoreDetEncOptions().EncMode()

var decMode, _ = cbor.DecOptions{
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	MaxArrayElements: 64,
	MaxMapPairs:      16,
	MaxNestedLevels:  4,
}.DecMode()

// maxTokenText bounds a token line (a certificate is under 1 KiB).
const maxTokenText = 4 << 10

func encodeText(prefix string, v any) (string, []byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return "", nil, err
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), b, nil
}

func decodeText(prefix, s string, v any) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxTokenText || !strings.HasPrefix(s, prefix) {
		return nil, ErrToken
	}
	b, err := base64.RawURLEncoding.DecodeString(s[len(prefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	return b, nil
}

// ParseChallenge reads a challenge line (for the signing side).
func ParseChallenge(s string) (Challenge, []byte, error) {
	var c Challenge
	b, err := decodeText(ChallengePrefix, s, &c)
	return c, b, err
}

// Sign makes a token line for a challenge line with an operator's
// certificate and key.
func Sign(challenge string, scope []string, ttl time.Duration, cert *x509.Certificate, key *ecdsa.PrivateKey) (string, error) {
	if _, _, err := ParseChallenge(challenge); err != nil {
		return "", err
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", fmt.Errorf("console: ttl %v outside (0, %v]", ttl, MaxTTL)
	}
	if len(scope) == 0 {
		return "", fmt.Errorf("%w: empty scope", ErrScope)
	}
	cb, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(challenge), ChallengePrefix))
	grant, err := encMode.Marshal(Grant{Challenge: cb, Scope: scope, TTL: int64(ttl / time.Second)})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(grant)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	s, _, err := encodeText(TokenPrefix, Token{Grant: grant, Cert: cert.Raw, Sig: sig})
	return s, err
}

// Guard decides whether a command may run. It keeps one outstanding
// challenge and at most one unlock; it is safe for concurrent use.
type Guard struct {
	Device string
	Roots  *x509.CertPool // the fleet CA
	// Off turns the guard off (lab boards): every command runs.
	Off bool
	// Now is the clock used for certificate validity; Mono measures the
	// unlock's lifetime from the challenge (monotonic, immune to a device
	// clock that starts at 1970). Both default to time.Now.
	Now  func() time.Time
	Mono func() time.Time

	mu        sync.Mutex
	challenge []byte
	issued    time.Time // Mono when the challenge was issued
	unlocked  *unlock
}

type unlock struct {
	Operator string
	Scope    []string
	Until    time.Time // Mono
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Guard) mono() time.Time {
	if g.Mono != nil {
		return g.Mono()
	}
	return time.Now()
}

// NewChallenge issues a fresh challenge (the previous one, and any unlock,
// end) and returns its line.
func (g *Guard) NewChallenge() (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	s, b, err := encodeText(ChallengePrefix, Challenge{Device: g.Device, Nonce: nonce, Issued: g.now().UnixMilli()})
	if err != nil {
		return "", err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.challenge, g.issued, g.unlocked = b, g.mono(), nil
	return s, nil
}

// Unlock checks a token line against the outstanding challenge and, if it
// holds, unlocks its scope until its TTL after the challenge. The
// challenge is spent either way: a token is good once.
func (g *Guard) Unlock(token string) (operator string, scope []string, until time.Duration, err error) {
	var t Token
	if _, err := decodeText(TokenPrefix, token, &t); err != nil {
		return "", nil, 0, err
	}
	var gr Grant
	if err := decMode.Unmarshal(t.Grant, &gr); err != nil {
		return "", nil, 0, fmt.Errorf("%w: grant: %w", ErrToken, err)
	}
	cert, err := x509.ParseCertificate(t.Cert)
	if err != nil {
		return "", nil, 0, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	at := g.now()
	// A device without a clock boots in 1970: check validity no earlier
	// than the certificate's own start rather than refuse every token.
	if at.Before(cert.NotBefore) {
		at = cert.NotBefore.Add(time.Second)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: g.Roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", nil, 0, fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	id, err := identity.FromCertificate(cert)
	if err != nil || id.Kind != identity.Operator {
		return "", nil, 0, ErrCertificate
	}
	if id.Role != identity.RoleAdmin {
		return "", nil, 0, fmt.Errorf("%w (%s is %s)", ErrRole, id.Name, id.Role)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	sum := sha256.Sum256(t.Grant)
	if !ok || !ecdsa.VerifyASN1(pub, sum[:], t.Sig) {
		return "", nil, 0, ErrSignature
	}
	var c Challenge
	if err := decMode.Unmarshal(gr.Challenge, &c); err != nil {
		return "", nil, 0, fmt.Errorf("%w: challenge: %w", ErrToken, err)
	}
	if c.Device != g.Device {
		return "", nil, 0, fmt.Errorf("%w (%q)", ErrDevice, c.Device)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.challenge == nil {
		return "", nil, 0, ErrNoChallenge
	}
	if !bytes.Equal(gr.Challenge, g.challenge) {
		return "", nil, 0, ErrStale
	}
	g.challenge = nil // spent
	ttl := time.Duration(gr.TTL) * time.Second
	if ttl <= 0 || ttl > MaxTTL || len(gr.Scope) == 0 {
		return "", nil, 0, fmt.Errorf("%w: ttl %v, scope %v", ErrToken, ttl, gr.Scope)
	}
	u := &unlock{Operator: id.Name, Scope: gr.Scope, Until: g.issued.Add(ttl)}
	left := u.Until.Sub(g.mono())
	if left <= 0 {
		return "", nil, 0, ErrExpired
	}
	g.unlocked = u
	return id.Name, gr.Scope, left, nil
}

// Allow reports whether command may run now, and for whom.
func (g *Guard) Allow(command string) (operator string, err error) {
	if g.Off {
		return "lab (guard off)", nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	u := g.unlocked
	if u == nil {
		return "", ErrLocked
	}
	if !g.mono().Before(u.Until) {
		g.unlocked = nil
		return "", ErrExpired
	}
	if !slices.Contains(u.Scope, "*") && !slices.Contains(u.Scope, command) {
		return "", fmt.Errorf("%w: %s (scope %s)", ErrScope, command, strings.Join(u.Scope, ","))
	}
	return u.Operator, nil
}

// Lock ends an unlock at once.
func (g *Guard) Lock() {
	g.mu.Lock()
	g.unlocked, g.challenge = nil, nil
	g.mu.Unlock()
}
