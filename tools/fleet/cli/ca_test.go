package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/transport/identity"
)

func TestCACommands(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ca")
	out := filepath.Join(t.TempDir(), "out")
	var initOut struct{ CA, CRL string }
	if err := json.Unmarshal([]byte(mustRun(t, "ca", "init", "--dir", dir, "--json")), &initOut); err != nil || initOut.CA != filepath.Join(dir, "ca.crt") {
		t.Fatalf("ca init --json: %+v %v", initOut, err)
	}
	if code, _, stderr := run(t.Context(), "ca", "init", "--dir", dir); code != cli.ExitFailure || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("second ca init: exit %d %q", code, stderr)
	}

	var issued struct{ Kind, Name, Identity, Serial, Cert, Key string }
	if err := json.Unmarshal([]byte(mustRun(t, "ca", "issue", "--dir", dir, "--operator", "vic", "--role", "viewer", "--out", out, "--json")), &issued); err != nil {
		t.Fatal(err)
	}
	if issued.Identity != "operator:vic" || issued.Key != filepath.Join(out, "vic.key") {
		t.Fatalf("issue --json: %+v", issued)
	}
	if fi, err := os.Stat(issued.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode: %v %v", fi.Mode(), err)
	}
	c, err := ca.LoadCertificate(issued.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := identity.FromCertificate(c); err != nil || id.Role != identity.RoleViewer {
		t.Fatalf("operator certificate: %+v %v", id, err)
	}

	// A device key that never leaves the device: a certificate request.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := filepath.Join(t.TempDir(), "d9.csr")
	os.WriteFile(csr, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o644)
	if err := json.Unmarshal([]byte(mustRun(t, "ca", "issue", "--dir", dir, "--device", "d9", "--csr", csr, "--out", out, "--json")), &issued); err != nil {
		t.Fatal(err)
	}
	if issued.Key != "" {
		t.Fatalf("a key was written for a request: %s", issued.Key)
	}
	if _, err := os.Stat(filepath.Join(out, "d9.key")); !os.IsNotExist(err) {
		t.Fatalf("d9.key: %v", err)
	}
	var revoked struct{ Revoked []string }
	if err := json.Unmarshal([]byte(mustRun(t, "ca", "revoke", "--dir", dir, "--serial", issued.Serial, "--json")), &revoked); err != nil || len(revoked.Revoked) != 1 || revoked.Revoked[0] != issued.Serial {
		t.Fatalf("revoke --serial: %+v %v", revoked, err)
	}
	mustRun(t, "ca", "issue", "--dir", dir, "--server", "broker", "--host", "mqtt.example", "--out", out)

	for name, args := range map[string][]string{
		"no kind":           {"ca", "issue", "--dir", dir, "--out", out},
		"two kinds":         {"ca", "issue", "--dir", dir, "--device", "a", "--operator", "b", "--out", out},
		"bad device":        {"ca", "issue", "--dir", dir, "--device", "a/b", "--out", out},
		"bad role":          {"ca", "issue", "--dir", dir, "--operator", "a", "--role", "root", "--out", out},
		"host for device":   {"ca", "issue", "--dir", dir, "--device", "a", "--host", "x", "--out", out},
		"revoke nothing":    {"ca", "revoke", "--dir", dir},
		"revoke bad serial": {"ca", "revoke", "--dir", dir, "--serial", "-3"},
	} {
		if code, _, stderr := run(t.Context(), args...); code != cli.ExitUsage || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d %q", name, code, stderr)
		}
	}
	for name, args := range map[string][]string{
		"again":          {"ca", "issue", "--dir", dir, "--operator", "vic", "--out", out}, // vic.key exists
		"unknown device": {"ca", "revoke", "--dir", dir, "--device", "nobody"},
		"no CA":          {"ca", "issue", "--dir", t.TempDir(), "--device", "a", "--out", out},
	} {
		if code, _, stderr := run(t.Context(), args...); code != cli.ExitFailure || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d %q", name, code, stderr)
		}
	}
	for _, args := range [][]string{{"ca", "--help"}, {"ca", "issue", "--help"}, {"broker-config", "mosquitto", "--help"}} {
		if code, stdout, _ := run(t.Context(), args...); code != cli.ExitOK || stdout == "" {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}
