package attest

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"time"

	"github.com/teeup/teeup/tee"
)

// TLS 1.3 session resumption for attested TLS.
//
// A resumed handshake presents no certificate: the peer proves that it
// holds the resumption secret of an earlier connection, which only the two
// enclaves of that connection know. Go does not call VerifyPeerCertificate
// on such a connection, so both configurations also set VerifyConnection,
// which checks the certificate carried over from the earlier connection
// against the Verifier's current policy, root and clock on every
// connection, resumed or not.
//
// Tickets are short-lived: the server stamps every ticket with the time of
// the full, certificate-verified handshake it descends from (a ticket
// issued on a resumed connection inherits the stamp), and accepts a ticket
// only within the reuse TTL of that stamp; the client forgets a session
// after the same TTL and whenever its policy or root changes.

// ticketStamp prefixes the SessionState.Extra entry that records when the
// session's peers were last verified in a full handshake.
const ticketStamp = "teeup attested tls auth time v1:"

func stamp(t time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte(ticketStamp), uint64(t.UnixNano()))
}

// stampOf returns the authentication time recorded in a session's extra
// data, if any.
func stampOf(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if rest, ok := bytes.CutPrefix(e, []byte(ticketStamp)); ok && len(rest) == 8 {
			return time.Unix(0, int64(binary.BigEndian.Uint64(rest))), true
		}
	}
	return time.Time{}, false
}

// ticketKey derives the session ticket key of one server mode from the
// credentials' secret, so that tickets issued by a server that does not
// authenticate clients are never keyed like those of a mutual one.
func ticketKey(secret [32]byte, mode string) [32]byte {
	h := sha256.New()
	h.Write([]byte("teeup attested tls ticket key v1\x00"))
	h.Write([]byte(mode))
	h.Write([]byte{0})
	h.Write(secret[:])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// enableResumption makes the server configuration cfg issue and accept
// session tickets under key, each accepted only until ttl after the full
// handshake it descends from.
func enableResumption(cfg *tls.Config, key [32]byte, now func() time.Time, ttl time.Duration) {
	cfg.SetSessionTicketKeys([][32]byte{key})
	base := cfg
	// The ticket issued on a resumed connection must inherit the
	// authentication time of the ticket that connection resumed, so each
	// connection gets its own configuration linking the two callbacks.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.GetConfigForClient = nil
		var authAt time.Time
		c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := c.DecryptTicket(identity, cs)
			if err != nil || ss == nil {
				return nil, err
			}
			t, ok := stampOf(ss.Extra)
			n := now()
			if !ok || n.Before(t) || n.Sub(t) > ttl {
				return nil, nil // too old: a full handshake verifies the peer again
			}
			if authAt.IsZero() || t.Before(authAt) {
				authAt = t
			}
			return ss, nil
		}
		c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			t := now()
			if cs.DidResume {
				t = authAt // zero (never accepted) if no ticket was unwrapped
			}
			ss.Extra = append(ss.Extra, stamp(t))
			return c.EncryptTicket(cs, ss)
		}
		return c, nil
	}
}

// sessionCache is a client's bounded cache of TLS sessions (one per server
// address), tied to a Verifier: sessions expire after its reuse TTL and are
// all dropped when its policy or quote verifier changes.
type sessionCache struct {
	v *Verifier
}

// session is one cached client session.
type session struct {
	key   string
	state *tls.ClientSessionState
	at    time.Time
}

// sessionStore is the state of a Verifier's session cache, guarded by the
// Verifier's mutex.
type sessionStore struct {
	max     int
	quotes  tee.QuoteVerifier
	policy  Policy
	entries map[string]*list.Element // of *session
	lru     list.List
}

// Get implements tls.ClientSessionCache.
func (c sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	v := c.v
	quotes, policy := v.current()
	now := v.now()
	ttl := v.reuseTTL()
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.sessionStoreLocked(quotes, policy)
	el, ok := s.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*session)
	if now.Before(e.at) || now.Sub(e.at) > ttl {
		delete(s.entries, key)
		s.lru.Remove(el)
		return nil, false
	}
	s.lru.MoveToFront(el)
	return e.state, true
}

// Put implements tls.ClientSessionCache; a nil state removes the entry.
func (c sessionCache) Put(key string, cs *tls.ClientSessionState) {
	v := c.v
	quotes, policy := v.current()
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.sessionStoreLocked(quotes, policy)
	if el, ok := s.entries[key]; ok {
		delete(s.entries, key)
		s.lru.Remove(el)
	}
	if cs == nil {
		return
	}
	s.entries[key] = s.lru.PushFront(&session{key: key, state: cs, at: now})
	for s.lru.Len() > s.max {
		last := s.lru.Back()
		delete(s.entries, last.Value.(*session).key)
		s.lru.Remove(last)
	}
}

// sessionStoreLocked returns the Verifier's session store, created on first
// use and emptied when the policy or quote verifier changed. v.mu is held.
func (v *Verifier) sessionStoreLocked(quotes tee.QuoteVerifier, policy Policy) *sessionStore {
	if v.sessions == nil {
		v.sessions = &sessionStore{max: v.cacheSize(), entries: make(map[string]*list.Element)}
	}
	s := v.sessions
	if !sameValue(s.quotes, quotes) || !sameValue(s.policy, policy) {
		clear(s.entries)
		s.lru.Init()
		s.quotes, s.policy = quotes, policy
	}
	return s
}
