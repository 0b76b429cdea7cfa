package brokerconf

import (
	"strings"
	"testing"

	"github.com/graft-dev/graft/transport/identity"
)

func params() MosquittoParams {
	return MosquittoParams{
		Port: 8883, CAFile: "/ca/ca.crt", CRLFile: "/ca/crl.pem", CertFile: "/m/broker.crt", KeyFile: "/m/broker.key",
		ACLFile: "/m/acl", DataDir: "/m/data",
		Operators: []Operator{{Name: "alice", Role: identity.RoleAdmin}, {Name: "vic", Role: identity.RoleViewer}},
	}
}

// The generated files are run by real mosquitto in tools/fleet/cli's
// security tests; this checks the refusals and the operator sections.
func TestMosquitto(t *testing.T) {
	f, err := Mosquitto(params())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"require_certificate true", "use_identity_as_username true", "use_username_as_clientid true", "crlfile /ca/crl.pem", "max_packet_size 66560", "allow_anonymous false"} {
		if !strings.Contains(f.Conf, want+"\n") {
			t.Errorf("mosquitto.conf lacks %q", want)
		}
	}
	for _, want := range []string{"user operator:alice\ntopic read graft/v1/#\n", "user operator:vic\ntopic read graft/v1/dev/+/status\n", "pattern write graft/v1/dev/%u/status\n"} {
		if !strings.Contains(f.ACL, want) {
			t.Errorf("acl lacks %q", want)
		}
	}
	if strings.Contains(f.ACL, "user operator:vic\ntopic write") {
		t.Error("a viewer may write")
	}
	for name, edit := range map[string]func(*MosquittoParams){
		"port":          func(p *MosquittoParams) { p.Port = 0 },
		"relative path": func(p *MosquittoParams) { p.CRLFile = "crl.pem" },
		"newline":       func(p *MosquittoParams) { p.ACLFile = "/m/acl\nallow_anonymous true" },
		"bind":          func(p *MosquittoParams) { p.Bind = "localhost" },
		"operator":      func(p *MosquittoParams) { p.Operators = []Operator{{Name: "a b", Role: identity.RoleAdmin}} },
		"role":          func(p *MosquittoParams) { p.Operators = []Operator{{Name: "a", Role: "root"}} },
	} {
		p := params()
		edit(&p)
		if _, err := Mosquitto(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
