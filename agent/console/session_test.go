package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/graft-dev/graft/agent/console"
	"github.com/graft-dev/graft/agent/serialtty/serialttytest"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport/identity"
	"github.com/graft-dev/graft/transport/serialframe"
)

// bench is the technician's end of a console: a real pty slave opened as
// a serial port, read into a buffer, with a machine-mode peer on it.
type bench struct {
	port serial.Port
	peer *serialframe.Peer
	mu   sync.Mutex
	text bytes.Buffer
}

func (b *bench) Write(p []byte) (int, error) { return b.port.Write(p) }
func (b *bench) Read(p []byte) (int, error)  { return b.port.Read(p) }

func (b *bench) seen() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.String()
}

func (b *bench) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(b.seen(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("console never printed %q; it printed:\n%s", s, b.seen())
}

func (b *bench) exec(t *testing.T, args ...string) console.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var res console.ExecResult
	if err := b.peer.Call(ctx, "exec", console.ExecRequest{Args: args}, &res); err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	return res
}

type acted struct {
	mu  sync.Mutex
	log []string
}

func (a *acted) act(_ context.Context, op, cmd string, args []string, out io.Writer) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log = append(a.log, op+" "+cmd+" "+strings.Join(args, " "))
	fmt.Fprintf(out, "%s done\n", cmd)
	return nil
}

func (a *acted) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.log...)
}

func TestConsoleOverPTY(t *testing.T) {
	fleet, err := ca.Init(t.TempDir(), ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(fleet.Certificate())
	admin := issue(t, fleet, "alice", identity.RoleAdmin)

	master, slave := serialttytest.PTY(t)
	// The bench opens its end (raw) before the console writes: a pty slave
	// in its default cooked mode would echo the banner back as input.
	port, err := serial.Open(slave, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	ring := console.NewRing(64)
	ring.Add("level=INFO msg=\"graft-agent started\"")
	var act acted
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- console.Serve(ctx, master, console.Options{
			Device: "dev-7",
			Guard:  &console.Guard{Device: "dev-7", Roots: roots},
			Ring:   ring,
			Run: func(_ context.Context, args []string, stdout, _ io.Writer) int {
				fmt.Fprintf(stdout, "ran %s\n", strings.Join(args, " "))
				return 0
			},
			Act:     act.act,
			Journal: func() ([]byte, error) { return []byte(`{"schema":1}`), nil },
		})
	}()
	t.Cleanup(func() { cancel(); master.Close(); <-served })

	port.SetReadTimeout(100 * time.Millisecond)
	b := &bench{port: port}
	b.peer = serialframe.NewPeer(b, serialframe.Options{OnText: func(l []byte) {
		b.mu.Lock()
		b.text.Write(l)
		b.text.WriteByte('\n')
		b.mu.Unlock()
	}})
	pctx, pcancel := context.WithCancel(context.Background())
	t.Cleanup(pcancel)
	go b.peer.Run(pctx)

	// A person at a terminal: keys echoed, a carriage return ends the line.
	b.waitFor(t, "graft console on dev-7")
	port.Write([]byte("status --json\r"))
	b.waitFor(t, "ran status --json")
	b.waitFor(t, "graft> status --json") // the echo
	port.Write([]byte("log -n 5\r"))
	b.waitFor(t, "graft-agent started")

	// Changing the device needs an unlock, typed or scripted.
	port.Write([]byte("rollback\r"))
	b.waitFor(t, "this command needs an unlock token")
	if r := b.exec(t, "rollback"); r.Exit == 0 || !strings.Contains(r.Stderr, "needs an unlock") {
		t.Fatalf("locked rollback: %+v", r)
	}
	if len(act.seen()) != 0 {
		t.Fatalf("acted while locked: %v", act.seen())
	}
	ch := b.exec(t, "challenge")
	tok, err := console.Sign(strings.TrimSpace(ch.Stdout), []string{"rollback"}, 5*time.Minute, admin.cert, admin.key)
	if err != nil {
		t.Fatal(err)
	}
	if r := b.exec(t, "unlock", tok); r.Exit != 0 {
		t.Fatalf("unlock: %+v", r)
	}
	if r := b.exec(t, "reboot"); r.Exit == 0 {
		t.Fatalf("reboot outside the token's scope ran: %+v", r)
	}
	if r := b.exec(t, "rollback"); r.Exit != 0 || r.Stdout != "rollback done\n" {
		t.Fatalf("unlocked rollback: %+v", r)
	}
	// A second unlock, for bootenv set: the actor gets NAME=VALUE only.
	ch = b.exec(t, "challenge")
	if tok, err = console.Sign(strings.TrimSpace(ch.Stdout), []string{"bootenv set"}, 5*time.Minute, admin.cert, admin.key); err != nil {
		t.Fatal(err)
	}
	if r := b.exec(t, "unlock", tok); r.Exit != 0 {
		t.Fatalf("unlock for bootenv set: %+v", r)
	}
	if r := b.exec(t, "bootenv", "set", "FOO=1"); r.Exit != 0 {
		t.Fatalf("bootenv set: %+v", r)
	}
	if got := act.seen(); len(got) != 2 || got[0] != "alice rollback " || got[1] != "alice bootenv set FOO=1" {
		t.Fatalf("actions %q", got)
	}
	if r := b.exec(t, "journal"); r.Stdout != "{\"schema\":1}\n" {
		t.Fatalf("journal: %+v", r)
	}

	// Noise and a flood: binary garbage, a frame start with no frame,
	// very long lines. The console keeps answering.
	noise := make([]byte, 256<<10)
	rand.Read(noise)
	port.Write(noise)
	port.Write([]byte{0xF7, 'G', 'F', 1, 0xff, 0xff})
	port.Write(bytes.Repeat([]byte("x"), 64<<10))
	port.Write([]byte("\r"))
	if r := b.exec(t, "status"); r.Exit != 0 || r.Stdout != "ran status\n" {
		t.Fatalf("status after the flood: %+v", r)
	}
	select {
	case err := <-served:
		t.Fatalf("console ended: %v", err)
	default:
	}
	var re *serialframe.RemoteError
	var res console.ExecResult
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := b.peer.Call(cctx, "shell", nil, &res); !errors.As(err, &re) {
		t.Fatalf("unknown request: %v", err)
	}
}
