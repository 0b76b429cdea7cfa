// Package httpfetch downloads over HTTP with resume: it asks for the bytes
// from an offset on, copes with servers that ignore Range, refuses sources
// longer than the caller allows, and reports a transfer cut mid-way as
// ErrInterrupted after having written what arrived, so that the caller can
// journal the new offset and resume later.
//
// No server can hold it forever: connecting, the TLS handshake and the
// response headers each have a timeout, a body that sends nothing for
// StallTimeout is cut (ErrStalled), and the whole fetch has a deadline
// tied to the length it may receive. A transfer cut by the network is
// fetched again from where it stopped, after a jittered back-off, a few
// times before Fetch gives up with ErrInterrupted.
//
// It only moves bytes. It must never decide whether they are right: length
// and hashes are verified by the caller (TUF).
package httpfetch
