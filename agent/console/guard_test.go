package console_test

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/console"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport/identity"
)

type operator struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func issue(t *testing.T, c *ca.CA, name string, role identity.Role) operator {
	t.Helper()
	id, err := identity.NewOperator(name, role)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.IssueNewKey(id, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(iss.KeyPEM)
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		pk, err2 := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err2 != nil {
			t.Fatal(err, err2)
		}
		k = pk.(*ecdsa.PrivateKey)
	}
	return operator{iss.Cert, k}
}

// clock is a monotonic clock the test moves.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestGuard(t *testing.T) {
	fleet, err := ca.Init(t.TempDir(), ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Init(t.TempDir(), ca.Options{Name: "someone else's CA"})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(fleet.Certificate())
	admin := issue(t, fleet, "alice", identity.RoleAdmin)
	viewer := issue(t, fleet, "bob", identity.RoleViewer)
	stranger := issue(t, other, "mallory", identity.RoleAdmin)

	mono := &clock{time.Unix(1000, 0)}
	newGuard := func(dev string) *console.Guard {
		// the device's wall clock is at 1970: no RTC
		return &console.Guard{Device: dev, Roots: roots, Now: func() time.Time { return time.Unix(0, 0) }, Mono: mono.now}
	}
	sign := func(t *testing.T, o operator, ch string, scope []string, ttl time.Duration) string {
		t.Helper()
		tok, err := console.Sign(ch, scope, ttl, o.cert, o.key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	t.Run("locked until unlocked", func(t *testing.T) {
		g := newGuard("dev-1")
		if _, err := g.Allow("rollback"); !errors.Is(err, console.ErrLocked) {
			t.Fatalf("locked guard: %v", err)
		}
		if _, _, _, err := g.Unlock("graft-token-v1:garbage"); !errors.Is(err, console.ErrToken) {
			t.Fatalf("garbage token: %v", err)
		}
	})
	t.Run("valid token, scope, single use, expiry", func(t *testing.T) {
		g := newGuard("dev-1")
		ch, err := g.NewChallenge()
		if err != nil {
			t.Fatal(err)
		}
		tok := sign(t, admin, ch, []string{"rollback", "mark-good"}, 10*time.Minute)
		op, _, left, err := g.Unlock(tok)
		if err != nil || op != "alice" || left != 10*time.Minute {
			t.Fatalf("unlock: %q %v %v", op, left, err)
		}
		if who, err := g.Allow("rollback"); err != nil || who != "alice" {
			t.Fatalf("allow rollback: %q %v", who, err)
		}
		if _, err := g.Allow("reboot"); !errors.Is(err, console.ErrScope) {
			t.Fatalf("reboot outside the scope: %v", err)
		}
		if _, _, _, err := g.Unlock(tok); !errors.Is(err, console.ErrNoChallenge) {
			t.Fatalf("replayed token: %v", err)
		}
		mono.t = mono.t.Add(10 * time.Minute)
		if _, err := g.Allow("rollback"); !errors.Is(err, console.ErrExpired) {
			t.Fatalf("after the ttl: %v", err)
		}
	})
	t.Run("expired before it arrived", func(t *testing.T) {
		g := newGuard("dev-1")
		ch, _ := g.NewChallenge()
		tok := sign(t, admin, ch, []string{"*"}, time.Minute)
		mono.t = mono.t.Add(2 * time.Minute)
		if _, _, _, err := g.Unlock(tok); !errors.Is(err, console.ErrExpired) {
			t.Fatalf("late token: %v", err)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			name string
			make func(g *console.Guard) string
			want error
		}{
			{"other device", func(g *console.Guard) string {
				other := newGuard("dev-2")
				ch, _ := other.NewChallenge()
				g.NewChallenge()
				return sign(t, admin, ch, []string{"*"}, time.Minute)
			}, console.ErrDevice},
			{"older challenge", func(g *console.Guard) string {
				ch, _ := g.NewChallenge()
				g.NewChallenge()
				return sign(t, admin, ch, []string{"*"}, time.Minute)
			}, console.ErrStale},
			{"viewer role", func(g *console.Guard) string {
				ch, _ := g.NewChallenge()
				return sign(t, viewer, ch, []string{"*"}, time.Minute)
			}, console.ErrRole},
			{"another CA", func(g *console.Guard) string {
				ch, _ := g.NewChallenge()
				return sign(t, stranger, ch, []string{"*"}, time.Minute)
			}, console.ErrCertificate},
			{"key of another operator", func(g *console.Guard) string {
				ch, _ := g.NewChallenge()
				return sign(t, operator{admin.cert, viewer.key}, ch, []string{"*"}, time.Minute)
			}, console.ErrSignature},
		} {
			t.Run(c.name, func(t *testing.T) {
				g := newGuard("dev-1")
				tok := c.make(g)
				if _, _, _, err := g.Unlock(tok); !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				if _, err := g.Allow("rollback"); !errors.Is(err, console.ErrLocked) {
					t.Fatalf("still unlocked after a refusal: %v", err)
				}
			})
		}
	})
	t.Run("guard off for lab boards", func(t *testing.T) {
		g := &console.Guard{Device: "lab-1", Off: true}
		if _, err := g.Allow("reboot"); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzUnlock(f *testing.F) {
	f.Add("graft-token-v1:oQFA")
	f.Add("graft-token-v1:")
	f.Fuzz(func(t *testing.T, s string) {
		g := &console.Guard{Device: "d", Roots: x509.NewCertPool()}
		g.NewChallenge()
		if _, _, _, err := g.Unlock(s); err == nil {
			t.Fatalf("token %q unlocked a guard with no roots", s)
		}
	})
}
