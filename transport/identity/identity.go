package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/graft-dev/graft/transport"
)

// Kind says whether an identity is a device or an operator.
type Kind int

// The kinds of identity.
const (
	Device Kind = iota + 1
	Operator
)

func (k Kind) String() string {
	switch k {
	case Device:
		return "device"
	case Operator:
		return "operator"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Role is what an operator may do.
type Role string

// Operator roles.
const (
	// RoleAdmin publishes and clears release notices and reads every graft
	// topic.
	RoleAdmin Role = "admin"
	// RoleViewer reads the devices' status, online and telemetry topics and
	// publishes nothing.
	RoleViewer Role = "viewer"
)

// Roles lists the known operator roles.
var Roles = []Role{RoleAdmin, RoleViewer}

// OperatorPrefix starts an operator's user name and client ID.
const OperatorPrefix = "operator:"

// URI forms carried as subject alternative names.
const (
	uriDevice   = "urn:graft:device:"
	uriOperator = "urn:graft:operator:"
	uriRole     = "urn:graft:role:"
)

// ErrInvalid reports an identity or certificate that does not name exactly
// one valid device or operator.
var ErrInvalid = errors.New("identity: invalid")

// Identity is a device or an operator.
type Identity struct {
	Kind Kind
	Name string // device ID, or operator name (transport.ValidID both)
	Role Role   // operators only
}

// NewDevice is the identity of device id.
func NewDevice(id string) (Identity, error) {
	i := Identity{Kind: Device, Name: id}
	return i, i.Check()
}

// NewOperator is the identity of operator name with role.
func NewOperator(name string, role Role) (Identity, error) {
	i := Identity{Kind: Operator, Name: name, Role: role}
	return i, i.Check()
}

// Check reports whether i is a valid identity.
func (i Identity) Check() error {
	if err := transport.ValidID(i.Name); err != nil {
		return fmt.Errorf("%w: %s name: %w", ErrInvalid, i.Kind, err)
	}
	switch i.Kind {
	case Device:
		if i.Role != "" {
			return fmt.Errorf("%w: device %s has a role", ErrInvalid, i.Name)
		}
	case Operator:
		if !slices.Contains(Roles, i.Role) {
			return fmt.Errorf("%w: operator %s: unknown role %q (admin, viewer)", ErrInvalid, i.Name, i.Role)
		}
	default:
		return fmt.Errorf("%w: %s", ErrInvalid, i.Kind)
	}
	return nil
}

// String is the identity's MQTT user name and client ID: the device ID, or
// "operator:NAME".
func (i Identity) String() string {
	if i.Kind == Operator {
		return OperatorPrefix + i.Name
	}
	return i.Name
}

// URIs are the subject alternative names that carry i in a certificate.
func (i Identity) URIs() []*url.URL {
	if i.Kind == Operator {
		return []*url.URL{
			{Scheme: "urn", Opaque: strings.TrimPrefix(uriOperator, "urn:") + i.Name},
			{Scheme: "urn", Opaque: strings.TrimPrefix(uriRole, "urn:") + string(i.Role)},
		}
	}
	return []*url.URL{{Scheme: "urn", Opaque: strings.TrimPrefix(uriDevice, "urn:") + i.Name}}
}

// Apply writes i into a certificate template: the common name is String()
// (what brokers take as the user name) and the URIs carry the kind, name
// and role. It also makes the certificate a TLS client certificate.
func (i Identity) Apply(tmpl *x509.Certificate) {
	tmpl.Subject.CommonName = i.String()
	tmpl.URIs = i.URIs()
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
}

// FromCertificate reads the identity a fleet certificate carries. It
// checks the certificate's content only: exactly one device or operator
// URI, a role for an operator, a common name equal to String(), and TLS
// client use. Verifying the chain is the caller's job.
func FromCertificate(c *x509.Certificate) (Identity, error) {
	var (
		id    Identity
		roles []string
		n     int
	)
	for _, u := range c.URIs {
		s := u.String()
		switch {
		case strings.HasPrefix(s, uriDevice):
			id, n = Identity{Kind: Device, Name: strings.TrimPrefix(s, uriDevice)}, n+1
		case strings.HasPrefix(s, uriOperator):
			id, n = Identity{Kind: Operator, Name: strings.TrimPrefix(s, uriOperator)}, n+1
		case strings.HasPrefix(s, uriRole):
			roles = append(roles, strings.TrimPrefix(s, uriRole))
		}
	}
	if n != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %q names %d graft identities, want 1", ErrInvalid, c.Subject.CommonName, n)
	}
	if id.Kind == Operator {
		if len(roles) != 1 {
			return Identity{}, fmt.Errorf("%w: operator certificate %q has %d roles, want 1", ErrInvalid, c.Subject.CommonName, len(roles))
		}
		id.Role = Role(roles[0])
	} else if len(roles) != 0 {
		return Identity{}, fmt.Errorf("%w: device certificate %q has a role", ErrInvalid, c.Subject.CommonName)
	}
	if err := id.Check(); err != nil {
		return Identity{}, err
	}
	if c.Subject.CommonName != id.String() {
		return Identity{}, fmt.Errorf("%w: common name %q is not %q", ErrInvalid, c.Subject.CommonName, id.String())
	}
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return Identity{}, fmt.Errorf("%w: certificate %q is not for TLS clients", ErrInvalid, c.Subject.CommonName)
	}
	return id, nil
}
