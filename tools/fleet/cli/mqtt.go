package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport/identity"
	"github.com/graft-dev/graft/transport/mqtt"
)

// DefaultBroker is where notify and status connect unless told otherwise.
const DefaultBroker = "tcp://127.0.0.1:1883"

// Environment variables that give the MQTT commands' broker settings
// when the flags do not.
const (
	EnvBroker = "GRAFT_FLEET_BROKER"
	EnvCA     = "GRAFT_FLEET_CA"
	EnvCert   = "GRAFT_FLEET_CERT"
	EnvKey    = "GRAFT_FLEET_KEY"
)

// ErrBroker wraps failures talking to the MQTT broker.
var ErrBroker = errors.New("mqtt")

// brokerFlags are the flags of every command that talks MQTT.
type brokerFlags struct {
	url, ca, cert, key *string
}

func addBrokerFlags(fs *flag.FlagSet) brokerFlags {
	def := func(env, fallback string) string {
		if v := os.Getenv(env); v != "" {
			return v
		}
		return fallback
	}
	return brokerFlags{
		url:  fs.String("broker", def(EnvBroker, DefaultBroker), "MQTT broker `URL`: tcp://host:port, or ssl://host:port with --ca/--cert/--key (env "+EnvBroker+")"),
		ca:   fs.String("ca", def(EnvCA, ""), "`FILE`: CA certificate the broker's certificate must chain to, e.g. the fleet's ca.crt (env "+EnvCA+")"),
		cert: fs.String("cert", def(EnvCert, ""), "operator certificate `FILE` from graft-fleet ca issue --operator (env "+EnvCert+")"),
		key:  fs.String("key", def(EnvKey, ""), "operator key `FILE` (env "+EnvKey+")"),
	}
}

// clientID returns a fresh client ID, so two graft-fleet runs never take
// over each other's session.
func clientID(role string) string {
	var b [6]byte
	rand.Read(b[:])
	return "graft-fleet-" + role + "-" + hex.EncodeToString(b[:])
}

// session settings: a TLS configuration (nil for plain TCP) and the
// client ID: the certificate's identity, which brokers enforcing the
// fleet's rules require, or a fresh one without a certificate.
func (b brokerFlags) session(role string) (*tls.Config, string, error) {
	if *b.ca == "" && *b.cert == "" && *b.key == "" {
		return nil, clientID(role), nil
	}
	cfg, err := mqtt.TLSConfig(*b.ca, *b.cert, *b.key)
	if err != nil {
		return nil, "", usagef("%v", err)
	}
	if *b.cert == "" {
		return cfg, clientID(role), nil
	}
	c, err := ca.LoadCertificate(*b.cert)
	if err != nil {
		return nil, "", usagef("--cert: %v", err)
	}
	id, err := identity.FromCertificate(c)
	if err != nil {
		return nil, "", usagef("--cert: %v", err)
	}
	return cfg, id.String(), nil
}

// connect opens a clean MQTT session to the broker. onConnect, if set,
// runs on every (re)connection, before Connect returns for the first.
func connect(ctx context.Context, b brokerFlags, role string, reconnect bool, onConnect func(paho.Client)) (paho.Client, error) {
	tlsCfg, id, err := b.session(role)
	if err != nil {
		return nil, err
	}
	opts := paho.NewClientOptions().
		AddBroker(*b.url).
		SetClientID(id).
		SetCleanSession(true).
		SetConnectRetry(false).
		SetAutoReconnect(reconnect).
		SetConnectTimeout(10 * time.Second).
		SetOrderMatters(true)
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	if onConnect != nil {
		opts.SetOnConnectHandler(onConnect)
	}
	c := paho.NewClient(opts)
	if err := wait(ctx, c.Connect()); err != nil {
		return nil, fmt.Errorf("%w: connect %s as %s: %w", ErrBroker, *b.url, id, err)
	}
	return c, nil
}

// wait waits for a paho token or for ctx.
func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
