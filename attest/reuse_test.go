package attest

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeup/teeup/tee"
)

// countingQuotes counts full quote verifications.
type countingQuotes struct {
	tee.QuoteVerifier
	n atomic.Int64
}

func (c *countingQuotes) VerifyQuote(q []byte) (tee.Report, error) {
	c.n.Add(1)
	return c.QuoteVerifier.VerifyQuote(q)
}

// togglePolicy is one policy object whose verdict a test flips, so that a
// refusal cannot come from the cache being emptied on a policy change.
type togglePolicy struct {
	inner Policy
	deny  atomic.Bool
}

func (p *togglePolicy) Check(id tee.Identity) error {
	if p.deny.Load() {
		return ErrMeasurementNotAllowed
	}
	return p.inner.Check(id)
}

func (p *togglePolicy) String() string { return "toggle(" + p.inner.String() + ")" }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestCacheReusesTheVerificationOfTheSameCertificate(t *testing.T) {
	f := newFixture(t)
	q := &countingQuotes{QuoteVerifier: f.p1.Verifier()}
	v := &Verifier{Quotes: q, Policy: Exact(ident(1).UniqueID)}
	a := mustCreds(t, f.p1.NewEnclave(ident(1)))
	b := mustCreds(t, f.p2.NewEnclave(ident(1)))
	for range 3 {
		p, err := v.VerifyCertificate(a.Certificate.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if p.Identity != ident(1) {
			t.Fatalf("identity %+v", p.Identity)
		}
	}
	if got := q.n.Load(); got != 1 {
		t.Fatalf("3 verifications of one certificate verified %d quotes, want 1", got)
	}
	if _, err := v.VerifyCertificate(b.Certificate.Certificate[0]); err != nil {
		t.Fatal(err)
	}
	if got := q.n.Load(); got != 2 {
		t.Fatalf("another certificate: %d quote verifications, want 2", got)
	}
	// A byte changed anywhere is another certificate: verified in full (and refused).
	der := append([]byte(nil), a.Certificate.Certificate[0]...)
	der[len(der)-1] ^= 1
	if _, err := v.VerifyCertificate(der); err == nil {
		t.Fatal("a certificate with a corrupted signature was accepted")
	}
}

// TestCacheHitEnforcesPolicy: a cached certificate is refused as soon as
// the policy refuses its identity — whether the policy object changes
// (the cache is emptied) or the same policy object changes its mind (the
// check runs on every hit).
func TestCacheHitEnforcesPolicy(t *testing.T) {
	f := newFixture(t)
	creds := mustCreds(t, f.p1.NewEnclave(ident(1)))
	der := creds.Certificate.Certificate[0]

	t.Run("same policy object re-checked on every hit", func(t *testing.T) {
		q := &countingQuotes{QuoteVerifier: f.p1.Verifier()}
		pol := &togglePolicy{inner: Exact(ident(1).UniqueID)}
		v := &Verifier{Quotes: q, Policy: pol}
		if _, err := v.VerifyCertificate(der); err != nil {
			t.Fatal(err)
		}
		pol.deny.Store(true)
		if _, err := v.VerifyCertificate(der); !errors.Is(err, ErrMeasurementNotAllowed) {
			t.Fatalf("cached certificate under a refusing policy: %v, want ErrMeasurementNotAllowed", err)
		}
		if q.n.Load() != 1 {
			t.Fatalf("%d quote verifications: the refusal did not come from the cache hit", q.n.Load())
		}
		pol.deny.Store(false)
		if _, err := v.VerifyCertificate(der); err != nil {
			t.Fatal(err)
		}
	})
	for _, tt := range []struct {
		name   string
		change func(v *Verifier, p Policy)
	}{
		{"SetPolicy", func(v *Verifier, p Policy) { v.SetPolicy(p) }},
		{"field assignment", func(v *Verifier, p Policy) { v.Policy = p }},
	} {
		t.Run("policy replaced by "+tt.name, func(t *testing.T) {
			q := &countingQuotes{QuoteVerifier: f.p1.Verifier()}
			v := &Verifier{Quotes: q, Policy: Exact(ident(1).UniqueID)}
			if _, err := v.VerifyCertificate(der); err != nil {
				t.Fatal(err)
			}
			tt.change(v, Exact(ident(2).UniqueID))
			_, err := v.VerifyCertificate(der)
			if !errors.Is(err, ErrMeasurementNotAllowed) || !strings.Contains(err.Error(), "expected "+ident(2).UniqueID.String()) {
				t.Fatalf("cached certificate under a new policy: %v", err)
			}
			// Allowing it again needs a full verification: the cache was emptied.
			tt.change(v, Exact(ident(1).UniqueID, ident(2).UniqueID))
			if _, err := v.VerifyCertificate(der); err != nil {
				t.Fatal(err)
			}
			if got := q.n.Load(); got != 3 {
				t.Fatalf("%d quote verifications, want 3 (each policy change empties the cache)", got)
			}
		})
	}
	t.Run("debug identity refused by a policy without debug", func(t *testing.T) {
		id := ident(1)
		id.Debug = true
		dc := mustCreds(t, f.p1.NewEnclave(id))
		v := &Verifier{Quotes: f.p1.Verifier(), Policy: Exact(id.UniqueID).AllowingDebug()}
		if _, err := v.VerifyCertificate(dc.Certificate.Certificate[0]); err != nil {
			t.Fatal(err)
		}
		v.SetPolicy(Exact(id.UniqueID))
		if _, err := v.VerifyCertificate(dc.Certificate.Certificate[0]); !errors.Is(err, ErrDebugEnclave) {
			t.Fatalf("cached debug enclave under a production policy: %v", err)
		}
	})
}

func TestCacheEmptiedWhenTheRootChanges(t *testing.T) {
	f := newFixture(t)
	creds := mustCreds(t, f.p1.NewEnclave(ident(1)))
	v := &Verifier{Quotes: f.p1.Verifier(), Policy: Exact(ident(1).UniqueID)}
	if _, err := v.VerifyCertificate(creds.Certificate.Certificate[0]); err != nil {
		t.Fatal(err)
	}
	v.SetQuotes(f.foreign.Verifier())
	if _, err := v.VerifyCertificate(creds.Certificate.Certificate[0]); err == nil || !strings.Contains(err.Error(), "does not chain to the pinned root") {
		t.Fatalf("cached certificate after the root changed: %v", err)
	}
	if v.Cached() != 0 {
		t.Fatalf("%d entries cached after a refusal under the new root", v.Cached())
	}
}

func TestCacheExpiry(t *testing.T) {
	f := newFixture(t)
	creds := mustCreds(t, f.p1.NewEnclave(ident(1)))
	der := creds.Certificate.Certificate[0]
	clk := newClock()
	q := &countingQuotes{QuoteVerifier: f.p1.Verifier()}
	v := &Verifier{Quotes: q, Policy: Exact(ident(1).UniqueID), Now: clk.Now, ReuseTTL: time.Minute}
	if _, err := v.VerifyCertificate(der); err != nil {
		t.Fatal(err)
	}
	clk.advance(59 * time.Second)
	if _, err := v.VerifyCertificate(der); err != nil || q.n.Load() != 1 {
		t.Fatalf("within the TTL: %v, %d quote verifications (want a hit)", err, q.n.Load())
	}
	clk.advance(2 * time.Second) // 61 s after the full verification
	if _, err := v.VerifyCertificate(der); err != nil || q.n.Load() != 2 {
		t.Fatalf("past the TTL: %v, %d quote verifications (want a full one)", err, q.n.Load())
	}
	// The certificate itself expires: refused although cached a moment ago.
	clk.advance(30 * time.Second)
	if _, err := v.VerifyCertificate(der); err != nil || q.n.Load() != 2 {
		t.Fatalf("re-cached: %v, %d", err, q.n.Load())
	}
	clk.mu.Lock()
	clk.t = creds.Certificate.Leaf.NotAfter.Add(time.Second)
	clk.mu.Unlock()
	v.ReuseTTL = 100 * 365 * 24 * time.Hour // so only the validity check can refuse
	if _, err := v.VerifyCertificate(der); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("expired certificate: %v", err)
	}
	// A clock that goes back before the verification does not hit either.
	clk.mu.Lock()
	clk.t = time.Now().Add(-time.Minute)
	clk.mu.Unlock()
	before := q.n.Load()
	if _, err := v.VerifyCertificate(der); err != nil || q.n.Load() != before+1 {
		t.Fatalf("clock moved back: %v, %d quote verifications (want a full one)", err, q.n.Load()-before)
	}
}

