// Package serve runs the fleet's bench services in one process: an
// embedded MQTT broker (mochi-mqtt) that devices and graft-fleet talk
// through, and an HTTP server that serves a TUF repository's metadata and
// targets, with Range requests so devices can resume downloads.
//
// It serves files; it must never sign, write or change the repository,
// and it must never decide what a device installs (MQTT carries hints
// only; trust comes from TUF). Both listeners default to loopback: the
// broker allows every client, so it must never be exposed on a network
// without an authenticating broker in front.
package serve
