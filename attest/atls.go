package attest

import (
	"bytes"
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
	"sync"
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

	// ticketSecret keys the session tickets of this identity's servers; it
	// lives as long as the credentials (one process).
	ticketSecret [32]byte
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
	c := &Credentials{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Identity:    id,
		Extra:       extra,
	}
	if _, err := rand.Read(c.ticketSecret[:]); err != nil {
		return nil, fmt.Errorf("attested credentials: ticket secret: %w", err)
	}
	return c, nil
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
//
// A full verification (three ECDSA signatures: the certificate's own, the
// attestation certificate's chain to the root, the quote's) is reused for
// the same certificate — the same exact DER — for ReuseTTL: a bounded cache
// keeps what the quote proved, and TLS 1.3 session resumption lets a peer
// that completed a full handshake reconnect without presenting its
// certificate again. Every reuse still checks the certificate's validity
// period against the current time and its identity against the current
// policy; the cache and the client's sessions are emptied whenever Policy
// or Quotes changes. Set the fields before first use; change the policy or
// root of a Verifier in use only through SetPolicy and SetQuotes.
type Verifier struct {
	// Quotes verifies quotes against the pinned root of trust.
	Quotes tee.QuoteVerifier
	// Policy decides which identities are acceptable.
	Policy Policy
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// CacheSize bounds the number of verified certificates (and, as a
	// client, of TLS sessions) kept; 0 means DefaultCacheSize.
	CacheSize int
	// ReuseTTL is how long a full verification is reused; 0 means
	// DefaultReuseTTL, a negative value turns reuse off (every handshake is
	// a full one and verifies the quote).
	ReuseTTL time.Duration

	mu       sync.Mutex
	certs    *certCache
	sessions *sessionStore
}

// SetPolicy replaces the policy; verifications cached under the previous
// one are dropped, and so are client sessions.
func (v *Verifier) SetPolicy(p Policy) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.Policy = p
	v.flushLocked()
}

// SetQuotes replaces the quote verifier (the pinned root); cached
// verifications and client sessions are dropped.
func (v *Verifier) SetQuotes(q tee.QuoteVerifier) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.Quotes = q
	v.flushLocked()
}

// Flush drops every cached verification and client session: the next
// handshake with any peer is a full one.
func (v *Verifier) Flush() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.flushLocked()
}

func (v *Verifier) flushLocked() {
	if v.certs != nil {
		v.certs.flush()
	}
	if v.sessions != nil {
		clear(v.sessions.entries)
		v.sessions.lru.Init()
	}
}

// Cached returns the number of verified certificates currently cached.
func (v *Verifier) Cached() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.certs == nil {
		return 0
	}
	return v.certs.len()
}

// current returns the quote verifier and the policy.
func (v *Verifier) current() (tee.QuoteVerifier, Policy) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.Quotes, v.Policy
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) reuse() bool { return v.ReuseTTL >= 0 }

func (v *Verifier) reuseTTL() time.Duration {
	if v.ReuseTTL == 0 {
		return DefaultReuseTTL
	}
	return v.ReuseTTL
}

func (v *Verifier) cacheSize() int {
	if v.CacheSize <= 0 {
		return DefaultCacheSize
	}
	return v.CacheSize
}

