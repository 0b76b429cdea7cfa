package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// DefaultBroker is where notify and status connect unless told otherwise.
const DefaultBroker = "tcp://127.0.0.1:1883"

// ErrBroker wraps failures talking to the MQTT broker.
var ErrBroker = errors.New("mqtt")

// clientID returns a fresh client ID, so two graft-fleet runs never take
// over each other's session.
func clientID(role string) string {
	var b [6]byte
	rand.Read(b[:])
	return "graft-fleet-" + role + "-" + hex.EncodeToString(b[:])
}

// connect opens a clean MQTT session to broker. onConnect, if set, runs on
// every (re)connection, before Connect returns for the first.
func connect(ctx context.Context, broker, role string, reconnect bool, onConnect func(paho.Client)) (paho.Client, error) {
	opts := paho.NewClientOptions().
		AddBroker(broker).
		SetClientID(clientID(role)).
		SetCleanSession(true).
		SetConnectRetry(false).
		SetAutoReconnect(reconnect).
		SetConnectTimeout(10 * time.Second).
		SetOrderMatters(true)
	if onConnect != nil {
		opts.SetOnConnectHandler(onConnect)
	}
	c := paho.NewClient(opts)
	if err := wait(ctx, c.Connect()); err != nil {
		return nil, fmt.Errorf("%w: connect %s: %w", ErrBroker, broker, err)
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