func TestCacheIsBounded(t *testing.T) {
	f := newFixture(t)
	q := &countingQuotes{QuoteVerifier: f.p1.Verifier()}
	v := &Verifier{Quotes: q, Policy: Exact(ident(1).UniqueID), CacheSize: 3}
	var ders [][]byte
	for range 5 {
		ders = append(ders, mustCreds(t, f.p1.NewEnclave(ident(1))).Certificate.Certificate[0])
	}
	for _, d := range ders {
		if _, err := v.VerifyCertificate(d); err != nil {
			t.Fatal(err)
		}
		if v.Cached() > 3 {
			t.Fatalf("%d entries cached, bound 3", v.Cached())
		}
	}
	if v.Cached() != 3 {
		t.Fatalf("%d entries cached, want 3", v.Cached())
	}
	n := q.n.Load()
	if _, err := v.VerifyCertificate(ders[4]); err != nil || q.n.Load() != n {
		t.Fatalf("most recent certificate: %v, re-verified %d", err, q.n.Load()-n)
	}
	if _, err := v.VerifyCertificate(ders[0]); err != nil || q.n.Load() != n+1 {
		t.Fatalf("evicted certificate: %v, %d full verifications (want 1)", err, q.n.Load()-n)
	}
}

func TestReuseOff(t *testing.T) {
	f := newFixture(t)
	creds := mustCreds(t, f.p1.NewEnclave(ident(1)))
	q := &countingQuotes{QuoteVerifier: f.p1.Verifier()}
	v := &Verifier{Quotes: q, Policy: Exact(ident(1).UniqueID), ReuseTTL: -1}
	for range 2 {
		if _, err := v.VerifyCertificate(creds.Certificate.Certificate[0]); err != nil {
			t.Fatal(err)
		}
	}
	if q.n.Load() != 2 || v.Cached() != 0 {
		t.Fatalf("%d quote verifications, %d cached; want 2, 0", q.n.Load(), v.Cached())
	}
	if ClientConfig(nil, v).ClientSessionCache != nil {
		t.Error("client caches sessions with reuse off")
	}
	if !ServerConfig(creds, v).SessionTicketsDisabled {
		t.Error("mutual server issues tickets with reuse off")
	}
}

