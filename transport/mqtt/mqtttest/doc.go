// Package mqtttest starts a real mosquitto broker for tests: a private
// configuration and persistence directory, a free port on 127.0.0.1, and a
// Cleanup that stops it by PID. Restart keeps the port and the persistence
// file, so persistent sessions survive it as they do in production. Proxy
// puts a TCP relay in front of a broker so that a test can cut client
// connections abruptly (the broker then publishes their wills).
//
// It is for tests only and must never be imported by a binary.
package mqtttest
