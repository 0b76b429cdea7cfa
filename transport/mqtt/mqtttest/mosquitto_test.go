package mqtttest

import (
	"net"
	"testing"
)

func TestStartRestartStop(t *testing.T) {
	b := StartMosquitto(t)
	dial := func() error {
		c, err := net.Dial("tcp", b.Addr())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("broker not listening: %v", err)
	}
	b.Restart()
	if err := dial(); err != nil {
		t.Fatalf("broker not listening after restart: %v", err)
	}
	b.Stop()
	if err := dial(); err == nil {
		t.Fatal("broker still listening after Stop")
	}
	b.Stop() // harmless
}
