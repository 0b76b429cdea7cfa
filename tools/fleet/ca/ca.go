package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/transport/identity"
)

// Files in a CA directory.
const (
	CertFile  = "ca.crt"     // the CA certificate (public): brokers and devices trust it
	KeyFile   = "ca.key"     // the CA private key, mode 0600
	IndexFile = "index.json" // every certificate issued, and its revocation
	CRLFile   = "crl.pem"    // the signed revocation list brokers load
	lockFile  = ".lock"
)

// Default validities.
const (
	CAValidity       = 20 * 365 * 24 * time.Hour
	DeviceValidity   = 10 * 365 * 24 * time.Hour
	OperatorValidity = 365 * 24 * time.Hour
	ServerValidity   = 2 * 365 * 24 * time.Hour
)

// Errors.
var (
	ErrExists    = errors.New("ca: already exists")
	ErrNoCA      = errors.New("ca: no CA in directory")
	ErrBadCSR    = errors.New("ca: invalid certificate request")
	ErrNotIssued = errors.New("ca: no such certificate issued")
)

// CA is an opened CA directory. Methods that change the directory take
// its lock, so several processes may issue at once.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	now  func() time.Time
}

// Options configure Init and Open.
type Options struct {
	Name string           // CA common name for Init; default "graft fleet CA"
	Now  func() time.Time // clock; default time.Now
}

// Init creates a CA in dir (created 0700 if missing): a new P-256 key,
// a self-signed CA certificate, an empty index and an empty CRL. It
// refuses a directory that already holds a CA key.
func Init(dir string, opts Options) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	unlock, err := lock(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Lstat(filepath.Join(dir, KeyFile)); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, KeyFile))
	}
	now := clock(opts.Now)
	name := opts.Name
	if name == "" {
		name = "graft fleet CA"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             t.Add(-time.Hour),
		NotAfter:              t.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	c := &CA{dir: dir, cert: cert, key: key, now: now}
	// Key first: a directory with a certificate but no key is not a CA.
	if err := writeNew(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CertFile), pemCert(der), 0o644); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := c.saveIndex(&index{}); err != nil {
		return nil, err
	}
	if err := c.writeCRL(&index{}); err != nil {
		return nil, err
	}
	return c, nil
}

// Open opens the CA in dir.
func Open(dir string, opts Options) (*CA, error) {
	cert, err := LoadCertificate(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoCA, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoCA, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM key", ErrNoCA, KeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoCA, KeyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: %s does not belong to %s", ErrNoCA, KeyFile, CertFile)
	}
	return &CA{dir: dir, cert: cert, key: key, now: clock(opts.Now)}, nil
}

// Certificate is the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Dir is the CA directory.
func (c *CA) Dir() string { return c.dir }

// Issued is a certificate the CA signed, with its key when the CA made it.
type Issued struct {
	Name     string // file name stem: the device ID, operator or server name
	Kind     string // "device", "operator" or "server"
	Identity identity.Identity
	Cert     *x509.Certificate
	CertPEM  []byte
	KeyPEM   []byte // nil when the holder sent a certificate request
}

// IssueNewKey generates a P-256 key for id and issues its certificate.
// validity 0 means the kind's default.
func (c *CA) IssueNewKey(id identity.Identity, validity time.Duration) (*Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	iss, err := c.Issue(id, &key.PublicKey, validity)
	if err != nil {
		return nil, err
	}
	if iss.KeyPEM, err = encodeKey(key); err != nil {
		return nil, err
	}
	return iss, nil
}

// IssueCSR issues id's certificate for the key in a PEM or DER
// certificate request, after checking the request's signature (proof
// that the holder has the key). The identity comes from id, never from
// the request's subject; a request naming another subject is refused.
func (c *CA) IssueCSR(id identity.Identity, csr []byte, validity time.Duration) (*Issued, error) {
	if blk, _ := pem.Decode(csr); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block %q", ErrBadCSR, blk.Type)
		}
		csr = blk.Bytes
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	if cn := req.Subject.CommonName; cn != "" && cn != id.String() {
		return nil, fmt.Errorf("%w: request names %q, not %q", ErrBadCSR, cn, id.String())
	}
	return c.Issue(id, req.PublicKey, validity)
}

// Issue signs a client certificate carrying id for pub, an ECDSA P-256
// public key, and records it in the index.
func (c *CA) Issue(id identity.Identity, pub crypto.PublicKey, validity time.Duration) (*Issued, error) {
	if err := id.Check(); err != nil {
		return nil, err
	}
	if validity <= 0 {
		validity = DeviceValidity
		if id.Kind == identity.Operator {
			validity = OperatorValidity
		}
	}
	tmpl := &x509.Certificate{}
	id.Apply(tmpl)
	iss, err := c.sign(tmpl, pub, validity, entry{Kind: id.Kind.String(), Name: id.Name, Role: string(id.Role)})
	if err != nil {
		return nil, err
	}
	iss.Identity = id
	return iss, nil
}

