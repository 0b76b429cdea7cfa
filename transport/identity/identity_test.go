package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"
)

func mustDevice(t *testing.T, id string) Identity {
	t.Helper()
	i, err := NewDevice(id)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func mustOperator(t *testing.T, name string, r Role) Identity {
	t.Helper()
	i, err := NewOperator(name, r)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestAllowed(t *testing.T) {
	a := mustDevice(t, "dev-a")
	admin := mustOperator(t, "alice", RoleAdmin)
	viewer := mustOperator(t, "vic", RoleViewer)
	tests := []struct {
		name   string
		id     Identity
		topic  string
		access Access
		want   bool
	}{
		{"device own notify", a, "graft/v1/dev/dev-a/notify", Subscribe, true},
		{"device group notify", a, "graft/v1/group/canary/notify", Subscribe, true},
		{"device other's notify", a, "graft/v1/dev/dev-b/notify", Subscribe, false},
		{"device wildcard notify", a, "graft/v1/dev/+/notify", Subscribe, false},
		{"device group wildcard", a, "graft/v1/group/+/notify", Subscribe, false},
		{"device everything", a, "#", Subscribe, false},
		{"device graft everything", a, "graft/v1/#", Subscribe, false},
		{"device reads own status", a, "graft/v1/dev/dev-a/status", Subscribe, false},
		{"device reads other status", a, "graft/v1/dev/dev-b/status", Subscribe, false},
		{"device own status", a, "graft/v1/dev/dev-a/status", Publish, true},
		{"device own telemetry", a, "graft/v1/dev/dev-a/telemetry", Publish, true},
		{"device own online", a, "graft/v1/dev/dev-a/online", Publish, true},
		{"device as other", a, "graft/v1/dev/dev-b/status", Publish, false},
		{"device other online", a, "graft/v1/dev/dev-b/online", Publish, false},
		{"device own notice", a, "graft/v1/dev/dev-a/notify", Publish, false},
		{"device group notice", a, "graft/v1/group/canary/notify", Publish, false},
		{"device unknown kind", a, "graft/v1/dev/dev-a/other", Publish, false},
		{"device outside graft", a, "other/topic", Publish, false},
		{"device sys", a, "$SYS/broker/clients/total", Subscribe, false},
		{"admin device notice", admin, "graft/v1/dev/dev-b/notify", Publish, true},
		{"admin group notice", admin, "graft/v1/group/canary/notify", Publish, true},
		{"admin wildcard notice", admin, "graft/v1/dev/+/notify", Publish, false},
		{"admin bad group", admin, "graft/v1/group/../notify", Publish, false},
		{"admin forges status", admin, "graft/v1/dev/dev-b/status", Publish, false},
		{"admin follows status", admin, "graft/v1/dev/+/status", Subscribe, true},
		{"admin all graft", admin, "graft/v1/#", Subscribe, true},
		{"admin outside graft", admin, "#", Subscribe, false},
		{"viewer status all", viewer, "graft/v1/dev/+/status", Subscribe, true},
		{"viewer online one", viewer, "graft/v1/dev/dev-a/online", Subscribe, true},
		{"viewer telemetry", viewer, "graft/v1/dev/+/telemetry", Subscribe, true},
		{"viewer notify", viewer, "graft/v1/dev/+/notify", Subscribe, false},
		{"viewer everything", viewer, "graft/v1/#", Subscribe, false},
		{"viewer publishes notice", viewer, "graft/v1/dev/dev-a/notify", Publish, false},
		{"invalid identity", Identity{Kind: Device, Name: "+"}, "graft/v1/dev/+/status", Publish, false},
		{"zero identity", Identity{}, "graft/v1/dev/x/notify", Subscribe, false},
		{"operator without role", Identity{Kind: Operator, Name: "x"}, "graft/v1/dev/x/notify", Publish, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Allowed(tt.id, tt.topic, tt.access); got != tt.want {
				t.Errorf("Allowed(%v, %q, %v) = %v, want %v", tt.id, tt.topic, tt.access, got, tt.want)
			}
		})
	}
}

func TestIdentityCheck(t *testing.T) {
	for _, bad := range []Identity{
		{Kind: Device, Name: ""},
		{Kind: Device, Name: "a/b"},
		{Kind: Device, Name: "a:b"},
		{Kind: Device, Name: "a", Role: RoleAdmin},
		{Kind: Operator, Name: "a", Role: "root"},
		{Kind: 9, Name: "a"},
	} {
		if err := bad.Check(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if s := mustOperator(t, "alice", RoleViewer).String(); s != "operator:alice" {
		t.Errorf("operator String = %q", s)
	}
}

func certFor(t *testing.T, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertificateRoundTrip(t *testing.T) {
	for _, id := range []Identity{mustDevice(t, "d1"), mustOperator(t, "alice", RoleAdmin), mustOperator(t, "vic", RoleViewer)} {
		c := certFor(t, id.Apply)
		got, err := FromCertificate(c)
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		if got != id {
			t.Errorf("FromCertificate = %+v, want %+v", got, id)
		}
	}
}

func TestFromCertificateRefuses(t *testing.T) {
	dev := mustDevice(t, "d1")
	op := mustOperator(t, "alice", RoleAdmin)
	urn := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	tests := map[string]func(*x509.Certificate){
		"no identity":    func(c *x509.Certificate) { dev.Apply(c); c.URIs = nil },
		"two identities": func(c *x509.Certificate) { dev.Apply(c); c.URIs = append(c.URIs, urn("urn:graft:device:d2")) },
		"device and operator": func(c *x509.Certificate) {
			dev.Apply(c)
			c.URIs = append(c.URIs, op.URIs()...)
		},
		"common name differs": func(c *x509.Certificate) { dev.Apply(c); c.Subject.CommonName = "d2" },
		"operator cn as device": func(c *x509.Certificate) {
			op.Apply(c)
			c.Subject.CommonName = "alice"
		},
		"operator no role":  func(c *x509.Certificate) { op.Apply(c); c.URIs = c.URIs[:1] },
		"operator bad role": func(c *x509.Certificate) { op.Apply(c); c.URIs[1] = urn("urn:graft:role:root") },
		"device with role":  func(c *x509.Certificate) { dev.Apply(c); c.URIs = append(c.URIs, urn("urn:graft:role:admin")) },
		"invalid device id": func(c *x509.Certificate) { c.Subject.CommonName = "+"; c.URIs = []*url.URL{urn("urn:graft:device:+")} },
		"server certificate": func(c *x509.Certificate) {
			dev.Apply(c)
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		},
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			if id, err := FromCertificate(certFor(t, edit)); !errors.Is(err, ErrInvalid) {
				t.Errorf("FromCertificate = %+v, %v; want ErrInvalid", id, err)
			}
		})
	}
}

// FuzzAllowed checks the rules that must hold for any topic: a device
// never publishes a notice or anything outside its own topics, and
// nobody is granted a topic outside graft's prefix.
func FuzzAllowed(f *testing.F) {
	for _, s := range []string{"graft/v1/dev/d1/notify", "graft/v1/dev/d1/status", "graft/v1/group/g/notify", "#", "graft/v1/dev/d2/online", "graft/v1/dev/d1/status/x"} {
		f.Add(s)
	}
	dev := Identity{Kind: Device, Name: "d1"}
	ids := []Identity{dev, {Kind: Operator, Name: "o", Role: RoleAdmin}, {Kind: Operator, Name: "o", Role: RoleViewer}}
	f.Fuzz(func(t *testing.T, topic string) {
		for _, id := range ids {
			for _, a := range []Access{Publish, Subscribe} {
				if Allowed(id, topic, a) && len(topic) < len("graft/v1/") || Allowed(id, topic, a) && topic[:9] != "graft/v1/" {
					t.Fatalf("%v %v %q allowed outside the prefix", id, a, topic)
				}
			}
		}
		if Allowed(dev, topic, Publish) {
			if topic != "graft/v1/dev/d1/status" && topic != "graft/v1/dev/d1/telemetry" && topic != "graft/v1/dev/d1/online" {
				t.Fatalf("device may publish %q", topic)
			}
		}
	})
}
