package console_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	agentconsole "github.com/graft-dev/graft/agent/console"
	"github.com/graft-dev/graft/agent/serialtty/serialttytest"
	"github.com/graft-dev/graft/tools/flash/console"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport/identity"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func waitFor(t *testing.T, what string, buf *syncBuf, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q:\n%s", what, s, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExecAndUnlock: graft-flash's side against the agent's console on a
// real pty: a command's result, the unlock with an operator key file from
// the fleet CA, and a guarded command that then runs.
func TestExecAndUnlock(t *testing.T) {
	dir := t.TempDir()
	fleet, err := ca.Init(filepath.Join(dir, "ca"), ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := identity.NewOperator("alice", identity.RoleAdmin)
	iss, err := fleet.IssueNewKey(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := iss.Write(filepath.Join(dir, "ops"))
	if err != nil {
		t.Fatal(err)
	}
	op, err := console.LoadOperator(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(fleet.Certificate())

	master, slave := serialttytest.PTY(t)
	var acted []string
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	session, err := console.Open(ctx, slave, 115200) // raw before the device writes
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	go agentconsole.Serve(ctx, master, agentconsole.Options{
		Device: "dev-9", Guard: &agentconsole.Guard{Device: "dev-9", Roots: roots},
		Run: func(_ context.Context, args []string, stdout, _ io.Writer) int {
			fmt.Fprintf(stdout, "{\"ran\":%q}\n", strings.Join(args, " "))
			return 0
		},
		Act: func(_ context.Context, who, cmd string, _ []string, out io.Writer) error {
			mu.Lock()
			acted = append(acted, who+" "+cmd)
			mu.Unlock()
			fmt.Fprintln(out, "ok")
			return nil
		},
	})
	res, err := session.Exec(ctx, "status", "--json")
	if err != nil || res.Exit != 0 || res.Stdout != "{\"ran\":\"status --json\"}\n" {
		t.Fatalf("exec status: %+v %v", res, err)
	}
	if res, _ := session.Exec(ctx, "reboot"); res.Exit == 0 {
		t.Fatalf("reboot ran locked: %+v", res)
	}
	said, err := session.Unlock(ctx, op, []string{"reboot"}, 10*time.Minute)
	if err != nil || !strings.Contains(said, "unlocked for alice") {
		t.Fatalf("unlock: %q %v", said, err)
	}
	if res, err := session.Exec(ctx, "reboot"); err != nil || res.Exit != 0 {
		t.Fatalf("reboot after the unlock: %+v %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acted) != 1 || acted[0] != "alice reboot" {
		t.Fatalf("acted %q", acted)
	}
	if _, err := console.LoadOperator(certFile, filepath.Join(dir, "ca", "ca.key")); !errors.Is(err, console.ErrKey) {
		t.Fatalf("a key that is not the certificate's: %v", err)
	}
}

// TestAttachReconnects: a terminal attached through a stable name (as
// /dev/serial/by-id gives a USB adapter) sees the device, loses it when
// the line goes away, logs the gap with timestamps, and reconnects when
// the name points at a live line again; typed bytes reach the device raw,
// and Ctrl-] ends the session.
func TestAttachReconnects(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "usb-graft-if00")
	m1, s1 := serialttytest.PTY(t)
	if err := os.Symlink(s1, link); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	var out, log syncBuf
	done := make(chan error, 1)
	go func() {
		done <- console.Attach(context.Background(), inR, &out, console.AttachOptions{Spec: link, Baud: 115200, Log: &log, Retry: 50 * time.Millisecond})
	}()
	waitFor(t, "log", &log, "connected to")
	m1.Write([]byte("U-Boot 2023.01\r\nHit any key to stop autoboot:  2\r\n"))
	waitFor(t, "terminal", &out, "Hit any key")
	inW.Write([]byte(" "))
	got := make([]byte, 16)
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for n == 0 && time.Now().Before(deadline) {
		n, _ = m1.Read(got)
		time.Sleep(10 * time.Millisecond)
	}
	if string(got[:n]) != " " {
		t.Fatalf("the device got %q, want the key typed", got[:n])
	}

	m1.Close() // unplugged
	waitFor(t, "log", &log, "lost")
	m2, s2 := serialttytest.PTY(t)
	os.Remove(link)
	if err := os.Symlink(s2, link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "log", &log, "is back")
	m2.Write([]byte("graft> \r\n"))
	waitFor(t, "terminal", &out, "graft> ")
	inW.Write([]byte{console.EscapeByte})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Ctrl-] did not end the session")
	}
	for _, l := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		if _, err := time.Parse("2006-01-02T15:04:05.000Z", strings.Fields(l)[0]); err != nil {
			t.Fatalf("log line without a timestamp: %q", l)
		}
	}
}
