// Package agenttest holds fixtures for the agent's tests: a real TUF
// repository with releases, served over HTTP on 127.0.0.1 (with a throttle
// and a cut switch for download tests), and a provisioned device on the
// simulated board with its trusted root and config.
package agenttest
