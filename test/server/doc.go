// Package server tests graft-agent on a plain Debian host, the way
// docs/server.md sets it up: the debian-server board (live patches only,
// no A/B slots), `graft-agent init` with the fleet's TUF root, the
// systemd unit, and the real agent process against a real mosquitto and a
// real TUF repository, live-patching a running process.
package server
