package consensus

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

// tlsPair returns the connection states of both ends of a fresh TLS 1.3
// connection.
func tlsPair(t *testing.T) (client, server tls.ConnectionState) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	sc := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	cc := tls.Client(a, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- sc.Handshake() }()
	if err := cc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cc.ConnectionState(), sc.ConnectionState()
}

func TestHelloVerifiesOnlyOnItsConnectionAndRole(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	c1, s1 := tlsPair(t)
	c2, _ := tlsPair(t)
	boot := BootInfo{LastIndex: 7, Commit: 5}
	raw, err := signHello(c1, roleDialer, PurposeRaft, 3, key, boot)
	if err != nil {
		t.Fatal(err)
	}
	h, err := verifyHello(s1, roleDialer, raw)
	if err != nil {
		t.Fatal(err)
	}
	if h.NodeID != 3 || h.Purpose != PurposeRaft || h.Boot != boot || !bytes.Equal(h.Key, key.Public().(ed25519.PublicKey)) {
		t.Fatalf("hello = %+v", h)
	}
	cases := []struct {
		name string
		cs   tls.ConnectionState
		role byte
		raw  []byte
	}{
		{"replayed on another connection", c2, roleDialer, raw},
		{"reflected as the listener's", s1, roleListener, raw},
		{"tampered", s1, roleDialer, func() []byte { b := bytes.Clone(raw); b[3] ^= 1; return b }()},
		{"truncated", s1, roleDialer, raw[:len(raw)-1]},
		{"empty", s1, roleDialer, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := verifyHello(tc.cs, tc.role, tc.raw); !errors.Is(err, ErrBadHello) {
				t.Fatalf("got %v, want ErrBadHello", err)
			}
		})
	}
}

func FuzzDecodeHello(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	h := &hello{Purpose: PurposeRaft, NodeID: 1, Key: key.Public().(ed25519.PublicKey)}
	f.Add(append(h.body(), make([]byte, 64)...))
	f.Add([]byte{2, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := decodeHello(b)
		if err != nil {
			return
		}
		if h.NodeID == 0 || len(h.Key) != ed25519.PublicKeySize || !bytes.Equal(h.body(), body) {
			t.Fatalf("decoded %+v from %x", h, b)
		}
	})
}

func FuzzDecodePeerStatus(f *testing.F) {
	f.Add(PeerStatus{Height: 4, Applied: 9, CatchingUp: true}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodePeerStatus(b)
		if err != nil {
			return
		}
		if !bytes.Equal(st.encode(), b) {
			t.Fatalf("status %+v does not round-trip %x", st, b)
		}
	})
}
