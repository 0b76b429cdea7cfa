package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/transport"
)

var (
	// ErrNotConnected: the session has no broker connection right now.
	ErrNotConnected = errors.New("mqtt: not connected")
	// ErrClosed: the session was closed or its context ended.
	ErrClosed = errors.New("mqtt: session closed")
	// errConnLost: the connection dropped while waiting for the broker.
	errConnLost = errors.New("mqtt: connection lost")
	// errTimeout: the broker did not answer within opTimeout.
	errTimeout = errors.New("mqtt: broker did not answer in time")
)

const (
	qos = 1
	// opTimeout bounds a wait for CONNACK, SUBACK or PUBACK on a live
	// connection; past it the connection is dropped and made again.
	opTimeout = 30 * time.Second
	// offlineTimeout bounds the final online=false publish on shutdown.
	offlineTimeout = 2 * time.Second
	// disconnectQuiesce is how long paho may take to finish sending.
	disconnectQuiesce = 250 // ms
	// queueRetry is how long to wait before reading a failing queue again.
	queueRetry = 5 * time.Second
	// noticeBuffer is how many notices may wait for OnNotice.
	noticeBuffer = 16
)

func randFloat() float64 { return rand.Float64() }

// conn is one live broker connection.
type conn struct {
	client paho.Client
	lost   chan struct{} // closed when the connection dropped
}

// Session is a device's MQTT session. Its methods are safe for concurrent
// use.
type Session struct {
	cfg       Config
	inventory []byte // encoded Config.Inventory; nil: none
	log       *slog.Logger
	ctx       context.Context
	cancel    context.CancelFunc

	kick    chan struct{}
	notices chan transport.Notice
	done    chan struct{} // closed when the connection loop has ended
	stopped sync.WaitGroup

	mu       sync.Mutex
	cur      *conn         // nil while disconnected
	up       chan struct{} // closed while connected
	progress chan struct{} // closed and replaced when an event is delivered
	connects uint64        // connections made so far
}

// Start validates cfg and returns at once; the session connects, and
// reconnects after any failure, in the background until ctx ends or Close
// is called.
func Start(ctx context.Context, cfg Config) (*Session, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg.Groups = append([]string(nil), cfg.Groups...)
	var inventory []byte
	if cfg.Inventory != nil {
		inv := *cfg.Inventory
		inv.Device = cfg.DeviceID
		b, err := transport.EncodeInventory(inv)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		inventory = b
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Session{
		inventory: inventory,
		cfg:       cfg,
		log:       cfg.Logger.With("device", cfg.DeviceID),
		ctx:       ctx,
		cancel:    cancel,
		kick:      make(chan struct{}, 1),
		notices:   make(chan transport.Notice, noticeBuffer),
		done:      make(chan struct{}),
		up:        make(chan struct{}),
		progress:  make(chan struct{}),
	}
	s.stopped.Add(2)
	go s.run()
	go s.dispatch()
	return s, nil
}

// Kick tells the session that a new event is in the outbox: it is
// delivered now if connected, else on the next connect.
func (s *Session) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Connected reports whether the session is connected and subscribed.
func (s *Session) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil
}

// Reconnects is how many times the session connected again after its
// first connection.
func (s *Session) Reconnects() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.connects, 1) - 1
}

// WaitConnected waits until the session is connected and subscribed.
func (s *Session) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.cur != nil {
			s.mu.Unlock()
			return nil
		}
		up := s.up
		s.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		}
	}
}

// Drained waits until the outbox is empty: every event was delivered (or
// dropped as undeliverable).
func (s *Session) Drained(ctx context.Context) error {
	if s.cfg.Outbox == nil {
		return nil
	}
	for {
		s.mu.Lock()
		progress := s.progress
		s.mu.Unlock()
		_, _, ok, err := s.cfg.Outbox.Next()
		if err != nil {
			return fmt.Errorf("mqtt: outbox: %w", err)
		}
		if !ok {
			return nil
		}
		s.Kick()
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		}
	}
}

// PublishTelemetry publishes t (QoS 1, not retained) and waits for the
// broker's acknowledgement. An empty t.Device is the session's device.
func (s *Session) PublishTelemetry(ctx context.Context, t transport.Telemetry) error {
	if t.Device == "" {
		t.Device = s.cfg.DeviceID
	}
	if t.Device != s.cfg.DeviceID {
		return fmt.Errorf("mqtt: telemetry for device %q on the session of %q", t.Device, s.cfg.DeviceID)
	}
	b, err := transport.EncodeTelemetry(t)
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c == nil {
		return ErrNotConnected
	}
	return wait(ctx, c.client.Publish(transport.TelemetryTopic(s.cfg.DeviceID), qos, false, b), c.lost)
}

