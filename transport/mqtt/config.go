package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/graft-dev/graft/transport"
)

// Queue is the durable queue of encoded status events (transport.Status)
// that the session delivers; agent/outbox implements it.
type Queue interface {
	Next() (id string, payload []byte, ok bool, err error) // oldest not yet delivered
	Done(id string) error                                  // delivered (PUBACK received)
}

// Config configures a Session.
type Config struct {
	Broker             string        // tcp://host:port, ssl://host:port (or mqtts://)
	DeviceID           string        // also the MQTT client ID
	Groups             []string      // group notify topics to follow
	TLS                *tls.Config   // nil: plain TCP (or system roots for ssl://)
	Username, Password string        // optional
	KeepAlive          time.Duration // default 30s
	ReconnectMin       time.Duration // default 1s
	ReconnectMax       time.Duration // default 60s
	Outbox             Queue         // status events to deliver; nil: none
	// Inventory, if set, is published retained on every connect, after
	// online=true (transport.InventoryTopic). Device is filled in.
	Inventory *transport.Inventory
	// OnNotice is called from one goroutine, in arrival order, and must not
	// block long. The same notice can come more than once (a retained
	// notice is resent on each subscribe, QoS 1 may redeliver): treat it as
	// idempotent.
	OnNotice func(transport.Notice)
	Logger   *slog.Logger   // nil: discard
	Rand     func() float64 // jitter source in [0, 1); nil: math/rand/v2
}

// ErrConfig reports a Config that Start refuses, or unusable TLS files.
var ErrConfig = errors.New("mqtt: invalid config")

// Defaults for zero Config durations.
const (
	DefaultKeepAlive    = 30 * time.Second
	DefaultReconnectMin = time.Second
	DefaultReconnectMax = 60 * time.Second
)

// check validates c and fills in defaults.
func (c *Config) check() error {
	if err := transport.ValidID(c.DeviceID); err != nil {
		return fmt.Errorf("%w: device ID: %w", ErrConfig, err)
	}
	for _, g := range c.Groups {
		if err := transport.ValidID(g); err != nil {
			return fmt.Errorf("%w: group: %w", ErrConfig, err)
		}
	}
	u, err := url.Parse(c.Broker)
	if err != nil {
		return fmt.Errorf("%w: broker: %w", ErrConfig, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: broker %q has no host", ErrConfig, c.Broker)
	}
	switch u.Scheme {
	case "tcp", "mqtt":
		if c.TLS != nil {
			return fmt.Errorf("%w: TLS configured but broker %q is plain TCP (use ssl:// or mqtts://)", ErrConfig, c.Broker)
		}
	case "ssl", "tls", "mqtts":
	default:
		return fmt.Errorf("%w: broker scheme %q is not tcp, mqtt, ssl, tls or mqtts", ErrConfig, u.Scheme)
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMax < c.ReconnectMin {
		return fmt.Errorf("%w: reconnect max %v below min %v", ErrConfig, c.ReconnectMax, c.ReconnectMin)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Rand == nil {
		c.Rand = randFloat
	}
	return nil
}

// TLSConfig builds a client TLS configuration: the CA file's certificates
// as roots (system roots when caFile is empty) and, when certFile and
// keyFile are given, the device's client certificate for mutual TLS.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%w: client certificate and key must be given together", ErrConfig)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %w", ErrConfig, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
