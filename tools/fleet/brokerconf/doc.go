// Package brokerconf writes configurations for external MQTT brokers that
// enforce the fleet's access rules (transport/identity.Allowed) with the
// fleet CA's certificates: for now mosquitto 2.x.
//
// The rules become the broker's own configuration language; what that
// language cannot express is listed in docs/security.md, not papered
// over. Generating a configuration is pure (Mosquitto returns file
// contents); writing them is the caller's.
package brokerconf
