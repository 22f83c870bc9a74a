package attest

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

// BenchmarkHandshake compares attested TLS 1.3 handshakes with plain TLS
// 1.3 handshakes in the same run. Every iteration performs one plain and
// one attested connection (dial, handshake, one byte from server to
// client, both sides done), interleaved so that both see the same machine
// load, and the benchmark reports each one's mean and their ratio
// (metric "x-plain"; ns/op is the sum of the two).
//
//   - fresh: first contact — the verifiers have never seen the peer, so
//     the quote is verified in full (three ECDSA verifications per
//     attested certificate);
//   - repeat: the peer attested before and a full handshake runs again (the
//     peer transport's case: a raft connection never reads, so never
//     stores a session ticket) — the verification comes from the cache;
//   - resumed: TLS 1.3 session resumption, against plain TLS 1.3 resumption.
//
// The plain baseline uses ECDSA P-256 self-signed certificates pinned by
// the verifying side (x509 verification against a pool holding exactly the
// peer's certificate: no chain signature to check), the cheapest plain
// authentication there is.
func BenchmarkHandshake(b *testing.B) {
	f := newFixture(b)
	srvCreds := mustCreds(b, f.p1.NewEnclave(ident(1)))
	cliCreds := mustCreds(b, f.p2.NewEnclave(ident(1)))
	newVerifier := func() *Verifier { return &Verifier{Quotes: f.p1.Verifier(), Policy: Exact(ident(1).UniqueID)} }

	srvCert, cliCert := certWithExtension(b, nil), certWithExtension(b, nil)
	pinned := func(c tls.Certificate) func([][]byte, [][]*x509.Certificate) error {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(leaf)
		return func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			return err
		}
	}
	plainServer := func(mutual bool) *tls.Config {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{srvCert}}
		if mutual {
			cfg.ClientAuth = tls.RequireAnyClientCert
			cfg.VerifyPeerCertificate = pinned(cliCert)
		}
		return cfg
	}
	plainClient := func(mutual, resume bool) *tls.Config {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyPeerCertificate: pinned(srvCert)}
		if mutual {
			cfg.Certificates = []tls.Certificate{cliCert}
		}
		if resume {
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(8)
		}
		return cfg
	}

	for _, mutual := range []bool{false, true} {
		mode := "server-only"
		if mutual {
			mode = "mutual"
		}
		presented := func() *Credentials {
			if mutual {
				return cliCreds
			}
			return nil
		}()
		serverConfig := func(clients *Verifier) *tls.Config {
			if !mutual {
				clients = nil
			}
			return ServerConfig(srvCreds, clients)
		}

		b.Run(mode+"/fresh", func(b *testing.B) {
			plain := newTLSServer(b, plainServer(mutual))
			att := newTLSServer(b, serverConfig(newVerifier()))
			pcli := plainClient(mutual, false)
			compare(b, func() { mustConnect(b, plain, pcli, false) }, func() {
				att.setConfig(serverConfig(newVerifier())) // a server that never saw this client
				mustConnect(b, att, ClientConfig(presented, newVerifier()), false)
			})
		})
		b.Run(mode+"/repeat", func(b *testing.B) {
			plain := newTLSServer(b, plainServer(mutual))
			srvV, cliV := newVerifier(), newVerifier()
			att := newTLSServer(b, serverConfig(srvV))
			pcli := plainClient(mutual, false)
			acli := ClientConfig(presented, cliV)
			acli.ClientSessionCache = nil // a full handshake every time, verified from the cache
			mustConnect(b, att, acli, false)
			compare(b, func() { mustConnect(b, plain, pcli, false) }, func() {
				att.setConfig(serverConfig(srvV)) // a configuration per connection, as the peer transport makes
				mustConnect(b, att, acli, false)
			})
		})
		b.Run(mode+"/resumed", func(b *testing.B) {
			plain := newTLSServer(b, plainServer(mutual))
			att := newTLSServer(b, serverConfig(newVerifier()))
			pcli := plainClient(mutual, true)
			acli := ClientConfig(presented, newVerifier())
			mustConnect(b, plain, pcli, false)
			mustConnect(b, att, acli, false)
			compare(b, func() { mustConnect(b, plain, pcli, true) }, func() { mustConnect(b, att, acli, true) })
		})
	}
}

// compare times plain and attested alternately and reports both means and
// their ratio.
func compare(b *testing.B, plain, attested func()) {
	b.Helper()
	var tp, ta time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		plain()
		t1 := time.Now()
		attested()
		ta += time.Since(t1)
		tp += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(tp.Microseconds())/float64(n), "plain-µs")
	b.ReportMetric(float64(ta.Microseconds())/float64(n), "attested-µs")
	b.ReportMetric(float64(ta)/float64(tp), "x-plain")
}

// mustConnect runs one connection to s and fails unless it succeeds with
// the expected resumption.
func mustConnect(b *testing.B, s *tlsServer, cli *tls.Config, resumed bool) {
	b.Helper()
	srv, c := s.connect(b, cli)
	if srv.err != nil || c.err != nil {
		b.Fatalf("server %v, client %v", srv.err, c.err)
	}
	if c.state.DidResume != resumed {
		b.Fatalf("resumed %v, want %v", c.state.DidResume, resumed)
	}
}
