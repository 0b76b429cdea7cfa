package mqtt_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
)

func TestMutualTLS(t *testing.T) {
	pki := mqtttest.NewPKI(t)
	b := mqtttest.StartMosquitto(t, mqtttest.WithMutualTLS(pki))
	const dev = "dev-tls"

	cert, key := pki.Client(dev)
	tlsCfg, err := mqtt.TLSConfig(pki.CAFile, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	s, got := startSession(t, mqtt.Config{Broker: b.URL(), DeviceID: dev, TLS: tlsCfg})
	if err := s.WaitConnected(waitCtx(t)); err != nil {
		t.Fatal(err)
	}

	fleetCert, fleetKey := pki.Client("fleet")
	fleetTLS, err := mqtt.TLSConfig(pki.CAFile, fleetCert, fleetKey)
	if err != nil {
		t.Fatal(err)
	}
	f := newFleetTLS(t, b.URL(), "fleet", fleetTLS)
	n := transport.Notice{Release: "v9", Manifest: "releases/v9/manifest.cbor"}
	f.publish(transport.NotifyTopic(dev), mustEncode(t, n), false)
	if g := got.next(t); g != n {
		t.Fatalf("notice over TLS: got %+v, want %+v", g, n)
	}

	// Without a client certificate the broker refuses the device.
	noCert, err := mqtt.TLSConfig(pki.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := startSession(t, mqtt.Config{Broker: b.URL(), DeviceID: "dev-nocert", TLS: noCert})
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := s2.WaitConnected(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("session without client certificate: %v, want no connection", err)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	pki := mqtttest.NewPKI(t)
	cert, key := pki.Client("d")
	tests := []struct {
		name          string
		ca, cert, key string
	}{
		{"missing CA file", "/nonexistent/ca.pem", "", ""},
		{"CA file without a certificate", key, "", ""},
		{"cert without key", pki.CAFile, cert, ""},
		{"key that does not match", pki.CAFile, cert, pki.CAFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := mqtt.TLSConfig(tt.ca, tt.cert, tt.key); !errors.Is(err, mqtt.ErrConfig) {
				t.Fatalf("error %v, want ErrConfig", err)
			}
		})
	}
}
