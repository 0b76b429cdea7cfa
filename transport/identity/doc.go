// Package identity is who a fleet client is and what it may do on the
// wire: a device (its device ID) or an operator (a name and a role), read
// from the client certificate the fleet CA issued, and the broker's access
// rules as one pure function, Allowed.
//
// The identity's String is the MQTT user name and client ID the broker
// expects. Device IDs never contain ':' (transport.ValidID), so an
// operator's "operator:NAME" can never be mistaken for a device.
//
// The package does no I/O and never decides trust: the TLS layer verifies
// the certificate chain and revocation before FromCertificate reads it.
package identity
