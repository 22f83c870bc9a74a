package remoteadmin

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Key is an operator's ed25519 public key.
type Key [ed25519.PublicKeySize]byte

// KeyOf returns pub as a Key; pub must be an ed25519 public key.
func KeyOf(pub ed25519.PublicKey) (Key, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Key{}, fmt.Errorf("operator key: %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	return Key(pub), nil
}

// ParseKey parses a key written as 64 hex digits.
func ParseKey(s string) (Key, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return Key{}, fmt.Errorf("operator key %q: not hex: %w", s, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return Key{}, fmt.Errorf("operator key %q: %d bytes, want %d (64 hex digits)", s, len(b), ed25519.PublicKeySize)
	}
	return Key(b), nil
}

// ParseKeys parses hex keys.
func ParseKeys(hexKeys []string) ([]Key, error) {
	out := make([]Key, 0, len(hexKeys))
	for _, s := range hexKeys {
		k, err := ParseKey(s)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// String is the key in hex.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Short is the key's first 12 hex digits, for messages.
func (k Key) Short() string { return k.String()[:12] }

// IsZero reports whether k is the zero key (no key).
func (k Key) IsZero() bool { return k == Key{} }

// maxOperatorCert bounds the client certificate a server parses: a
// self-signed ed25519 certificate is about 300 bytes.
const maxOperatorCert = 4 << 10

// Errors of the client certificate.
var (
	// ErrNoOperatorCert: the client presented no certificate, or more
	// than the one self-signed certificate expected.
	ErrNoOperatorCert = errors.New("the client must present exactly one certificate: its operator key's")
	// ErrNotOperatorCert: the certificate is not an ed25519 key's.
	ErrNotOperatorCert = errors.New("the client certificate does not carry an ed25519 operator key")
)

// OperatorCertificate returns a TLS client certificate for an operator's
// key: self-signed by that key, valid for a day from an hour ago. It only
// carries the public key; TLS 1.3's CertificateVerify, the key's signature
// over the handshake transcript, is what proves that the client holds it.
func OperatorCertificate(key ed25519.PrivateKey) (tls.Certificate, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(key) != ed25519.PrivateKeySize {
		return tls.Certificate{}, errors.New("operator certificate: not an ed25519 private key")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("operator certificate: serial: %w", err)
	}
	now := time.Now()
	k, _ := KeyOf(pub)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "teeup operator " + k.Short()},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("operator certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("operator certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ParseOperatorCertificate returns the operator key a client certificate
// (DER, untrusted bytes) carries. Nothing else of the certificate is used
// or trusted: the TLS handshake proved the client holds the key, and what
// the key may do is the server's Policy. The certificate must be
// self-signed by that key (a malformed or foreign one is refused early).
func ParseOperatorCertificate(der []byte) (Key, error) {
	if len(der) > maxOperatorCert {
		return Key{}, fmt.Errorf("%w: certificate of %d bytes, at most %d accepted", ErrNotOperatorCert, len(der), maxOperatorCert)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrNotOperatorCert, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return Key{}, fmt.Errorf("%w: its key is a %T", ErrNotOperatorCert, cert.PublicKey)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return Key{}, fmt.Errorf("%w: not self-signed by its key: %w", ErrNotOperatorCert, err)
	}
	return KeyOf(pub)
}

// peerKey returns the operator key of a verified connection's client.
func peerKey(certs []*x509.Certificate) (Key, error) {
	if len(certs) != 1 {
		return Key{}, ErrNoOperatorCert
	}
	return ParseOperatorCertificate(certs[0].Raw)
}
