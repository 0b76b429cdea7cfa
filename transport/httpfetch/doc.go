// Package httpfetch downloads over HTTP with resume: it asks for the bytes
// from an offset on, copes with servers that ignore Range, refuses sources
// longer than the caller allows, and reports a transfer cut mid-way as
// ErrInterrupted after having written what arrived, so that the caller can
// journal the new offset and resume later.
//
// It only moves bytes. It must never decide whether they are right: length
// and hashes are verified by the caller (TUF), and it never retries on its
// own.
package httpfetch
