// Package tuf is the device side of graft's The Update Framework (TUF)
// client: it keeps the trusted root, a metadata cache and a time floor in
// one directory, refreshes the metadata and walks delegations with
// go-tuf/v2's metadata/updater (from an HTTP(S) repository or from a local
// directory such as a USB stick, with the same checks), and streams target
// files into a partial file while checking their length and hashes,
// renaming it to its destination only once they match.
//
// Everything the agent installs passes through here, so the package refuses
// rather than guesses: expired, rolled-back, mixed-and-matched or wrongly
// signed metadata, and targets whose bytes do not match the signed length
// and hashes, come back as errors that callers test with errors.Is against
// the sentinels in errors.go (the go-tuf error stays wrapped underneath).
//
// It must never hand out, or put under a target's name, a file before its
// length and every hash have been checked, never read more than a target's signed length plus
// the one byte that proves it too long, never hold a whole image in memory,
// and never import graft's transport packages: the agent's resumable HTTP
// fetcher plugs in through the Fetcher interface.
package tuf