// IssueServer signs a TLS server certificate for a broker reachable as
// hosts (DNS names or IP addresses) and generates its key.
func (c *CA) IssueServer(name string, hosts []string, validity time.Duration) (*Issued, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("ca: server %s: no host names", name)
	}
	if validity <= 0 {
		validity = ServerValidity
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	iss, err := c.sign(tmpl, &key.PublicKey, validity, entry{Kind: "server", Name: name})
	if err != nil {
		return nil, err
	}
	if iss.KeyPEM, err = encodeKey(key); err != nil {
		return nil, err
	}
	return iss, nil
}

func (c *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, e entry) (*Issued, error) {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key is %T, want ECDSA P-256", ErrBadCSR, pub)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	t := c.now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = t.Add(-time.Hour) // tolerate devices whose clock lags
	tmpl.NotAfter = t.Add(validity)
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	tmpl.AuthorityKeyId = c.cert.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, ec, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	e.Serial = serial.String()
	e.NotAfter = cert.NotAfter.UTC()
	err = c.update(func(ix *index) (bool, error) {
		ix.Certs = append(ix.Certs, e)
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return &Issued{Name: e.Name, Kind: e.Kind, Cert: cert, CertPEM: pemCert(der)}, nil
}

// Write writes the certificate to dir/NAME.crt (0644) and, when the CA
// made the key, the key to dir/NAME.key (0600). dir is created 0700 if
// missing. It refuses to replace an existing key or certificate.
func (i *Issued) Write(dir string) (certPath, keyPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("ca: %w", err)
	}
	certPath = filepath.Join(dir, i.Name+".crt")
	if i.KeyPEM != nil {
		keyPath = filepath.Join(dir, i.Name+".key")
		if _, err := os.Lstat(certPath); err == nil {
			return "", "", fmt.Errorf("%w: %s", ErrExists, certPath)
		}
		if err := writeNew(keyPath, i.KeyPEM, 0o600); err != nil {
			return "", "", err
		}
	}
	if err := writeNew(certPath, i.CertPEM, 0o644); err != nil {
		if keyPath != "" {
			os.Remove(keyPath)
		}
		return "", "", err
	}
	return certPath, keyPath, nil
}

// writeNew creates name with data and perm, refusing an existing file
// (a symlink included), and syncs it and its directory.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: %s", ErrExists, name)
	}
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := f.Chmod(perm); err == nil { // umask may have narrowed a public file
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("ca: write %s: %w", name, err)
	}
	return atomicfile.SyncDir(filepath.Dir(name))
}

// LoadCertificate reads the first PEM certificate of a file.
func LoadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// newSerial is a random positive 127-bit serial (RFC 5280: at most 20
// octets; unpredictable, so no one can guess the next one).
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("ca: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := pub.Bytes()
	h := sha256.Sum256(b)
	return h[:20]
}

func clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// lock takes the CA directory's exclusive lock.
func lock(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ca: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("ca: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// index is index.json.
type index struct {
	Version int     `json:"version"`
	CRL     int64   `json:"crl_number"`
	Certs   []entry `json:"certificates"`
}

// entry is one issued certificate.
type entry struct {
	Serial    string     `json:"serial"` // decimal
	Kind      string     `json:"kind"`   // device, operator, server
	Name      string     `json:"name"`
	Role      string     `json:"role,omitempty"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func (c *CA) loadIndex() (*index, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, IndexFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("ca: %s: %w", IndexFile, err)
	}
	if ix.Version != 1 {
		return nil, fmt.Errorf("ca: %s: version %d, want 1", IndexFile, ix.Version)
	}
	return &ix, nil
}

func (c *CA) saveIndex(ix *index) error {
	ix.Version = 1
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(c.dir, IndexFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// update changes the index under the lock; fn reports whether the CRL
// must be written again.
func (c *CA) update(fn func(*index) (bool, error)) error {
	unlock, err := lock(c.dir)
	if err != nil {
		return err
	}
	defer unlock()
	ix, err := c.loadIndex()
	if err != nil {
		return err
	}
	crl, err := fn(ix)
	if err != nil {
		return err
	}
	if crl {
		ix.CRL++
		if err := c.writeCRL(ix); err != nil {
			return err
		}
	}
	return c.saveIndex(ix)
}

// Cert is an index entry, as Certificates lists them.
type Cert struct {
	Serial    *big.Int
	Kind      string
	Name      string
	Role      string
	NotAfter  time.Time
	RevokedAt time.Time // zero: not revoked
}

// Certificates lists what the CA issued, oldest first.
func (c *CA) Certificates() ([]Cert, error) {
	ix, err := c.loadIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Cert, 0, len(ix.Certs))
	for _, e := range ix.Certs {
		s, ok := new(big.Int).SetString(e.Serial, 10)
		if !ok {
			return nil, fmt.Errorf("ca: %s: serial %q", IndexFile, e.Serial)
		}
		ce := Cert{Serial: s, Kind: e.Kind, Name: e.Name, Role: e.Role, NotAfter: e.NotAfter}
		if e.RevokedAt != nil {
			ce.RevokedAt = *e.RevokedAt
		}
		out = append(out, ce)
	}
	return out, nil
}

// Revoke revokes the certificates whose serial is serial (when not nil)
// or that were issued to a device or operator named name of kind (when
// serial is nil), and writes a new CRL. It returns the serials revoked
// now; ErrNotIssued when nothing matched. Revoking again is harmless.
func (c *CA) Revoke(serial *big.Int, kind identity.Kind, name string) ([]*big.Int, error) {
	var revoked []*big.Int
	err := c.update(func(ix *index) (bool, error) {
		t := c.now().UTC()
		matched := false
		for i := range ix.Certs {
			e := &ix.Certs[i]
			if serial != nil && e.Serial != serial.String() || serial == nil && (e.Kind != kind.String() || e.Name != name) {
				continue
			}
			matched = true
			if e.RevokedAt == nil {
				e.RevokedAt = &t
				s, _ := new(big.Int).SetString(e.Serial, 10)
				revoked = append(revoked, s)
			}
		}
		if !matched {
			if serial != nil {
				return false, fmt.Errorf("%w: serial %s", ErrNotIssued, serial)
			}
			return false, fmt.Errorf("%w: %s %s", ErrNotIssued, kind, name)
		}
		return len(revoked) > 0, nil
	})
	return revoked, err
}

// writeCRL signs and writes crl.pem listing every revoked serial of ix.
// Its next update is the CA's expiry: brokers built on OpenSSL refuse
// every client once a CRL they load has expired, and this CRL is
// replaced whenever something is revoked, not on a schedule.
func (c *CA) writeCRL(ix *index) error {
	var list []x509.RevocationListEntry
	for _, e := range ix.Certs {
		if e.RevokedAt == nil {
			continue
		}
		s, ok := new(big.Int).SetString(e.Serial, 10)
		if !ok {
			return fmt.Errorf("ca: %s: serial %q", IndexFile, e.Serial)
		}
		list = append(list, x509.RevocationListEntry{SerialNumber: s, RevocationTime: *e.RevokedAt})
	}
	t := c.now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(ix.CRL + 1),
		ThisUpdate:                t.Add(-time.Hour),
		NextUpdate:                c.cert.NotAfter,
		RevokedCertificateEntries: list,
	}, c.cert, c.key)
	if err != nil {
		return fmt.Errorf("ca: CRL: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	if err := atomicfile.WriteFile(filepath.Join(c.dir, CRLFile), b, 0o644); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// Revocations is a loaded CRL: the serials a broker must refuse.
type Revocations struct {
	serials map[string]bool
}

// LoadCRL reads and verifies a PEM CRL file signed by caCert.
func LoadCRL(path string, caCert *x509.Certificate) (*Revocations, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return ParseCRL(b, caCert)
}

// ParseCRL parses a PEM or DER CRL and checks that caCert signed it.
func ParseCRL(b []byte, caCert *x509.Certificate) (*Revocations, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	rl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("ca: CRL: %w", err)
	}
	if err := rl.CheckSignatureFrom(caCert); err != nil {
		return nil, fmt.Errorf("ca: CRL: %w", err)
	}
	r := &Revocations{serials: map[string]bool{}}
	for _, e := range rl.RevokedCertificateEntries {
		r.serials[e.SerialNumber.String()] = true
	}
	return r, nil
}

// Revoked reports whether serial is on the list.
func (r *Revocations) Revoked(serial *big.Int) bool {
	return r != nil && r.serials[serial.String()]
}

// Len is how many serials are revoked.
func (r *Revocations) Len() int { return len(r.serials) }

// Names lists the names of the certificates of kind the index holds that
// are not revoked, sorted, once each (for broker configurations that
// list operators by name).
func (c *CA) Names(kind identity.Kind) ([]Cert, error) {
	all, err := c.Certificates()
	if err != nil {
		return nil, err
	}
	var out []Cert
	for _, e := range all {
		if e.Kind == kind.String() && e.RevokedAt.IsZero() && !slices.ContainsFunc(out, func(o Cert) bool { return o.Name == e.Name && o.Role == e.Role }) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Cert) int {
		if a.Name != b.Name {
			if a.Name < b.Name {
				return -1
			}
			return 1
		}
		if a.Role < b.Role {
			return -1
		}
		return 0
	})
	return out, nil
}
