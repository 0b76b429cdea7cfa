// Package options makes signature.LoadOption values: the hash a signer or
// verifier uses, and RSASSA-PSS for RSA keys.
package options

import (
	"crypto"
	"crypto/rsa"
)

type load struct {
	hash *crypto.Hash
	pss  *rsa.PSSOptions
}

func (l load) ApplyHash(h *crypto.Hash) {
	if l.hash != nil {
		*h = *l.hash
	}
}

func (load) ApplyED25519ph(*bool) {}

func (l load) ApplyRSAPSS(o **rsa.PSSOptions) {
	if l.pss != nil {
		*o = l.pss
	}
}

// WithHash sets the hash function.
func WithHash(h crypto.Hash) load { return load{hash: &h} }

// WithRSAPSS makes RSA keys sign and verify RSASSA-PSS with these options.
func WithRSAPSS(o *rsa.PSSOptions) load { return load{pss: o} }
