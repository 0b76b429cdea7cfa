package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/transport/identity"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	c, err := Init(filepath.Join(t.TempDir(), "ca"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestInitOpen(t *testing.T) {
	c := newCA(t)
	if m := mode(t, filepath.Join(c.Dir(), KeyFile)); m != 0o600 {
		t.Errorf("ca.key mode %o", m)
	}
	if m := mode(t, c.Dir()); m != 0o700 {
		t.Errorf("CA dir mode %o", m)
	}
	cert := c.Certificate()
	if !cert.IsCA || cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA certificate: IsCA %v, algorithm %v", cert.IsCA, cert.PublicKeyAlgorithm)
	}
	if k := cert.PublicKey.(*ecdsa.PublicKey); k.Curve != elliptic.P256() {
		t.Errorf("curve %v", k.Curve.Params().Name)
	}
	if _, err := Init(c.Dir(), Options{}); !errors.Is(err, ErrExists) {
		t.Errorf("second Init: %v, want ErrExists", err)
	}
	o, err := Open(c.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Certificate().Equal(cert) {
		t.Error("Open: another certificate")
	}
	r, err := LoadCRL(filepath.Join(c.Dir(), CRLFile), cert)
	if err != nil || r.Len() != 0 {
		t.Errorf("fresh CRL: %v, %d entries", err, r.Len())
	}
	if _, err := Open(t.TempDir(), Options{}); !errors.Is(err, ErrNoCA) {
		t.Errorf("Open empty dir: %v, want ErrNoCA", err)
	}
}

// verify checks a client certificate as a TLS server configured with the
// CA would.
func verify(t *testing.T, c *CA, iss *Issued) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(c.Certificate())
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("%s does not verify: %v", iss.Name, err)
	}
}

func TestIssueNewKey(t *testing.T) {
	c := newCA(t)
	dev, _ := identity.NewDevice("d1")
	op, _ := identity.NewOperator("alice", identity.RoleViewer)
	out := t.TempDir()
	for _, id := range []identity.Identity{dev, op} {
		iss, err := c.IssueNewKey(id, 0)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, c, iss)
		got, err := identity.FromCertificate(iss.Cert)
		if err != nil || got != id {
			t.Fatalf("identity %+v, %v; want %+v", got, err, id)
		}
		certPath, keyPath, err := iss.Write(out)
		if err != nil {
			t.Fatal(err)
		}
		if certPath != filepath.Join(out, id.Name+".crt") || keyPath != filepath.Join(out, id.Name+".key") {
			t.Errorf("paths %s %s", certPath, keyPath)
		}
		if m := mode(t, keyPath); m != 0o600 {
			t.Errorf("key mode %o", m)
		}
		if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			t.Errorf("key pair does not load: %v", err)
		}
		before, _ := os.ReadFile(keyPath)
		if _, _, err := iss.Write(out); !errors.Is(err, ErrExists) {
			t.Errorf("second Write: %v, want ErrExists", err)
		}
		if after, _ := os.ReadFile(keyPath); string(after) != string(before) {
			t.Error("second Write changed the key")
		}
	}
	certs, err := c.Certificates()
	if err != nil || len(certs) != 2 || certs[0].Name != "d1" || certs[1].Role != "viewer" {
		t.Errorf("index %+v, %v", certs, err)
	}
}

func csr(t *testing.T, cn string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestIssueCSR(t *testing.T) {
	c := newCA(t)
	dev, _ := identity.NewDevice("d1")
	iss, err := c.IssueCSR(dev, csr(t, "d1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, c, iss)
	if iss.KeyPEM != nil {
		t.Error("CSR issue returned a key")
	}
	if _, err := c.IssueCSR(dev, csr(t, ""), 0); err != nil {
		t.Errorf("CSR without subject: %v", err)
	}
	bad := map[string][]byte{
		"other subject": csr(t, "d2"),
		"garbage":       []byte("not a request"),
		"certificate":   iss.CertPEM,
	}
	// A request whose signature does not match its key.
	b := csr(t, "d1")
	blk, _ := pem.Decode(b)
	blk.Bytes[len(blk.Bytes)-3] ^= 0xff
	bad["bad signature"] = pem.EncodeToMemory(blk)
	for name, req := range bad {
		if _, err := c.IssueCSR(dev, req, 0); !errors.Is(err, ErrBadCSR) {
			t.Errorf("%s: %v, want ErrBadCSR", name, err)
		}
	}
	// An RSA request is refused: the fleet is P-256 only.
	if _, err := c.Issue(dev, "not a key", 0); !errors.Is(err, ErrBadCSR) {
		t.Errorf("non-ECDSA key: %v", err)
	}
	if _, err := c.IssueNewKey(identity.Identity{Kind: identity.Device, Name: "a/b"}, 0); !errors.Is(err, identity.ErrInvalid) {
		t.Errorf("invalid identity: %v", err)
	}
}

func TestRevoke(t *testing.T) {
	c := newCA(t)
	d1, _ := identity.NewDevice("d1")
	d2, _ := identity.NewDevice("d2")
	a, _ := c.IssueNewKey(d1, 0)
	b, _ := c.IssueNewKey(d1, 0) // reissued
	other, _ := c.IssueNewKey(d2, 0)
	got, err := c.Revoke(nil, identity.Device, "d1")
	if err != nil || len(got) != 2 {
		t.Fatalf("Revoke d1: %v, %v", got, err)
	}
	r, err := LoadCRL(filepath.Join(c.Dir(), CRLFile), c.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Revoked(a.Cert.SerialNumber) || !r.Revoked(b.Cert.SerialNumber) || r.Revoked(other.Cert.SerialNumber) {
		t.Errorf("CRL: a %v b %v other %v", r.Revoked(a.Cert.SerialNumber), r.Revoked(b.Cert.SerialNumber), r.Revoked(other.Cert.SerialNumber))
	}
	if got, err := c.Revoke(other.Cert.SerialNumber, 0, ""); err != nil || len(got) != 1 {
		t.Errorf("Revoke by serial: %v, %v", got, err)
	}
	if got, err := c.Revoke(nil, identity.Device, "d1"); err != nil || len(got) != 0 {
		t.Errorf("Revoke again: %v, %v", got, err)
	}
	if _, err := c.Revoke(nil, identity.Device, "nobody"); !errors.Is(err, ErrNotIssued) {
		t.Errorf("Revoke unknown: %v", err)
	}
	// A CRL signed by another CA is refused.
	o := newCA(t)
	if _, err := LoadCRL(filepath.Join(c.Dir(), CRLFile), o.Certificate()); err == nil {
		t.Error("CRL from another CA accepted")
	}
}

func TestIssueServer(t *testing.T) {
	c := newCA(t)
	iss, err := c.IssueServer("broker", []string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Certificate())
	for _, host := range []string{"localhost", "127.0.0.1"} {
		if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := identity.FromCertificate(iss.Cert); err == nil {
		t.Error("a server certificate passes as a client identity")
	}
}