// tlsServer accepts connections on one loopback address (so that clients'
// sessions, cached by address, can resume) and handshakes each with the
// configuration current at accept time.
type tlsServer struct {
	ln      net.Listener
	mu      sync.Mutex
	cfg     *tls.Config
	results chan connResult
}

type connResult struct {
	state tls.ConnectionState
	err   error
}

func newTLSServer(t testing.TB, cfg *tls.Config) *tlsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{ln: ln, cfg: cfg, results: make(chan connResult, 1)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			cfg := s.cfg
			s.mu.Unlock()
			tc := tls.Server(c, cfg)
			err = tc.Handshake()
			if err == nil {
				// The session ticket precedes this byte: the client stores it when reading.
				_, err = io.WriteString(tc, "k")
			}
			s.results <- connResult{tc.ConnectionState(), err}
			c.Close()
		}
	}()
	return s
}

func (s *tlsServer) setConfig(cfg *tls.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
}

// connect runs one connection to s and returns both sides' states and errors.
func (s *tlsServer) connect(t testing.TB, cli *tls.Config) (server, client connResult) {
	t.Helper()
	raw, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tc := tls.Client(raw, cli)
	err = tc.Handshake()
	if err == nil {
		_, err = io.ReadFull(tc, make([]byte, 1))
	}
	client = connResult{tc.ConnectionState(), err}
	tc.Close()
	return <-s.results, client
}

