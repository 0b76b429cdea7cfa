package brokerconf

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/identity"
)

// Operator is an operator the broker lets in, with its role.
type Operator struct {
	Name string
	Role identity.Role
}

// MosquittoParams say where mosquitto listens and finds its files.
type MosquittoParams struct {
	Bind      string // listen address; "" means all addresses
	Port      int    // TLS listener port
	CAFile    string // the fleet CA certificate (absolute path)
	CRLFile   string // the fleet CA's revocation list (absolute path)
	CertFile  string // the broker's certificate and key
	KeyFile   string
	ACLFile   string // where the ACL file will be written (absolute path)
	DataDir   string // persistence directory (absolute path; sessions and retained messages survive restarts)
	MaxPacket int    // max_packet_size; 0 means transport.MaxPayload + 1024
	Operators []Operator
}

// MosquittoFiles is a generated configuration.
type MosquittoFiles struct {
	Conf string // mosquitto.conf
	ACL  string // the acl_file
}

// Mosquitto generates a mosquitto 2.x configuration: one TLS listener that
// requires a client certificate from the fleet CA and checks its CRL,
// takes the certificate's common name as the user name and as the client
// ID, refuses packets over MaxPacket, and an ACL file with the rules of
// identity.Allowed: patterns on %u for devices, a user section for each
// operator.
func Mosquitto(p MosquittoParams) (MosquittoFiles, error) {
	if p.Port <= 0 || p.Port > 65535 {
		return MosquittoFiles{}, fmt.Errorf("brokerconf: port %d", p.Port)
	}
	if p.Bind != "" && net.ParseIP(p.Bind) == nil {
		return MosquittoFiles{}, fmt.Errorf("brokerconf: bind address %q is not an IP address", p.Bind)
	}
	for _, f := range []string{p.CAFile, p.CRLFile, p.CertFile, p.KeyFile, p.ACLFile, p.DataDir} {
		if f == "" || !strings.HasPrefix(f, "/") || strings.ContainsAny(f, "\n\r") {
			return MosquittoFiles{}, fmt.Errorf("brokerconf: file path %q must be absolute", f)
		}
	}
	maxPacket := p.MaxPacket
	if maxPacket == 0 {
		maxPacket = transport.MaxPayload + 1024
	}
	var c strings.Builder
	c.WriteString("# Written by graft-fleet broker-config mosquitto: the fleet's access rules\n")
	c.WriteString("# (docs/security.md). Send SIGHUP after ca revoke to reload crl.pem and the ACL.\n")
	c.WriteString("per_listener_settings false\nallow_anonymous false\n")
	fmt.Fprintf(&c, "max_packet_size %d\n", maxPacket)
	fmt.Fprintf(&c, "acl_file %s\n", p.ACLFile)
	c.WriteString("# Devices keep persistent sessions: their subscriptions and queued notices\n")
	c.WriteString("# survive a broker restart.\n")
	fmt.Fprintf(&c, "persistence true\npersistence_location %s/\n\n", strings.TrimSuffix(p.DataDir, "/"))
	listen := strconv.Itoa(p.Port)
	if p.Bind != "" {
		listen += " " + p.Bind
	}
	fmt.Fprintf(&c, "listener %s\n", listen)
	fmt.Fprintf(&c, "cafile %s\ncrlfile %s\ncertfile %s\nkeyfile %s\n", p.CAFile, p.CRLFile, p.CertFile, p.KeyFile)
	c.WriteString("tls_version tlsv1.2\n")
	c.WriteString("require_certificate true\n")
	c.WriteString("# The certificate's common name (the device ID, or operator:NAME) is the\n")
	c.WriteString("# user name, and replaces whatever client ID the client sent.\n")
	c.WriteString("use_identity_as_username true\nuse_username_as_clientid true\n")

	var a strings.Builder
	a.WriteString("# Written by graft-fleet broker-config mosquitto (docs/security.md).\n")
	a.WriteString("# Devices: the user name is the device ID.\n")
	fmt.Fprintf(&a, "pattern read %sdev/%%u/%s\n", transport.Prefix, transport.KindNotify)
	for _, k := range transport.ReportKinds {
		fmt.Fprintf(&a, "pattern write %sdev/%%u/%s\n", transport.Prefix, k)
	}
	a.WriteString("# Any group's notices (a group is the device's own choice; see docs/security.md).\n")
	fmt.Fprintf(&a, "pattern read %sgroup/+/%s\n", transport.Prefix, transport.KindNotify)
	for _, op := range p.Operators {
		id, err := identity.NewOperator(op.Name, op.Role)
		if err != nil {
			return MosquittoFiles{}, err
		}
		fmt.Fprintf(&a, "\nuser %s\n", id)
		switch op.Role {
		case identity.RoleAdmin:
			fmt.Fprintf(&a, "topic read %s#\n", transport.Prefix)
			fmt.Fprintf(&a, "topic write %sdev/+/%s\n", transport.Prefix, transport.KindNotify)
			fmt.Fprintf(&a, "topic write %sgroup/+/%s\n", transport.Prefix, transport.KindNotify)
		case identity.RoleViewer:
			for _, k := range transport.ReportKinds {
				fmt.Fprintf(&a, "topic read %s\n", transport.DeviceFilter(k))
			}
		}
	}
	return MosquittoFiles{Conf: c.String(), ACL: a.String()}, nil
}