// Close publishes online=false (retained) if connected, disconnects
// cleanly and stops the session's goroutines. Events still in the outbox
// stay there for the next session. Closing twice is harmless.
func (s *Session) Close(ctx context.Context) error {
	s.cancel()
	all := make(chan struct{})
	go func() {
		s.stopped.Wait()
		close(all)
	}()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: close: %w", ctx.Err())
	}
}

// run is the connection loop.
func (s *Session) run() {
	defer s.stopped.Done()
	defer close(s.done)
	attempt := 0
	for {
		c, err := s.connect()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			attempt++
			d := Backoff(attempt, s.cfg.ReconnectMin, s.cfg.ReconnectMax, s.cfg.Rand())
			s.log.Warn("mqtt connect failed", "broker", s.cfg.Broker, "err", err, "retry_in", d)
			if !s.sleep(d) {
				return
			}
			continue
		}
		s.log.Info("mqtt connected", "broker", s.cfg.Broker)
		s.setConn(c)
		s.serve(c)
		s.setConn(nil)
		if s.ctx.Err() != nil {
			s.goOffline(c)
			return
		}
		c.client.Disconnect(0)
		// The first retry after a drop is jittered too: the whole fleet
		// loses a restarting broker at the same instant.
		attempt = 1
		d := Backoff(attempt, s.cfg.ReconnectMin, s.cfg.ReconnectMax, s.cfg.Rand())
		s.log.Warn("mqtt connection dropped", "retry_in", d)
		if !s.sleep(d) {
			return
		}
	}
}

// sleep waits d, or reports false if the session ends first.
func (s *Session) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *Session) setConn(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = c
	if c != nil {
		s.connects++
		close(s.up)
	} else {
		s.up = make(chan struct{})
	}
}

// goOffline ends a connection for good: online=false retained, then a
// clean DISCONNECT (after which the broker does not send the will).
func (s *Session) goOffline(c *conn) {
	ctx, cancel := context.WithTimeout(context.Background(), offlineTimeout)
	defer cancel()
	tok := c.client.Publish(transport.OnlineTopic(s.cfg.DeviceID), qos, true, transport.EncodeOnline(false))
	if err := wait(ctx, tok, c.lost); err != nil {
		s.log.Warn("mqtt: could not publish online=false", "err", err)
	}
	c.client.Disconnect(disconnectQuiesce)
	s.log.Info("mqtt disconnected")
}

// connect makes one connection: a fresh paho client per attempt, so that
// nothing of a dead connection (pending tokens, stores) leaks into the
// next one. It returns once the on-connect handler has subscribed and
// published online=true.
func (s *Session) connect() (*conn, error) {
	c := &conn{lost: make(chan struct{})}
	var lostOnce sync.Once
	ready := make(chan error, 1)

	opts := paho.NewClientOptions().
		AddBroker(s.cfg.Broker).
		SetClientID(s.cfg.DeviceID).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(s.cfg.KeepAlive).
		SetConnectTimeout(opTimeout).
		SetWriteTimeout(opTimeout).
		SetBinaryWill(transport.OnlineTopic(s.cfg.DeviceID), transport.EncodeOnline(false), qos, true).
		SetDefaultPublishHandler(s.onMessage).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			s.log.Warn("mqtt connection lost", "err", err)
			lostOnce.Do(func() { close(c.lost) })
		}).
		SetOnConnectHandler(func(pc paho.Client) { ready <- s.onConnect(pc, c.lost) })
	if s.cfg.TLS != nil {
		opts.SetTLSConfig(s.cfg.TLS)
	}
	// Our own dialer: every incoming packet passes the size limit before
	// paho reads it whole.
	opts.SetCustomOpenConnectionFn(s.openConn)
	if s.cfg.Username != "" {
		opts.SetUsername(s.cfg.Username)
		opts.SetPassword(s.cfg.Password)
	}
	c.client = paho.NewClient(opts)

	if err := wait(s.ctx, c.client.Connect(), nil); err != nil {
		c.client.Disconnect(0)
		return nil, err
	}
	select {
	case err := <-ready:
		if err != nil {
			c.client.Disconnect(0)
			return nil, err
		}
		return c, nil
	case <-c.lost:
		return nil, errConnLost
	case <-s.ctx.Done():
		c.client.Disconnect(0)
		return nil, s.ctx.Err()
	}
}

// onConnect runs after every successful connect: subscribe to the
// device's and its groups' notify topics, then announce online=true.
func (s *Session) onConnect(pc paho.Client, lost <-chan struct{}) error {
	filters := map[string]byte{transport.NotifyTopic(s.cfg.DeviceID): qos}
	for _, g := range s.cfg.Groups {
		filters[transport.GroupNotifyTopic(g)] = qos
	}
	tok := pc.SubscribeMultiple(filters, nil) // nil: messages go to the default handler
	if err := wait(s.ctx, tok, lost); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for topic, code := range st.Result() {
			if code > qos { // 0x80: refused (e.g. by the broker's ACL)
				return fmt.Errorf("subscribe %s: broker refused (code %#x)", topic, code)
			}
		}
	}
	tok = pc.Publish(transport.OnlineTopic(s.cfg.DeviceID), qos, true, transport.EncodeOnline(true))
	if err := wait(s.ctx, tok, lost); err != nil {
		return fmt.Errorf("publish online: %w", err)
	}
	if s.inventory != nil {
		tok = pc.Publish(transport.InventoryTopic(s.cfg.DeviceID), qos, true, s.inventory)
		if err := wait(s.ctx, tok, lost); err != nil {
			return fmt.Errorf("publish inventory: %w", err)
		}
	}
	return nil
}