// cached returns the cached verification of der, if any.
func (v *Verifier) cached(der []byte, quotes tee.QuoteVerifier, policy Policy, now time.Time) *verified {
	if !v.reuse() {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.certs == nil {
		return nil
	}
	v.certs.sync(quotes, policy)
	return v.certs.get(der, now, v.reuseTTL())
}

// remember caches a full verification made under quotes and policy.
func (v *Verifier) remember(e *verified, quotes tee.QuoteVerifier, policy Policy) {
	if !v.reuse() {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.certs == nil {
		v.certs = newCertCache(v.cacheSize())
	}
	v.certs.sync(quotes, policy)
	v.certs.put(e)
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

// VerifyCertificate verifies an attested certificate in DER form. A
// certificate with exactly this DER that was verified in full within
// ReuseTTL (under the same quote verifier) is not verified again; its
// validity period and the policy are checked on every call.
func (v *Verifier) VerifyCertificate(der []byte) (*Peer, error) {
	quotes, policy := v.current()
	if quotes == nil || policy == nil {
		return nil, errors.New("attested TLS: verifier has no quote verifier or no policy")
	}
	now := v.now()
	e := v.cached(der, quotes, policy, now)
	if e == nil {
		var err error
		if e, err = verifyFull(der, quotes, now); err != nil {
			return nil, err
		}
	}
	cert := e.cert
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("attested TLS: peer certificate valid %s to %s, not now", cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	if err := policy.Check(e.report.Identity); err != nil {
		return nil, fmt.Errorf("attested TLS: %w", err)
	}
	v.remember(e, quotes, policy)
	p := &Peer{Identity: e.report.Identity, Certificate: cert}
	copy(p.Extra[:], e.report.Data[32:])
	return p, nil
}

// verifyFull parses der and checks everything that does not depend on the
// policy: validity at now, the self-signature, the quote against the root
// and the quote's binding to the certificate's key.
func verifyFull(der []byte, quotes tee.QuoteVerifier, now time.Time) (*verified, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("attested TLS: parse peer certificate: %w", err)
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
	report, err := quotes.VerifyQuote(quote)
	if err != nil {
		return nil, fmt.Errorf("attested TLS: %w", err)
	}
	kb := keyBinding(cert.RawSubjectPublicKeyInfo)
	if [32]byte(report.Data[:32]) != kb {
		return nil, fmt.Errorf("attested TLS: quote of MRENCLAVE %s does not bind the certificate's public key (report data differs)", report.Identity.UniqueID.Short())
	}
	return &verified{der: bytes.Clone(der), cert: cert, report: report, at: now}, nil
}

func (v *Verifier) verifyPeerCertificate(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("attested TLS: peer presented no certificate")
	}
	_, err := v.VerifyCertificate(rawCerts[0])
	return err
}

// verifyConnection runs on every connection, full or resumed. A resumed
// connection carries the certificate its peer presented in the full
// handshake it descends from; it must still pass the current policy,
// validity period and root (Go skips VerifyPeerCertificate on resumption).
// On a full connection VerifyPeerCertificate just verified the same
// certificate, so this costs a cache lookup.
func (v *Verifier) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("attested TLS: connection has no peer certificate")
	}
	_, err := v.VerifyCertificate(cs.PeerCertificates[0].Raw)
	return err
}

// PeerFromState returns the verified peer of a completed handshake, full
// or resumed. The handshake verified the certificate and cached that
// verification, so this normally costs a cache lookup, a validity and a
// policy check, not a second verification of the quote.
func (v *Verifier) PeerFromState(cs tls.ConnectionState) (*Peer, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("attested TLS: connection has no peer certificate")
	}
	return v.VerifyCertificate(cs.PeerCertificates[0].Raw)
}

// ServerConfig returns a TLS 1.3 server configuration presenting creds.
// With clients == nil it serves any client (the client API: clients check
// the server); otherwise it requires an attested client certificate that
// clients accepts (mutual attested TLS, for peering). Both issue session
// tickets (see the package documentation on resumption); a mutual server
// re-checks a resuming client with clients.
func ServerConfig(creds *Credentials, clients *Verifier) *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{creds.Certificate},
	}
	mode, now, ttl := "server-only", time.Now, DefaultReuseTTL
	reuse := creds.ticketSecret != [32]byte{}
	if clients != nil {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyPeerCertificate = clients.verifyPeerCertificate
		cfg.VerifyConnection = clients.verifyConnection
		cfg.Time = clients.Now
		mode, now, ttl = "mutual", clients.now, clients.reuseTTL()
		reuse = reuse && clients.reuse()
	}
	if !reuse {
		cfg.SessionTicketsDisabled = true
		return cfg
	}
	enableResumption(cfg, ticketKey(creds.ticketSecret, mode), now, ttl)
	return cfg
}

// ClientConfig returns a TLS 1.3 client configuration that accepts only a
// server passing server. With creds != nil it presents them (mutual
// attested TLS). Host name verification is replaced by attestation: the
// peer is identified by its measurement, not by a name. Sessions are
// cached in server for resumption; every connection, resumed or not, is
// checked against server's current policy.
func ClientConfig(creds *Credentials, server *Verifier) *tls.Config {
	cfg := &tls.Config{
		MinVersion:            tls.VersionTLS13,
		InsecureSkipVerify:    true, // replaced by VerifyPeerCertificate and VerifyConnection: attestation, not a CA, authenticates the server
		VerifyPeerCertificate: server.verifyPeerCertificate,
		VerifyConnection:      server.verifyConnection,
		Time:                  server.Now,
	}
	if server.reuse() {
		cfg.ClientSessionCache = sessionCache{v: server}
	}
	if creds != nil {
		cfg.Certificates = []tls.Certificate{creds.Certificate}
	}
	return cfg
}
