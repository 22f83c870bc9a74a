package attest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

type fixture struct {
	ca, otherCA *sim.CA
	p1, p2      *sim.Platform // same root
	foreign     *sim.Platform // another root
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.InitCA(dir + "/ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := sim.InitCA(dir + "/other-ca")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, otherCA: other}
	if f.p1, err = sim.InitPlatform(dir+"/p1", ca); err != nil {
		t.Fatal(err)
	}
	if f.p2, err = sim.InitPlatform(dir+"/p2", ca); err != nil {
		t.Fatal(err)
	}
	if f.foreign, err = sim.InitPlatform(dir+"/p3", other); err != nil {
		t.Fatal(err)
	}
	return f
}

func ident(b byte) tee.Identity {
	var id tee.Identity
	id.UniqueID[0] = b
	id.SignerID[0] = 0x51
	id.ProductID = 7
	id.SecurityVersion = 3
	return id
}

func TestPolicyCheck(t *testing.T) {
	a, b := ident(1), ident(2)
	debugA := a
	debugA.Debug = true
	lowSVN := a
	lowSVN.SecurityVersion = 1
	otherProduct := a
	otherProduct.ProductID = 8
	otherSigner := a
	otherSigner.SignerID[0] = 0x52
	signer := &SignerPolicy{Signer: a.SignerID, ProductID: 7, MinSVN: 2}

	tests := []struct {
		name    string
		policy  Policy
		id      tee.Identity
		wantErr error
		wantMsg []string
	}{
		{"exact accepts member", Exact(a.UniqueID, b.UniqueID), b, nil, nil},
		{"exact rejects other measurement", Exact(a.UniqueID), b, ErrMeasurementNotAllowed, []string{b.UniqueID.String(), a.UniqueID.String(), "presented", "expected"}},
		{"exact rejects debug", Exact(a.UniqueID), debugA, ErrDebugEnclave, []string{"debug"}},
		{"exact allowing debug accepts debug", Exact(a.UniqueID).AllowingDebug(), debugA, nil, nil},
		{"empty exact rejects all", Exact(), a, ErrMeasurementNotAllowed, []string{"empty policy"}},
		{"signer accepts", signer, a, nil, nil},
		{"signer rejects low svn", signer, lowSVN, ErrSignerNotAllowed, []string{"SVN 1", "at least 2"}},
		{"signer rejects other product", signer, otherProduct, ErrSignerNotAllowed, []string{"product ID 8"}},
		{"signer rejects other signer", signer, otherSigner, ErrSignerNotAllowed, []string{"MRSIGNER"}},
		{"signer rejects debug", signer, debugA, ErrDebugEnclave, nil},
		{"signer allowing debug", &SignerPolicy{Signer: a.SignerID, ProductID: 7, AllowDebug: true}, debugA, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.id)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
		})
	}
}

func TestForPeering(t *testing.T) {
	m := ident(1).UniqueID
	if p, err := ForPeering(Exact(m)); err != nil || p == nil {
		t.Fatalf("ForPeering(exact) = %v, %v", p, err)
	}
	_, err := ForPeering(&SignerPolicy{Signer: m, ProductID: 1})
	if !errors.Is(err, ErrSignerPolicyForPeering) {
		t.Fatalf("ForPeering(signer) = %v, want ErrSignerPolicyForPeering", err)
	}
	for _, want := range []string{"malicious enclave", "leaks all inbound user traffic", "identical MRENCLAVE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("signer refusal %q does not explain %q", err, want)
		}
	}
	if _, err := ForPeering(Exact()); err == nil {
		t.Fatal("ForPeering(empty exact) accepted")
	}
}

// handshake runs a TLS handshake over loopback and returns both sides' errors.
func handshake(t testing.TB, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		err = tc.HandshakeContext(context.Background())
		if err == nil {
			// Complete the exchange so the client sees the server's verdict on its certificate.
			_, err = io.WriteString(tc, "ok")
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, client)
	clientErr = tc.HandshakeContext(context.Background())
	if clientErr == nil {
		buf := make([]byte, 2)
		_, clientErr = io.ReadFull(tc, buf)
	}
	tc.Close()
	return <-done, clientErr
}

