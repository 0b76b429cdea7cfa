package serve

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/identity"
)

// Listener IDs as the broker's hooks see them.
const (
	listenerPlain = "mqtt"
	listenerTLS   = "mqtts"
)

// SubscribersPrefix starts the topics an admin operator subscribes to, to
// ask serve how many devices follow a topic: subscribing to
// SubscribersPrefix+topic makes serve publish a Subscribers message there
// (not retained). Other brokers refuse or ignore the subscription.
const SubscribersPrefix = "$SYS/graft/subscribers/"

// Subscribers answers a subscriber query.
type Subscribers struct {
	Subscribed int `cbor:"1,keyasint"` // device sessions subscribed to the topic (connected or not)
	Connected  int `cbor:"2,keyasint"` // of those, connected now
}

// DecodeSubscribers decodes serve's answer to a subscriber query.
func DecodeSubscribers(b []byte) (Subscribers, error) {
	var s Subscribers
	if len(b) > 64 {
		return s, fmt.Errorf("serve: subscribers answer of %d bytes", len(b))
	}
	err := cbor.Unmarshal(b, &s)
	return s, err
}

// ErrRetainedQuota is the reason a client is disconnected when it tries
// to hold more retained messages than Options.RetainedPerClient.
var ErrRetainedQuota = errors.New("serve: retained message quota exceeded")

// revocations holds the CA's CRL, read again when the file changes.
type revocations struct {
	path string
	ca   *x509.Certificate

	mu    sync.Mutex
	stamp string
	list  *ca.Revocations
}

// current returns the revocation list, reloading crl.pem if it changed.
// A CRL that no longer parses or verifies keeps the last good list (and
// an error is logged by the caller); at start it is an error.
func (r *revocations) current() (*ca.Revocations, bool, error) {
	fi, err := os.Stat(r.path)
	if err != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.list, false, fmt.Errorf("serve: revocation list: %w", err)
	}
	stamp := fmt.Sprint(fi.ModTime().UnixNano(), fi.Size(), fi.Sys())
	r.mu.Lock()
	defer r.mu.Unlock()
	if stamp == r.stamp && r.list != nil {
		return r.list, false, nil
	}
	l, err := ca.LoadCRL(r.path, r.ca)
	if err != nil {
		return r.list, false, err
	}
	r.list, r.stamp = l, stamp
	return l, true, nil
}

// session is what the hook knows of a connected client.
type session struct {
	id     identity.Identity
	local  bool // plain loopback listener: trusted like the machine's users
	serial string
	cert   *x509.Certificate
}

// fleetHook authenticates clients by their certificate, binds the client
// ID to the identity, applies identity.Allowed, limits retained messages
// per client and answers subscriber queries.
type fleetHook struct {
	mqtt.HookBase
	log      *slog.Logger
	broker   *mqtt.Server
	revoked  *revocations // nil: no TLS listener
	quota    int
	sessions sync.Map // *mqtt.Client → session

	mu       sync.Mutex
	retained map[string]string // retained topic → client ID that set it
	held     map[string]int    // client ID → retained topics it holds
}

func (h *fleetHook) ID() string { return "graft-fleet" }

func (h *fleetHook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect,
		mqtt.OnPublish, mqtt.OnSubscribed,
	}, []byte{b})
}

// verifyConnection runs in the TLS handshake: the chain is verified by
// then (RequireAndVerifyClientCert); refuse revoked certificates and
// certificates that carry no graft identity.
func (h *fleetHook) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	if _, err := identity.FromCertificate(leaf); err != nil {
		return err
	}
	list, _, err := h.revoked.current()
	if err != nil && list == nil {
		return err
	}
	if list.Revoked(leaf.SerialNumber) {
		return fmt.Errorf("certificate %s (serial %s) is revoked", leaf.Subject.CommonName, leaf.SerialNumber)
	}
	return nil
}

func (h *fleetHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if cl.Net.Listener == listenerPlain {
		h.sessions.Store(cl, session{local: true})
		return true
	}
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		h.log.Warn("refused: not a TLS connection", "client", cl.ID, "remote", cl.Net.Remote)
		return false
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return false
	}
	leaf := st.PeerCertificates[0]
	id, err := identity.FromCertificate(leaf)
	if err != nil {
		h.log.Warn("refused", "client", cl.ID, "remote", cl.Net.Remote, "err", err)
		return false
	}
	if pk.Connect.ClientIdentifier != id.String() {
		h.log.Warn("refused: client ID is not the certificate's identity", "client", pk.Connect.ClientIdentifier, "identity", id.String(), "remote", cl.Net.Remote)
		return false
	}
	if pk.Connect.WillFlag && !identity.Allowed(id, pk.Connect.WillTopic, identity.Publish) {
		h.log.Warn("refused: will on a topic the client may not publish", "client", cl.ID, "topic", pk.Connect.WillTopic)
		return false
	}
	h.sessions.Store(cl, session{id: id, serial: leaf.SerialNumber.String(), cert: leaf})
	return true
}