// resumptionFixture is a mutual attested pair: server creds and verifier of
// clients, client creds and verifier of the server, on one clock.
type resumptionFixture struct {
	srvCreds, cliCreds *Credentials
	srvV, cliV         *Verifier
	srvPol, cliPol     *togglePolicy
	clk                *clock
}

func newResumptionFixture(t *testing.T) *resumptionFixture {
	f := newFixture(t)
	r := &resumptionFixture{
		srvCreds: mustCreds(t, f.p1.NewEnclave(ident(1))),
		cliCreds: mustCreds(t, f.p2.NewEnclave(ident(1))),
		srvPol:   &togglePolicy{inner: Exact(ident(1).UniqueID)},
		cliPol:   &togglePolicy{inner: Exact(ident(1).UniqueID)},
		clk:      newClock(),
	}
	r.srvV = &Verifier{Quotes: f.p1.Verifier(), Policy: r.srvPol, Now: r.clk.Now}
	r.cliV = &Verifier{Quotes: f.p2.Verifier(), Policy: r.cliPol, Now: r.clk.Now}
	return r
}

func mustSucceed(t *testing.T, what string, srv, cli connResult, wantResumed bool) {
	t.Helper()
	if srv.err != nil || cli.err != nil {
		t.Fatalf("%s: server %v, client %v", what, srv.err, cli.err)
	}
	if srv.state.DidResume != wantResumed || cli.state.DidResume != wantResumed {
		t.Fatalf("%s: resumed server %v client %v, want %v", what, srv.state.DidResume, cli.state.DidResume, wantResumed)
	}
}

func TestResumption(t *testing.T) {
	r := newResumptionFixture(t)
	s := newTLSServer(t, ServerConfig(r.srvCreds, r.srvV))
	cli := ClientConfig(r.cliCreds, r.cliV)
	srv, c := s.connect(t, cli)
	mustSucceed(t, "first connection", srv, c, false)
	srv, c = s.connect(t, cli)
	mustSucceed(t, "second connection", srv, c, true)
	// Both sides still know who the other is, from the session.
	sp, err := r.srvV.PeerFromState(srv.state)
	if err != nil || sp.Certificate.Equal(r.cliCreds.Certificate.Leaf) == false {
		t.Fatalf("server's peer on a resumed connection: %v", err)
	}
	cp, err := r.cliV.PeerFromState(c.state)
	if err != nil || cp.Certificate.Equal(r.srvCreds.Certificate.Leaf) == false {
		t.Fatalf("client's peer on a resumed connection: %v", err)
	}
	// A configuration made afresh for each connection (as the peer
	// transport does) still resumes: ticket keys belong to the credentials.
	s.setConfig(ServerConfig(r.srvCreds, r.srvV))
	srv, c = s.connect(t, ClientConfig(r.cliCreds, r.cliV))
	mustSucceed(t, "fresh configurations", srv, c, true)
}