func TestMutualAttestedTLS(t *testing.T) {
	f := newFixture(t)
	a := f.p1.NewEnclave(ident(1))
	b := f.p2.NewEnclave(ident(1))
	extra := [ExtraSize]byte{9, 9, 9}
	ca, err := NewCredentials(a, extra)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := NewCredentials(b, [ExtraSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := ForPeering(Exact(ident(1).UniqueID))
	if err != nil {
		t.Fatal(err)
	}
	vA := &Verifier{Quotes: f.p1.Verifier(), Policy: pol}
	vB := &Verifier{Quotes: f.p2.Verifier(), Policy: pol}
	serr, cerr := handshake(t, ServerConfig(ca, vA), ClientConfig(cb, vB))
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	peer, err := vB.VerifyCertificate(ca.Certificate.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if peer.Identity != ident(1) || peer.Extra != extra {
		t.Fatalf("peer = %+v, extra %x", peer.Identity, peer.Extra)
	}
}

func TestAttestedTLSRejections(t *testing.T) {
	f := newFixture(t)
	good := f.p1.NewEnclave(ident(1))
	other := f.p2.NewEnclave(ident(2))
	debugID := ident(1)
	debugID.Debug = true
	debug := f.p2.NewEnclave(debugID)
	foreign := f.foreign.NewEnclave(ident(1))
	pol := Exact(ident(1).UniqueID)
	v := &Verifier{Quotes: f.p1.Verifier(), Policy: pol}

	goodCreds, err := NewCredentials(good, [ExtraSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		certs func(t *testing.T) tls.Certificate
		want  []string
	}{
		{"other measurement", func(t *testing.T) tls.Certificate { return mustCreds(t, other).Certificate },
			[]string{"presented MRENCLAVE " + ident(2).UniqueID.String(), "expected " + ident(1).UniqueID.String()}},
		{"debug under production policy", func(t *testing.T) tls.Certificate { return mustCreds(t, debug).Certificate },
			[]string{"debug enclave"}},
		{"quote chained to another root", func(t *testing.T) tls.Certificate { return mustCreds(t, foreign).Certificate },
			[]string{"does not chain to the pinned root"}},
		{"no attestation extension", func(t *testing.T) tls.Certificate { return certWithExtension(t, nil) },
			[]string{"not an attested teeup enclave"}},
		{"quote does not bind the key", func(t *testing.T) tls.Certificate {
			// A genuine quote lifted from another certificate onto a new key.
			q, err := ExtractQuote(goodCreds.Certificate.Leaf)
			if err != nil {
				t.Fatal(err)
			}
			return certWithExtension(t, q)
		}, []string{"does not bind the certificate's public key"}},
		{"tampered extension", func(t *testing.T) tls.Certificate {
			q, err := ExtractQuote(goodCreds.Certificate.Leaf)
			if err != nil {
				t.Fatal(err)
			}
			q = append([]byte(nil), q...)
			q[10] ^= 0xff // inside the identity
			return certWithExtension(t, q)
		}, []string{"attested TLS"}},
		{"garbage extension", func(t *testing.T) tls.Certificate { return certWithExtension(t, []byte("not a quote")) },
			[]string{"quote"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := tt.certs(t)
			// The peer presents the bad certificate as a server; our client rejects it.
			srv := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
			_, cerr := handshake(t, srv, ClientConfig(nil, v))
			if cerr == nil {
				t.Fatal("client accepted the server")
			}
			for _, w := range tt.want {
				if !strings.Contains(cerr.Error(), w) {
					t.Errorf("client error %q lacks %q", cerr, w)
				}
			}
			// The same certificate presented as a client is refused by our server.
			cli := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}}
			serr, _ := handshake(t, ServerConfig(goodCreds, v), cli)
			if serr == nil {
				t.Fatal("server accepted the client")
			}
		})
	}
}

func TestServerWithoutClientCertificate(t *testing.T) {
	f := newFixture(t)
	creds := mustCreds(t, f.p1.NewEnclave(ident(1)))
	v := &Verifier{Quotes: f.p1.Verifier(), Policy: Exact(ident(1).UniqueID)}
	// Mutual mode refuses a client with no certificate.
	serr, _ := handshake(t, ServerConfig(creds, v), ClientConfig(nil, v))
	if serr == nil {
		t.Fatal("mutual server accepted a client without a certificate")
	}
	// Client-API mode serves it.
	serr, cerr := handshake(t, ServerConfig(creds, nil), ClientConfig(nil, v))
	if serr != nil || cerr != nil {
		t.Fatalf("server %v client %v", serr, cerr)
	}
}

func TestExpiredCertificate(t *testing.T) {
	f := newFixture(t)
	creds := mustCreds(t, f.p1.NewEnclave(ident(1)))
	v := &Verifier{Quotes: f.p1.Verifier(), Policy: Exact(ident(1).UniqueID), Now: func() time.Time { return time.Now().AddDate(2, 0, 0) }}
	if _, err := v.VerifyCertificate(creds.Certificate.Certificate[0]); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("VerifyCertificate(expired) = %v", err)
	}
}

func mustCreds(t testing.TB, e tee.Enclave) *Credentials {
	t.Helper()
	c, err := NewCredentials(e, [ExtraSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// certWithExtension makes a self-signed certificate on a fresh key carrying
// quote as the attestation extension (or none when quote is nil).
func certWithExtension(t testing.TB, quote []byte) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	if quote != nil {
		v, err := asn1.Marshal(quote)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: OIDQuote, Value: v}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func FuzzVerifyCertificate(f *testing.F) {
	fx := newFixture(f)
	creds := mustCreds(f, fx.p1.NewEnclave(ident(1)))
	f.Add(creds.Certificate.Certificate[0])
	f.Add(certWithExtension(f, []byte("junk")).Certificate[0])
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	v := &Verifier{Quotes: fx.p1.Verifier(), Policy: Exact(ident(1).UniqueID)}
	f.Fuzz(func(t *testing.T, der []byte) {
		p, err := v.VerifyCertificate(der)
		if err == nil && p.Identity.UniqueID != ident(1).UniqueID {
			t.Fatalf("accepted identity %v outside the policy", p.Identity)
		}
	})
}

func FuzzExtractQuote(f *testing.F) {
	v, _ := asn1.Marshal([]byte("quote"))
	f.Add(v)
	f.Add([]byte{0x04, 0x81})
	f.Fuzz(func(t *testing.T, ext []byte) {
		cert := &x509.Certificate{Extensions: []pkix.Extension{{Id: OIDQuote, Value: ext}}}
		q, err := ExtractQuote(cert)
		if err == nil && len(q) > len(ext) {
			t.Fatalf("quote longer than its extension")
		}
	})
}
