// Package ca is the fleet's certificate authority: one directory holding
// an ECDSA P-256 CA (ca.crt public, ca.key mode 0600), the index of the
// certificates it issued (index.json) and its revocation list (crl.pem).
//
// Devices and operators get client certificates that carry their
// identity (transport/identity); brokers get server certificates. A key
// is generated here or comes from the holder as a certificate request, so
// a device's private key never has to leave the device (graft-flash
// issues device certificates at the factory with this package).
//
// Brokers trust ca.crt and refuse the serials in crl.pem. Every change to
// the directory happens under an exclusive lock and replaces files
// atomically; a private key is never written with wider permissions than
// 0600, and an existing key is never overwritten.
package ca