// TestResumedConnectionWithADisallowedMeasurementIsRefused: a session
// established while the peer's measurement was allowed does not let it back
// in once the policy refuses it — on either side.
func TestResumedConnectionWithADisallowedMeasurementIsRefused(t *testing.T) {
	for _, side := range []string{"server", "client"} {
		t.Run("refused by the "+side, func(t *testing.T) {
			r := newResumptionFixture(t)
			s := newTLSServer(t, ServerConfig(r.srvCreds, r.srvV))
			cli := ClientConfig(r.cliCreds, r.cliV)
			srv, c := s.connect(t, cli)
			mustSucceed(t, "first connection", srv, c, false)
			srv, c = s.connect(t, cli)
			mustSucceed(t, "resumed connection", srv, c, true)
			pol := r.srvPol
			if side == "client" {
				pol = r.cliPol
			}
			pol.deny.Store(true)
			srv, c = s.connect(t, cli)
			refuser := srv.err
			if side == "client" {
				refuser = c.err
			}
			if !errors.Is(refuser, ErrMeasurementNotAllowed) {
				t.Fatalf("resumption with a refused measurement: %s error %v (server %v, client %v)", side, refuser, srv.err, c.err)
			}
			pol.deny.Store(false)
			srv, c = s.connect(t, cli)
			if srv.err != nil || c.err != nil {
				t.Fatalf("allowed again: server %v, client %v", srv.err, c.err)
			}
		})
	}
	t.Run("client policy replaced", func(t *testing.T) {
		r := newResumptionFixture(t)
		s := newTLSServer(t, ServerConfig(r.srvCreds, r.srvV))
		cli := ClientConfig(r.cliCreds, r.cliV)
		srv, c := s.connect(t, cli)
		mustSucceed(t, "first connection", srv, c, false)
		r.cliV.SetPolicy(Exact(ident(2).UniqueID))
		_, c = s.connect(t, cli)
		if !errors.Is(c.err, ErrMeasurementNotAllowed) {
			t.Fatalf("client with a new policy: %v", c.err)
		}
	})
}

func TestTicketsAreShortLived(t *testing.T) {
	t.Run("the server refuses a ticket past its TTL", func(t *testing.T) {
		r := newResumptionFixture(t)
		r.srvV.ReuseTTL = 10 * time.Minute
		r.cliV.ReuseTTL = 10 * time.Hour // the client would resume
		s := newTLSServer(t, ServerConfig(r.srvCreds, r.srvV))
		cli := ClientConfig(r.cliCreds, r.cliV)
		srv, c := s.connect(t, cli)
		mustSucceed(t, "first connection", srv, c, false)
		r.clk.advance(11 * time.Minute)
		srv, c = s.connect(t, cli)
		mustSucceed(t, "after the TTL", srv, c, false)
	})
	t.Run("a ticket issued on a resumed connection keeps the first authentication time", func(t *testing.T) {
		r := newResumptionFixture(t)
		r.srvV.ReuseTTL = 10 * time.Minute
		r.cliV.ReuseTTL = 10 * time.Hour
		s := newTLSServer(t, ServerConfig(r.srvCreds, r.srvV))
		cli := ClientConfig(r.cliCreds, r.cliV)
		srv, c := s.connect(t, cli)
		mustSucceed(t, "full handshake at 0", srv, c, false)
		r.clk.advance(6 * time.Minute)
		srv, c = s.connect(t, cli)
		mustSucceed(t, "resumed at 6 min", srv, c, true)
		r.clk.advance(6 * time.Minute)
		srv, c = s.connect(t, cli)
		mustSucceed(t, "at 12 min, 6 min after the last ticket but 12 after the full handshake", srv, c, false)
		r.clk.advance(time.Minute)
		srv, c = s.connect(t, cli)
		mustSucceed(t, "the chain restarts from the new full handshake", srv, c, true)
	})
	t.Run("the client forgets a session past its TTL", func(t *testing.T) {
		r := newResumptionFixture(t)
		r.srvV.ReuseTTL = 10 * time.Hour
		r.cliV.ReuseTTL = time.Minute
		s := newTLSServer(t, ServerConfig(r.srvCreds, r.srvV))
		cli := ClientConfig(r.cliCreds, r.cliV)
		srv, c := s.connect(t, cli)
		mustSucceed(t, "first connection", srv, c, false)
		r.clk.advance(2 * time.Minute)
		srv, c = s.connect(t, cli)
		mustSucceed(t, "after the client's TTL", srv, c, false)
	})
}