func (h *fleetHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.sessions.Delete(cl)
}

func (h *fleetHook) session(cl *mqtt.Client) (session, bool) {
	v, ok := h.sessions.Load(cl)
	if !ok {
		return session{}, false
	}
	return v.(session), true
}

func (h *fleetHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s, ok := h.session(cl)
	if !ok {
		return false
	}
	if s.local {
		return true
	}
	if !write && s.id.Kind == identity.Operator && s.id.Role == identity.RoleAdmin && strings.HasPrefix(topic, SubscribersPrefix) {
		return identity.Allowed(s.id, strings.TrimPrefix(topic, SubscribersPrefix), identity.Publish)
	}
	access := identity.Subscribe
	if write {
		access = identity.Publish
	}
	if !identity.Allowed(s.id, topic, access) {
		h.log.Info("refused by ACL", "client", cl.ID, "topic", topic, "access", access)
		return false
	}
	return true
}

// OnPublish counts the retained topics each client holds and disconnects
// a client that would go over its quota.
func (h *fleetHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !pk.FixedHeader.Retain || cl.Net.Inline {
		return pk, nil
	}
	h.mu.Lock()
	owner, exists := h.retained[pk.TopicName]
	switch {
	case len(pk.Payload) == 0: // clears the retained message
		if exists {
			delete(h.retained, pk.TopicName)
			h.held[owner]--
		}
	case exists && owner == cl.ID:
	case h.held[cl.ID] >= h.quota:
		h.mu.Unlock()
		h.log.Warn("disconnected: retained message quota", "client", cl.ID, "quota", h.quota, "topic", pk.TopicName)
		cl.Stop(ErrRetainedQuota)
		return pk, packets.ErrRejectPacket
	default:
		if exists {
			h.held[owner]--
		}
		h.retained[pk.TopicName] = cl.ID
		h.held[cl.ID]++
	}
	if h.held[owner] <= 0 {
		delete(h.held, owner)
	}
	h.mu.Unlock()
	return pk, nil
}

// OnSubscribed answers subscriber queries.
func (h *fleetHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	for i, sub := range pk.Filters {
		if i >= len(codes) || codes[i] >= 0x80 || !strings.HasPrefix(sub.Filter, SubscribersPrefix) {
			continue
		}
		topic := strings.TrimPrefix(sub.Filter, SubscribersPrefix)
		ans := h.count(topic)
		b, err := cbor.Marshal(ans)
		if err != nil {
			continue
		}
		go func() {
			if err := h.broker.Publish(sub.Filter, b, false, 0); err != nil {
				h.log.Warn("subscriber query answer", "err", err)
			}
		}()
	}
}

// count is how many device sessions subscribe to topic.
func (h *fleetHook) count(topic string) Subscribers {
	var ans Subscribers
	for clientID := range h.broker.Topics.Subscribers(topic).Subscriptions {
		if transport.ValidID(clientID) != nil { // operators and tools
			continue
		}
		ans.Subscribed++
		if c, ok := h.broker.Clients.Get(clientID); ok && !c.Closed() {
			ans.Connected++
		}
	}
	return ans
}

// dropRevoked disconnects the connected clients whose certificate the
// current revocation list names.
func (h *fleetHook) dropRevoked(list *ca.Revocations) {
	h.sessions.Range(func(k, v any) bool {
		s := v.(session)
		if s.cert != nil && list.Revoked(s.cert.SerialNumber) {
			h.log.Warn("disconnected: certificate revoked", "client", s.id.String(), "serial", s.serial)
			k.(*mqtt.Client).Stop(errors.New("certificate revoked"))
		}
		return true
	})
}

// watchRevocations reloads the CRL every interval until stop is closed.
func (h *fleetHook) watchRevocations(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		list, changed, err := h.revoked.current()
		if err != nil {
			h.log.Error("revocation list not reloaded; keeping the last one", "err", err)
		}
		if changed {
			h.dropRevoked(list)
		}
	}
}
