package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/teeup/teeup/tee"
)

// OIDQuote identifies the certificate extension that carries the quote.
// The extension value is a DER OCTET STRING holding the platform's quote.
var OIDQuote = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59327, 7, 1}

// ExtraSize is the number of caller-chosen bytes bound into an attested
// certificate next to the TLS key hash (the second half of the report data).
const ExtraSize = 32

const certDomain = "teeup attested tls v1"

// maxQuoteExtension bounds the extension an attacker can make us parse.
const maxQuoteExtension = 64 << 10

// Credentials are an enclave's attested TLS identity for one process
// lifetime: a fresh key, and a certificate whose quote binds that key.
type Credentials struct {
	// Certificate is ready for tls.Config.Certificates.
	Certificate tls.Certificate
	// Identity is the enclave identity the quote carries.
	Identity tee.Identity
	// Extra is the caller data bound next to the key hash.
	Extra [ExtraSize]byte
}

// keyBinding returns the first half of the report data: a hash of the
// certificate's public key.
func keyBinding(spki []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(certDomain))
	h.Write(spki)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// NewCredentials makes a fresh ECDSA P-256 TLS key and a self-signed
// certificate carrying a quote over (hash of the key, extra). Extra lets the
// enclave bind one more value, such as the hash of its node identity key.
func NewCredentials(e tee.Enclave, extra [ExtraSize]byte) (*Credentials, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("attested credentials: generate key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("attested credentials: %w", err)
	}
	var rd tee.ReportData
	kb := keyBinding(spki)
	copy(rd[:32], kb[:])
	copy(rd[32:], extra[:])
	quote, err := e.Quote(rd)
	if err != nil {
		return nil, fmt.Errorf("attested credentials: quote: %w", err)
	}
	ext, err := asn1.Marshal(quote)
	if err != nil {
		return nil, fmt.Errorf("attested credentials: encode quote: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("attested credentials: serial: %w", err)
	}
	id := e.Identity()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "teeup enclave " + id.UniqueID.Short()},
		NotBefore:       now.Add(-time.Hour),
		NotAfter:        now.AddDate(1, 0, 0),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: OIDQuote, Value: ext}},
		DNSNames:        []string{"teeup-enclave"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("attested credentials: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("attested credentials: %w", err)
	}
	return &Credentials{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Identity:    id,
		Extra:       extra,
	}, nil
}

// Peer is an attested TLS peer as verified.
type Peer struct {
	// Identity is the peer enclave's identity, from its quote.
	Identity tee.Identity
	// Extra is the caller data the peer bound into its certificate.
	Extra [ExtraSize]byte
	// Certificate is the peer's leaf certificate.
	Certificate *x509.Certificate
}

// Verifier checks attested certificates: the quote against a pinned root,
// its binding to the certificate key, and the identity against a policy.
type Verifier struct {
	// Quotes verifies quotes against the pinned root of trust.
	Quotes tee.QuoteVerifier
	// Policy decides which identities are acceptable.
	Policy Policy
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// ErrNotAttested means a certificate carries no attestation extension.
var ErrNotAttested = errors.New("certificate carries no attestation quote")

// ExtractQuote returns the quote carried by an attested certificate.
func ExtractQuote(cert *x509.Certificate) ([]byte, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(OIDQuote) {
			continue
		}
		if len(ext.Value) > maxQuoteExtension {
			return nil, fmt.Errorf("attestation extension is %d bytes, at most %d accepted", len(ext.Value), maxQuoteExtension)
		}
		var quote []byte
		rest, err := asn1.Unmarshal(ext.Value, &quote)
		if err != nil {
			return nil, fmt.Errorf("attestation extension: %w", err)
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("attestation extension: %d trailing bytes", len(rest))
		}
		return quote, nil
	}
	return nil, ErrNotAttested
}

// VerifyCertificate verifies an attested certificate in DER form.
func (v *Verifier) VerifyCertificate(der []byte) (*Peer, error) {
	if v.Quotes == nil || v.Policy == nil {
		return nil, errors.New("attested TLS: verifier has no quote verifier or no policy")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("attested TLS: parse peer certificate: %w", err)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("attested TLS: peer certificate valid %s to %s, not now", cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		return nil, fmt.Errorf("attested TLS: peer certificate is not self-signed by its key: %w", err)
	}
	quote, err := ExtractQuote(cert)
	if err != nil {
		return nil, fmt.Errorf("attested TLS: peer is not an attested teeup enclave: %w", err)
	}
	report, err := v.Quotes.VerifyQuote(quote)
	if err != nil {
		return nil, fmt.Errorf("attested TLS: %w", err)
	}
	kb := keyBinding(cert.RawSubjectPublicKeyInfo)
	if [32]byte(report.Data[:32]) != kb {
		return nil, fmt.Errorf("attested TLS: quote of MRENCLAVE %s does not bind the certificate's public key (report data differs)", report.Identity.UniqueID.Short())
	}
	if err := v.Policy.Check(report.Identity); err != nil {
		return nil, fmt.Errorf("attested TLS: %w", err)
	}
	p := &Peer{Identity: report.Identity, Certificate: cert}
	copy(p.Extra[:], report.Data[32:])
	return p, nil
}

func (v *Verifier) verifyPeerCertificate(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("attested TLS: peer presented no certificate")
	}
	_, err := v.VerifyCertificate(rawCerts[0])
	return err
}

// PeerFromState returns the verified peer of a completed handshake. The
// handshake already verified the certificate; this re-reads its identity.
func (v *Verifier) PeerFromState(cs tls.ConnectionState) (*Peer, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("attested TLS: connection has no peer certificate")
	}
	return v.VerifyCertificate(cs.PeerCertificates[0].Raw)
}

// ServerConfig returns a TLS 1.3 server configuration presenting creds.
// With clients == nil it serves any client (the client API: clients check
// the server); otherwise it requires an attested client certificate that
// clients accepts (mutual attested TLS, for peering).
func ServerConfig(creds *Credentials, clients *Verifier) *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{creds.Certificate},
	}
	if clients != nil {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyPeerCertificate = clients.verifyPeerCertificate
	}
	return cfg
}

// ClientConfig returns a TLS 1.3 client configuration that accepts only a
// server passing server. With creds != nil it presents them (mutual
// attested TLS). Host name verification is replaced by attestation: the
// peer is identified by its measurement, not by a name.
func ClientConfig(creds *Credentials, server *Verifier) *tls.Config {
	cfg := &tls.Config{
		MinVersion:            tls.VersionTLS13,
		InsecureSkipVerify:    true, // replaced by VerifyPeerCertificate: attestation, not a CA, authenticates the server
		VerifyPeerCertificate: server.verifyPeerCertificate,
	}
	if creds != nil {
		cfg.Certificates = []tls.Certificate{creds.Certificate}
	}
	return cfg
}