// serve delivers outbox events until the connection drops or the session
// ends.
func (s *Session) serve(c *conn) {
	var retry <-chan time.Time // set while the queue is failing
	for {
		err := s.drain(c)
		var qerr *queueError
		switch {
		case err == nil:
			retry = nil
		case errors.As(err, &qerr):
			s.log.Error("mqtt: outbox", "err", err, "retry_in", queueRetry)
			retry = time.After(queueRetry)
		default:
			if s.ctx.Err() == nil {
				s.log.Warn("mqtt: status delivery failed; reconnecting", "err", err)
			}
			return
		}
		select {
		case <-s.kick:
		case <-retry:
		case <-c.lost:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// queueError is a failure of the outbox, as opposed to the connection.
type queueError struct{ err error }

func (e *queueError) Error() string { return e.err.Error() }
func (e *queueError) Unwrap() error { return e.err }

// drain publishes outbox events oldest first, each retained with QoS 1,
// removing each only after its PUBACK.
func (s *Session) drain(c *conn) error {
	q := s.cfg.Outbox
	if q == nil {
		return nil
	}
	topic := transport.StatusTopic(s.cfg.DeviceID)
	for {
		id, payload, ok, err := q.Next()
		if err != nil {
			return &queueError{err}
		}
		if !ok {
			return nil
		}
		st, err := transport.DecodeStatus(payload)
		if err == nil && st.Device != s.cfg.DeviceID {
			err = fmt.Errorf("status for device %q", st.Device)
		}
		if err != nil {
			// Undeliverable forever: drop it rather than block the queue.
			s.log.Error("mqtt: dropping undeliverable status event", "id", id, "err", err)
		} else {
			tctx, cancel := context.WithTimeout(s.ctx, opTimeout)
			err = wait(tctx, c.client.Publish(topic, qos, true, payload), c.lost)
			cancel()
			if err != nil {
				return fmt.Errorf("publish status %s: %w", st.EventID, err)
			}
			s.log.Debug("status delivered", "event", st.EventID, "state", st.State)
		}
		if err := q.Done(id); err != nil {
			return &queueError{err}
		}
		s.mu.Lock()
		close(s.progress)
		s.progress = make(chan struct{})
		s.mu.Unlock()
	}
}

// onMessage handles every incoming PUBLISH. Nothing here may block long
// or panic on bad input: it is paho's delivery goroutine.
func (s *Session) onMessage(_ paho.Client, m paho.Message) {
	topic, payload := m.Topic(), m.Payload()
	if !s.isNotifyTopic(topic) {
		s.log.Warn("mqtt: dropping message on unexpected topic", "topic", topic, "size", len(payload))
		return
	}
	if len(payload) == 0 {
		s.log.Debug("mqtt: empty notice (retained notice cleared, or an oversized one dropped)", "topic", topic)
		return
	}
	n, err := transport.DecodeNotice(payload)
	if err != nil {
		s.log.Warn("mqtt: dropping bad notice", "topic", topic, "size", len(payload), "err", err)
		return
	}
	for { // when the handler is behind, the oldest waiting notice makes room: only the newest matters
		select {
		case s.notices <- n:
			return
		default:
		}
		select {
		case old := <-s.notices:
			s.log.Warn("mqtt: dropping an older notice, handler is behind", "release", old.Release, "newer", n.Release)
		default:
		}
	}
}

func (s *Session) isNotifyTopic(topic string) bool {
	if topic == transport.NotifyTopic(s.cfg.DeviceID) {
		return true
	}
	for _, g := range s.cfg.Groups {
		if topic == transport.GroupNotifyTopic(g) {
			return true
		}
	}
	return false
}

// dispatch hands notices to OnNotice one at a time.
func (s *Session) dispatch() {
	defer s.stopped.Done()
	for {
		select {
		case n := <-s.notices:
			s.log.Info("release notice", "release", n.Release, "manifest", n.Manifest, "sequence", n.Sequence)
			if s.cfg.OnNotice != nil {
				s.cfg.OnNotice(n)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// wait waits for a paho token, the connection's loss (lost may be nil),
// or ctx; a token that does not complete in opTimeout fails.
func wait(ctx context.Context, tok paho.Token, lost <-chan struct{}) error {
	t := time.NewTimer(opTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-lost:
		return errConnLost
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errTimeout
	}
}
