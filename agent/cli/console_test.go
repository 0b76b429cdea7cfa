package cli_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/cli"
	"github.com/graft-dev/graft/agent/console"
	"github.com/graft-dev/graft/agent/serialtty/serialttytest"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/identity"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/transport/serialframe"
	"github.com/graft-dev/graft/tuf/repo"
)

// ptyMaster is the technician's end of the device's console: the master of
// a pty whose slave the agent opens as its [console] tty. Reads between two
// agent runs (no slave open: EIO) wait for the next one, as a USB-serial
// adapter stays plugged while the board reboots.
type ptyMaster struct{ f *os.File }

func (m ptyMaster) Write(p []byte) (int, error) { return m.f.Write(p) }
func (m ptyMaster) Read(p []byte) (int, error) {
	for {
		n, err := m.f.Read(p)
		if errors.Is(err, syscall.EIO) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return n, err
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConsoleRollbackEndToEnd: a device on the simulated board commits v2
// over MQTT and TUF; a technician on its serial console (a real pty) sees
// the status, is refused a rollback without a token and with one signed by
// a viewer, unlocks with an admin operator's token, rolls back, the board
// boots the old slot, and the fleet receives the audit event.
func TestConsoleRollbackEndToEnd(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	r := agenttest.NewRepo(t, repo.Options{})
	r.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 1<<20)})
	dev := agenttest.NewDevice(t, r, "con-1", agenttest.DeviceOptions{Broker: broker.URL()})
	fleet := agenttest.Watch(t, broker.URL())

	fleetCA, err := ca.Init(t.TempDir(), ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	operator := func(name string, role identity.Role) (*x509.Certificate, *ecdsa.PrivateKey) {
		id, err := identity.NewOperator(name, role)
		if err != nil {
			t.Fatal(err)
		}
		iss, err := fleetCA.IssueNewKey(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(iss.KeyPEM)
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			ek, err2 := x509.ParseECPrivateKey(blk.Bytes)
			if err2 != nil {
				t.Fatal(err, err2)
			}
			return iss.Cert, ek
		}
		return iss.Cert, k.(*ecdsa.PrivateKey)
	}
	adminCert, adminKey := operator("alice", identity.RoleAdmin)
	viewerCert, viewerKey := operator("bob", identity.RoleViewer)

	master, slave := serialttytest.PTY(t)
	caPEM := filepath.Join(t.TempDir(), "fleet-ca.crt")
	if err := os.WriteFile(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fleetCA.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dev.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[console]\ntty = %s\noperator_ca = %s\n", slave, caPEM)
	f.Close()

	var logs syncBuf
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ran := make(chan error, 1)
	go func() {
		ran <- dev.Board.Run(ctx, 6, func(ctx context.Context, _ string) (int, error) {
			return cli.Run(ctx, []string{"run", "--config", dev.Config}, &logs, &logs), nil
		})
	}()
	t.Cleanup(func() { cancel(); <-ran })

	fleet.Notify(t, dev.ID, "v2")
	if s, err := fleet.WaitFinal(ctx, dev.ID, "v2"); err != nil || s.State != transport.StateCommitted || s.Slot != "B" {
		t.Fatalf("v2: %+v %v\n%s", s, err, logs.String())
	}

	var text syncBuf
	peer := serialframe.NewPeer(ptyMaster{master}, serialframe.Options{OnText: func(l []byte) { text.Write(append(l, '\n')) }})
	go peer.Run(ctx)
	exec := func(args ...string) console.ExecResult {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		defer ccancel()
		var res console.ExecResult
		if err := peer.Call(cctx, "exec", console.ExecRequest{Args: args}, &res); err != nil {
			t.Fatalf("console exec %v: %v\n%s", args, err, logs.String())
		}
		return res
	}

	st := exec("status", "--json")
	var view map[string]any
	if err := json.Unmarshal([]byte(st.Stdout), &view); err != nil || st.Exit != 0 {
		t.Fatalf("status --json: %+v %v", st, err)
	}
	if !strings.Contains(st.Stdout, `"v2"`) {
		t.Fatalf("status does not show v2: %s", st.Stdout)
	}
	if res := exec("rollback"); res.Exit == 0 || !strings.Contains(res.Stderr, "needs an unlock") {
		t.Fatalf("rollback without a token: %+v", res)
	}
	ch := strings.TrimSpace(exec("challenge").Stdout)
	tok, err := console.Sign(ch, []string{"rollback"}, 5*time.Minute, viewerCert, viewerKey)
	if err != nil {
		t.Fatal(err)
	}
	if res := exec("unlock", tok); res.Exit == 0 {
		t.Fatalf("a viewer's token unlocked the console: %+v", res)
	}
	ch = strings.TrimSpace(exec("challenge").Stdout)
	if tok, err = console.Sign(ch, []string{"rollback"}, 5*time.Minute, adminCert, adminKey); err != nil {
		t.Fatal(err)
	}
	if res := exec("unlock", tok); res.Exit != 0 {
		t.Fatalf("unlock: %+v", res)
	}
	if res := exec("rollback"); res.Exit != 0 || !strings.Contains(res.Stdout, "slot A boots next") {
		t.Fatalf("rollback: %+v\n%s", res, logs.String())
	}
	rb, err := fleet.WaitFor(ctx, dev.ID, func(s transport.Status) bool { return s.State == transport.StateRolledBack })
	if err != nil || rb.Release != "v2" || !strings.Contains(rb.Reason, "serial console by alice") {
		t.Fatalf("fleet's audit event: %+v %v", rb, err)
	}
	// The board rebooted into A; the new agent serves the console again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s, _ := dev.Board.Booted(); s == "A" && strings.Contains(exec("status", "--json").Stdout, `"booted_slot": "A"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the board did not come back in A\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
