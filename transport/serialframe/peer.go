package serialframe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// ErrClosed: the peer's line ended (Run returned) while a call waited.
var ErrClosed = errors.New("serialframe: line closed")

// Handler answers one request: the body to send back (encoded with
// Marshal), or an error (a *RemoteError keeps its code; any other error is
// sent with code CodeFailed).
type Handler func(ctx context.Context, typ string, body []byte) (any, error)

// Error codes the framing itself uses.
const (
	CodeFailed      = "failed"      // the handler returned a plain error
	CodeUnsupported = "unsupported" // no handler for requests on this side
)

// Options tune a Peer.
type Options struct {
	// Handler answers requests; nil answers each with CodeUnsupported.
	Handler Handler
	// OnEvent sees every event message, in order, from Run's goroutine.
	OnEvent func(Message)
	// OnText sees the text between frames, a line at a time (at most
	// 4 KiB, without the line end), from Run's goroutine.
	OnText func(line []byte)
	// Retry is how long Call waits for an answer before it sends the same
	// request again (same ID: the other side answers it once). Default 1s.
	Retry time.Duration
	// WriteTimeout bounds one frame write when the line supports write
	// deadlines (a tty opened through os.File). Default 5s.
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// keptAnswers is how many answered request IDs a Peer remembers, to send
// the same answer again when a request is repeated.
const keptAnswers = 32

const maxLine = 4 << 10

// Peer speaks request/response over a line: it calls the other side
// (Call), answers its requests (Options.Handler), and sends events
// (Notify). Run reads the line; everything else may be called from any
// goroutine.
type Peer struct {
	rw io.ReadWriter
	o  Options

	wmu sync.Mutex

	mu       sync.Mutex
	nextID   uint32
	pending  map[uint32]chan Message
	inflight map[uint32]string // request ID → type
	answered map[uint32]answer
	order    []uint32
	closed   chan struct{}
	closeErr error
	running  bool

	dec  Decoder
	line []byte
}

type answer struct {
	typ   string
	frame []byte
}

// NewPeer returns a Peer on rw. Run must be running for Call to get
// answers.
func NewPeer(rw io.ReadWriter, o Options) *Peer {
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Peer{
		rw: rw, o: o, nextID: randomID(),
		pending: map[uint32]chan Message{}, inflight: map[uint32]string{}, answered: map[uint32]answer{},
		closed: make(chan struct{}),
	}
}

// Stats returns the frames decoded, the frames refused (bad CRC or
// version) and the bytes of text seen so far. Only call it after Run has
// returned, or from OnText/OnEvent.
func (p *Peer) Stats() (frames, bad, text int64) {
	return p.dec.Frames, p.dec.BadFrames, p.dec.TextBytes
}

// Run reads the line until it fails or ctx ends, and returns why. A line
// whose Read blocks is only interrupted by closing it. A Read that returns
// 0 bytes and no error (a serial port's read timeout) just loops.
// Requests still being handled keep running with ctx after Run returns.
func (p *Peer) Run(ctx context.Context) error {
	err := p.run(ctx)
	p.mu.Lock()
	p.closeErr = err
	close(p.closed)
	p.mu.Unlock()
	return err
}

func (p *Peer) run(ctx context.Context) error {
	buf := make([]byte, 4096)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := p.rw.Read(buf)
		if n > 0 {
			p.dec.Feed(buf[:n])
			for {
				ev, ok := p.dec.Next()
				if !ok {
					break
				}
				p.event(ctx, ev)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
	}
}

func (p *Peer) event(ctx context.Context, ev Event) {
	switch {
	case ev.Text != nil:
		p.text(ev.Text)
	case ev.Err != nil:
		p.o.Logger.Warn("serialframe: frame dropped", "err", ev.Err)
	default:
		m, err := DecodeMessage(ev.Payload)
		if err != nil {
			p.o.Logger.Warn("serialframe: message dropped", "err", err)
			return
		}
		p.message(ctx, m)
	}
}

func (p *Peer) text(t []byte) {
	for len(t) > 0 {
		i := bytes.IndexByte(t, '\n')
		if i < 0 {
			p.line = append(p.line, t...)
			if len(p.line) >= maxLine {
				p.flushLine()
			}
			return
		}
		p.line = append(p.line, t[:i]...)
		p.flushLine()
		t = t[i+1:]
	}
}

func (p *Peer) flushLine() {
	l := bytes.TrimSuffix(p.line, []byte("\r"))
	if p.o.OnText != nil && len(l) > 0 {
		p.o.OnText(bytes.Clone(l))
	}
	p.line = p.line[:0]
}

func (p *Peer) message(ctx context.Context, m Message) {
	switch m.Kind {
	case KindResponse:
		p.mu.Lock()
		ch := p.pending[m.ID]
		delete(p.pending, m.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	case KindEvent:
		if p.o.OnEvent != nil {
			p.o.OnEvent(m)
		}
	case KindRequest:
		p.mu.Lock()
		if a, ok := p.answered[m.ID]; ok && a.typ == m.Type {
			p.mu.Unlock()
			p.write(a.frame) // the answer got lost: the same again
			return
		}
		if p.inflight[m.ID] == m.Type {
			p.mu.Unlock()
			return // still working on it
		}
		p.inflight[m.ID] = m.Type
		p.mu.Unlock()
		go p.handle(ctx, m)
	}
}

func (p *Peer) handle(ctx context.Context, m Message) {
	resp := Message{Kind: KindResponse, ID: m.ID}
	var body any
	var err error
	if p.o.Handler == nil {
		err = &RemoteError{Code: CodeUnsupported, Message: "this side answers no requests"}
	} else {
		body, err = p.o.Handler(ctx, m.Type, m.Body)
	}
	if err == nil && body != nil {
		resp.Body, err = Marshal(body)
	}
	if err != nil {
		var re *RemoteError
		if !errors.As(err, &re) {
			re = &RemoteError{Code: CodeFailed, Message: err.Error()}
		}
		resp.Error = re
		resp.Body = nil
	}
	frame, ferr := EncodeMessage(resp)
	if ferr != nil {
		frame, _ = EncodeMessage(Message{Kind: KindResponse, ID: m.ID, Error: &RemoteError{Code: CodeFailed, Message: ferr.Error()}})
	}
	p.mu.Lock()
	delete(p.inflight, m.ID)
	if _, ok := p.answered[m.ID]; !ok {
		p.order = append(p.order, m.ID)
	}
	p.answered[m.ID] = answer{m.Type, frame}
	if len(p.order) > keptAnswers {
		delete(p.answered, p.order[0])
		p.order = p.order[1:]
	}
	p.mu.Unlock()
	if err := p.write(frame); err != nil {
		p.o.Logger.Warn("serialframe: answer not sent", "type", m.Type, "err", err)
	}
}

// randomID starts a Peer's request IDs at a random point, so that a new
// session on the same line (the station ran again) does not reuse the IDs
// whose answers the other side still remembers.
func randomID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

type deadliner interface{ SetWriteDeadline(time.Time) error }

func (p *Peer) write(frame []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if d, ok := p.rw.(deadliner); ok {
		if d.SetWriteDeadline(time.Now().Add(p.o.WriteTimeout)) == nil {
			defer d.SetWriteDeadline(time.Time{})
		}
	}
	_, err := p.rw.Write(frame)
	return err
}

// Notify sends an event.
func (p *Peer) Notify(typ string, body any) error {
	m := Message{Kind: KindEvent, Type: typ}
	if body != nil {
		b, err := Marshal(body)
		if err != nil {
			return err
		}
		m.Body = b
	}
	frame, err := EncodeMessage(m)
	if err != nil {
		return err
	}
	return p.write(frame)
}

// Call sends the request typ with body req and decodes the answer's body
// into resp (which may be nil). An unanswered request is sent again every
// Options.Retry, with the same ID, until ctx ends. The other side's error
// comes back as a *RemoteError.
func (p *Peer) Call(ctx context.Context, typ string, req, resp any) error {
	m := Message{Kind: KindRequest, Type: typ}
	if req != nil {
		b, err := Marshal(req)
		if err != nil {
			return err
		}
		m.Body = b
	}
	ch := make(chan Message, 1)
	p.mu.Lock()
	m.ID = p.nextID
	p.nextID++
	p.pending[m.ID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, m.ID)
		p.mu.Unlock()
	}()
	frame, err := EncodeMessage(m)
	if err != nil {
		return err
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", typ, ctx.Err())
		case <-p.closed:
			return fmt.Errorf("%s: %w", typ, p.closeErr)
		case a := <-ch:
			if a.Error != nil {
				return a.Error
			}
			if resp == nil || a.Body == nil {
				return nil
			}
			return Unmarshal(a.Body, resp)
		case <-t.C:
			if err := p.write(frame); err != nil {
				return fmt.Errorf("%s: %w: %w", typ, ErrClosed, err)
			}
			t.Reset(p.o.Retry)
		}
	}
}
