package provision_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/provision"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/transport/identity"
	"github.com/graft-dev/graft/transport/serialframe"
)

func newProvisioner(t *testing.T) (*provision.Provisioner, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := boards.Builtin().Lookup("sim")
	if err != nil {
		t.Fatal(err)
	}
	p, err := provision.New(provision.Options{Board: b.WithDefaults().Resolve(dir), DataDir: dir, Facts: provision.Facts{Serial: "s1"}})
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func code(err error) string {
	var re *serialframe.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func TestIdentityStepsAndRefusals(t *testing.T) {
	p, dir := newProvisioner(t)
	h, err := p.Hello()
	if err != nil || h.State != provision.StateBlank || h.Serial != "s1" || h.Proto != provision.Proto {
		t.Fatalf("hello %+v %v", h, err)
	}
	// Out of order and malformed requests change nothing.
	if err := p.Install(provision.InstallRequest{}); code(err) != provision.CodeBadRequest {
		t.Fatalf("install first: %v", err)
	}
	if _, err := p.Finish(); code(err) != provision.CodeBadRequest {
		t.Fatalf("finish first: %v", err)
	}
	if _, err := p.Identity(provision.IdentityRequest{ID: "bad/id"}); code(err) != provision.CodeBadRequest {
		t.Fatalf("bad id: %v", err)
	}
	if _, err := p.Handle(context.Background(), provision.TypeIdentity, []byte{0xff}); code(err) != provision.CodeBadRequest {
		t.Fatalf("malformed body: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, provision.KeyFile)); err == nil {
		t.Fatal("a refused request made a key")
	}

	// identity twice: the same key (the CSR's public key), no new one.
	r1, err := p.Identity(provision.IdentityRequest{ID: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p.Identity(provision.IdentityRequest{ID: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := x509.ParseCertificateRequest(r1.CSR)
	c2, _ := x509.ParseCertificateRequest(r2.CSR)
	if !c1.PublicKey.(*ecdsa.PublicKey).Equal(c2.PublicKey) {
		t.Error("identity asked again made a new key")
	}
	// Another ID while under way needs force.
	if _, err := p.Identity(provision.IdentityRequest{ID: "dev-2"}); code(err) != provision.CodeProvisioned {
		t.Fatalf("other ID: %v", err)
	}

	// A certificate for another key, or another ID, is refused.
	caPEM, sign := testCA(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrongKey := sign("dev-1", &other.PublicKey)
	conf := []byte("[device]\nid = x\nboard = sim\n[mqtt]\nbroker = tcp://127.0.0.1:1\n[tuf]\nmetadata_url = http://127.0.0.1:1/m\ntargets_url = http://127.0.0.1:1/t\n")
	if err := p.Install(provision.InstallRequest{Cert: wrongKey, Config: conf, BrokerCA: caPEM}); code(err) != provision.CodeMismatch {
		t.Fatalf("certificate for another key: %v", err)
	}
	if err := p.Install(provision.InstallRequest{Cert: sign("dev-9", c2.PublicKey), Config: conf, BrokerCA: caPEM}); code(err) != provision.CodeMismatch {
		t.Fatalf("certificate for another ID: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, provision.CertFile)); err == nil {
		t.Fatal("a refused certificate was installed")
	}
	st, _ := provision.ReadState(dir)
	if st.Step != provision.StepIdentity {
		t.Fatalf("state after refusals: %+v", st)
	}
}

func TestCorruptState(t *testing.T) {
	p, dir := newProvisioner(t)
	os.WriteFile(filepath.Join(dir, provision.StateFile), []byte("{"), 0o600)
	if _, err := provision.ReadState(dir); !errors.Is(err, provision.ErrCorruptState) {
		t.Fatalf("ReadState: %v", err)
	}
	if _, err := p.Hello(); code(err) != provision.CodeInternal {
		t.Fatalf("hello on a corrupt state: %v", err)
	}
}

// testCA is a throwaway CA: its PEM certificate, and a function that
// signs a device certificate for id and pub.
func testCA(t *testing.T) ([]byte, func(id string, pub any) []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(der)
	n := int64(1)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), func(id string, pub any) []byte {
		n++
		dev, err := identity.NewDevice(id)
		if err != nil {
			t.Fatal(err)
		}
		c := &x509.Certificate{SerialNumber: big.NewInt(n), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		dev.Apply(c)
		d, err := x509.CreateCertificate(rand.Reader, c, caCert, pub, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
}
