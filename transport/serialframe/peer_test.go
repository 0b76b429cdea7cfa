package serialframe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// noisyLine writes kernel-log-like text before each write and damages
// every corruptEvery-th write.
type noisyLine struct {
	net.Conn
	mu           sync.Mutex
	n            int
	corruptEvery int
	rnd          *rand.Rand
}

func (l *noisyLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.n++
	q := append([]byte(nil), p...)
	if l.corruptEvery > 0 && l.n%l.corruptEvery == 0 {
		q[l.rnd.IntN(len(q))] ^= 0x5a
	}
	noise := fmt.Sprintf("[ %4d.%06d] random kernel line %d\r\n", l.n, l.rnd.IntN(1e6), l.n)
	l.mu.Unlock()
	if _, err := l.Conn.Write([]byte(noise)); err != nil {
		return 0, err
	}
	if _, err := l.Conn.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

type echo struct {
	N int `cbor:"1,keyasint"`
}

func TestPeerCallsThroughNoise(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var handled atomic.Int64
	var lines atomic.Int64
	dev := NewPeer(&noisyLine{Conn: b, corruptEvery: 5, rnd: rand.New(rand.NewPCG(3, 4))}, Options{
		Handler: func(ctx context.Context, typ string, body []byte) (any, error) {
			handled.Add(1)
			var e echo
			if err := Unmarshal(body, &e); err != nil {
				return nil, err
			}
			if e.N%10 == 9 {
				return nil, &RemoteError{Code: "nine", Message: fmt.Sprintf("%d ends in 9", e.N)}
			}
			return echo{e.N * 2}, nil
		},
	})
	station := NewPeer(&noisyLine{Conn: a, corruptEvery: 7, rnd: rand.New(rand.NewPCG(5, 6))}, Options{
		Retry:  50 * time.Millisecond,
		OnText: func([]byte) { lines.Add(1) },
	})
	go dev.Run(ctx)
	go station.Run(ctx)
	for i := 0; i < 40; i++ {
		var out echo
		err := station.Call(ctx, "echo", echo{i}, &out)
		if i%10 == 9 {
			if !errors.Is(err, &RemoteError{Code: "nine"}) {
				t.Fatalf("call %d: err = %v, want remote error nine", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if out.N != 2*i {
			t.Fatalf("call %d: got %d", i, out.N)
		}
	}
	if handled.Load() != 40 {
		t.Errorf("handler ran %d times for 40 calls (a repeated request must be answered once)", handled.Load())
	}
	if lines.Load() == 0 {
		t.Error("no text lines seen between frames")
	}
}

func TestPeerClosedLine(t *testing.T) {
	a, b := net.Pipe()
	p := NewPeer(a, Options{Retry: 10 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	go io.Copy(io.Discard, b)
	time.AfterFunc(50*time.Millisecond, func() { b.Close() })
	err := p.Call(context.Background(), "never", nil, nil)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run: %v", err)
	}
}
