package console

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"

	agentconsole "github.com/graft-dev/graft/agent/console"
	"github.com/graft-dev/graft/transport/serialframe"
)

// Errors.
var (
	ErrNoPort     = errors.New("console: no such serial port")
	ErrManyPorts  = errors.New("console: more than one serial port matches")
	ErrPortSpec   = errors.New("console: bad --port (auto, a path, or usb:VID:PID[:SERIAL])")
	ErrKey        = errors.New("console: cannot read the operator certificate or key")
	ErrNoResponse = errors.New("console: the device did not answer (is graft-agent's console on this port?)")
)

// FindPort resolves a port spec: "auto" (the only USB serial adapter), a
// device path, or "usb:VID:PID[:SERIAL]" (hex IDs, as `graft-flash ports`
// lists them).
func FindPort(spec string) (string, error) {
	if spec != "auto" && !strings.HasPrefix(spec, "usb:") {
		if _, err := os.Stat(spec); err != nil {
			return "", fmt.Errorf("%w: %s", ErrNoPort, spec)
		}
		return spec, nil
	}
	var vid, pid, sn string
	if spec != "auto" {
		f := strings.Split(strings.TrimPrefix(spec, "usb:"), ":")
		if len(f) < 2 || len(f) > 3 {
			return "", fmt.Errorf("%w: %q", ErrPortSpec, spec)
		}
		vid, pid = strings.ToLower(f[0]), strings.ToLower(f[1])
		if len(f) == 3 {
			sn = f[2]
		}
	}
	ports, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return "", fmt.Errorf("console: list ports: %w", err)
	}
	var found []string
	for _, p := range ports {
		if !p.IsUSB {
			continue
		}
		if vid != "" && (strings.ToLower(p.VID) != vid || strings.ToLower(p.PID) != pid) {
			continue
		}
		if sn != "" && p.SerialNumber != sn {
			continue
		}
		found = append(found, p.Name)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %s", ErrNoPort, spec)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %s: %s", ErrManyPorts, spec, strings.Join(found, ", "))
}

// Session is a machine-mode session on an open port.
type Session struct {
	port   serial.Port
	peer   *serialframe.Peer
	cancel context.CancelFunc
	done   chan struct{}
}

// Open opens a port for machine-mode commands.
func Open(ctx context.Context, path string, baud int) (*Session, error) {
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud})
	if err != nil {
		return nil, fmt.Errorf("console: open %s: %w", path, err)
	}
	p.SetReadTimeout(100 * time.Millisecond)
	s := &Session{port: p, done: make(chan struct{})}
	s.peer = serialframe.NewPeer(portRW{p}, serialframe.Options{})
	rctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go func() { defer close(s.done); s.peer.Run(rctx) }()
	return s, nil
}

// portRW turns the port's read timeout (0 bytes, no error) into the
// "nothing yet" a Peer loops on.
type portRW struct{ serial.Port }

// Close ends the session.
func (s *Session) Close() error {
	s.cancel()
	err := s.port.Close()
	<-s.done
	return err
}

// Exec runs one console command line on the device.
func (s *Session) Exec(ctx context.Context, args ...string) (agentconsole.ExecResult, error) {
	var res agentconsole.ExecResult
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.peer.Call(cctx, "exec", agentconsole.ExecRequest{Args: args}, &res); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return res, ErrNoResponse
		}
		return res, fmt.Errorf("console: %w", err)
	}
	return res, nil
}

// Operator is an operator's certificate and key (graft-fleet ca issue
// --operator NAME --role admin).
type Operator struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// LoadOperator reads an operator certificate and its key, PEM.
func LoadOperator(certFile, keyFile string) (Operator, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return Operator{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return Operator{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return Operator{}, fmt.Errorf("%w: not PEM", ErrKey)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return Operator{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	var key *ecdsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes); err == nil {
		key, _ = k.(*ecdsa.PrivateKey)
	} else if k, err := x509.ParseECPrivateKey(kblk.Bytes); err == nil {
		key = k
	}
	if key == nil {
		return Operator{}, fmt.Errorf("%w: %s holds no ECDSA key", ErrKey, keyFile)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return Operator{}, fmt.Errorf("%w: %s is not the key of %s", ErrKey, keyFile, certFile)
	}
	return Operator{Cert: cert, Key: key}, nil
}

// Token signs a challenge line for scope and ttl.
func (o Operator) Token(challenge string, scope []string, ttl time.Duration) (string, error) {
	return agentconsole.Sign(challenge, scope, ttl, o.Cert, o.Key)
}

// Unlock asks the device for a challenge, signs it and sends the token.
// It returns what the device said.
func (s *Session) Unlock(ctx context.Context, o Operator, scope []string, ttl time.Duration) (string, error) {
	ch, err := s.Exec(ctx, "challenge")
	if err != nil {
		return "", err
	}
	if ch.Exit != 0 {
		return "", fmt.Errorf("console: challenge: %s", strings.TrimSpace(ch.Stderr))
	}
	tok, err := o.Token(strings.TrimSpace(ch.Stdout), scope, ttl)
	if err != nil {
		return "", err
	}
	res, err := s.Exec(ctx, "unlock", tok)
	if err != nil {
		return "", err
	}
	if res.Exit != 0 {
		return "", fmt.Errorf("console: unlock refused: %s", strings.TrimSpace(res.Stderr))
	}
	return strings.TrimSpace(res.Stdout), nil
}
