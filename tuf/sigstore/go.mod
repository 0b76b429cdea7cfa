// Module tuf/sigstore stands in for github.com/sigstore/sigstore (see the
// replace directive in graft's go.mod): the few verifiers and signers
// go-tuf's metadata package calls, written on the standard library, so
// that graft-agent does not link sigstore's protobuf and container-registry
// chain (upstream go-tuf issue 589). docs/tuf.md says what it covers.
module github.com/sigstore/sigstore

go 1.26