// TestTicketsDoNotCrossServerModes: a ticket from a server that does not
// authenticate clients (the client API) never resumes on a mutual server
// (peering) with the same credentials.
func TestTicketsDoNotCrossServerModes(t *testing.T) {
	r := newResumptionFixture(t)
	open := newTLSServer(t, ServerConfig(r.srvCreds, nil))
	mutual := newTLSServer(t, ServerConfig(r.srvCreds, r.srvV))
	cli := ClientConfig(r.cliCreds, r.cliV)
	cli.ServerName = "same-cache-key" // the client offers the first server's session to the second
	srv, c := open.connect(t, cli)
	mustSucceed(t, "server-only", srv, c, false)
	srv, c = open.connect(t, cli)
	mustSucceed(t, "server-only again", srv, c, true)
	srv, c = mutual.connect(t, cli)
	mustSucceed(t, "mutual with the server-only session", srv, c, false)
	if len(srv.state.PeerCertificates) == 0 {
		t.Fatal("mutual server has no client certificate")
	}
}

// TestServerOnlyResumption: a client of the client API resumes, and its own
// policy is enforced on the resumed connection.
func TestServerOnlyResumption(t *testing.T) {
	r := newResumptionFixture(t)
	s := newTLSServer(t, ServerConfig(r.srvCreds, nil))
	cli := ClientConfig(nil, r.cliV)
	srv, c := s.connect(t, cli)
	mustSucceed(t, "first", srv, c, false)
	srv, c = s.connect(t, cli)
	mustSucceed(t, "second", srv, c, true)
	r.cliPol.deny.Store(true)
	_, c = s.connect(t, cli)
	if !errors.Is(c.err, ErrMeasurementNotAllowed) {
		t.Fatalf("resumed connection to a refused server: %v", c.err)
	}
}

func TestTicketStamp(t *testing.T) {
	now := time.Unix(1_700_000_000, 123)
	got, ok := stampOf([][]byte{[]byte("other layer"), stamp(now)})
	if !ok || !got.Equal(now) {
		t.Fatalf("stampOf = %v, %v", got, ok)
	}
	for _, extra := range [][][]byte{nil, {[]byte(ticketStamp)}, {append([]byte(ticketStamp), 1, 2, 3)}} {
		if _, ok := stampOf(extra); ok {
			t.Errorf("stampOf(%q) found a stamp", extra)
		}
	}
}

// TestPeerFromStateDoesNotVerifyAgain: after a handshake, reading the peer
// from the connection state (as the peer transport does) is a cache hit,
// not a second verification of the quote.
func TestPeerFromStateDoesNotVerifyAgain(t *testing.T) {
	f := newFixture(t)
	srvCreds := mustCreds(t, f.p1.NewEnclave(ident(1)))
	cliCreds := mustCreds(t, f.p2.NewEnclave(ident(1)))
	sq, cq := &countingQuotes{QuoteVerifier: f.p1.Verifier()}, &countingQuotes{QuoteVerifier: f.p2.Verifier()}
	srvV := &Verifier{Quotes: sq, Policy: Exact(ident(1).UniqueID)}
	cliV := &Verifier{Quotes: cq, Policy: Exact(ident(1).UniqueID)}
	s := newTLSServer(t, ServerConfig(srvCreds, srvV))
	cli := ClientConfig(cliCreds, cliV)
	cli.ClientSessionCache = nil // full handshakes only
	for i := range 3 {
		srv, c := s.connect(t, cli)
		mustSucceed(t, "handshake", srv, c, false)
		if _, err := srvV.PeerFromState(srv.state); err != nil {
			t.Fatal(err)
		}
		if _, err := cliV.PeerFromState(c.state); err != nil {
			t.Fatal(err)
		}
		if sq.n.Load() != 1 || cq.n.Load() != 1 {
			t.Fatalf("after %d handshakes and PeerFromState: server verified %d quotes, client %d; want 1 each", i+1, sq.n.Load(), cq.n.Load())
		}
	}
}
