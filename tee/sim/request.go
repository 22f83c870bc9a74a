package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/teeup/teeup/internal/fsutil"
)

// AttestationCSRFile is the certificate request a platform awaiting its
// certificate holds in place of attestation.crt.
const AttestationCSRFile = "attestation.csr"

// Size limits of the PEM files exchanged with the CA holder.
const (
	// MaxRequestSize bounds a certificate request file.
	MaxRequestSize = 8 << 10
	// MaxCertificateSize bounds a certificate file.
	MaxCertificateSize = 8 << 10
)

const (
	pemRequest     = "CERTIFICATE REQUEST"
	pemCertificate = "CERTIFICATE"
)

// Outcomes of platform certification by request. Errors returned by
// ParseRequest, CA.CertifyRequest, CheckAttestationCertificate,
// InstallCertificate and OpenCA/OpenOrInitCA/OpenPlatform wrap one of these
// where they apply.
var (
	// ErrNoCAKey: a CA directory holds the root certificate but not its
	// key, so it can pin a root but not certify.
	ErrNoCAKey = errors.New("no CA key")
	// ErrPlatformPending: the platform has its secret and attestation key
	// but not yet its certificate.
	ErrPlatformPending = errors.New("platform awaits its attestation certificate")
	// ErrMalformedRequest: not a certificate request of the form
	// RequestPlatform writes.
	ErrMalformedRequest = errors.New("malformed certificate request")
	// ErrRequestSignature: the request is not signed by the key it asks
	// to certify (tampered, or signed by another key).
	ErrRequestSignature = errors.New("certificate request signature does not verify")
	// ErrMalformedCertificate: not an attestation certificate of the form
	// the CA issues.
	ErrMalformedCertificate = errors.New("malformed attestation certificate")
	// ErrWrongCA: the certificate does not chain to the root the platform
	// pins.
	ErrWrongCA = errors.New("attestation certificate is not issued by the pinned root")
	// ErrWrongKey: the certificate certifies another attestation key.
	ErrWrongKey = errors.New("attestation certificate is for another attestation key")
)

// Request is a verified certificate request: the attestation key of a
// platform, self-signed, and the platform's public id.
type Request struct {
	// PlatformID is the platform's public id (16 hex digits), as its
	// certificate will name it.
	PlatformID string
	// PublicKey is the attestation key to certify.
	PublicKey *ecdsa.PublicKey
	id        [8]byte
}

// ParseRequest parses and verifies a PEM certificate request as
// RequestPlatform writes it: exactly one CERTIFICATE REQUEST block and
// nothing else, a PKCS #10 request for an ECDSA P-256 key signed by that
// key with ECDSA-SHA256, whose subject is only the common name "teeup
// simulated platform <16 hex digits>" and which carries no extensions or
// attributes. It is the CA holder's decoder of bytes from a host.
func ParseRequest(pemBytes []byte) (*Request, error) {
	if len(pemBytes) > MaxRequestSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedRequest, len(pemBytes), MaxRequestSize)
	}
	der, err := singlePEM(pemBytes, pemRequest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedRequest, err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedRequest, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: key is %T, want ECDSA P-256", ErrMalformedRequest, csr.PublicKey)
	}
	if csr.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		return nil, fmt.Errorf("%w: signature algorithm %v, want ECDSA-SHA256", ErrMalformedRequest, csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequestSignature, err)
	}
	id, err := parsePlatformSubject(csr.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedRequest, err)
	}
	if len(csr.Extensions) != 0 || len(csr.Attributes) != 0 {
		return nil, fmt.Errorf("%w: it carries extensions or attributes; a platform request has none", ErrMalformedRequest)
	}
	return &Request{PlatformID: hex.EncodeToString(id[:]), PublicKey: pub, id: id}, nil
}

// parsePlatformSubject checks that a subject is exactly the platform common
// name and returns the platform id it names.
func parsePlatformSubject(s pkix.Name) ([8]byte, error) {
	var id [8]byte
	if len(s.Names) != 1 || len(s.ExtraNames) != 0 {
		return id, fmt.Errorf("subject %q: want only the common name %q", s.String(), platformCNPrefix+"<platform id>")
	}
	hexID, ok := strings.CutPrefix(s.CommonName, platformCNPrefix)
	if !ok || len(hexID) != 2*len(id) || hexID != strings.ToLower(hexID) {
		return id, fmt.Errorf("subject common name %q: want %q", s.CommonName, platformCNPrefix+"<16 lower-case hex digits>")
	}
	if _, err := hex.Decode(id[:], []byte(hexID)); err != nil {
		return id, fmt.Errorf("subject common name %q: platform id is not hex", s.CommonName)
	}
	return id, nil
}

// CertifyRequest verifies a certificate request (ParseRequest) and issues
// the platform's attestation certificate, as PEM. The CA holder runs it;
// the request carries only public parts.
func (ca *CA) CertifyRequest(requestPEM []byte) ([]byte, *Request, error) {
	req, err := ParseRequest(requestPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certify request: %w", err)
	}
	der, err := ca.issue(req.PublicKey, req.id)
	if err != nil {
		return nil, nil, fmt.Errorf("certify request for platform %s: %w", req.PlatformID, err)
	}
	return encodeCert(der), req, nil
}

// RequestPlatform creates a platform in dir that requests its certificate:
// a new platform secret and attestation key, root pinned as root.crt, and
// attestation.csr, the certificate request, which it also returns. The
// secret and the key never leave dir; the request holds only public parts.
// Like InitPlatform it refuses a dir that already holds a platform.
func RequestPlatform(dir string, root *x509.Certificate) ([]byte, error) {
	if root == nil || !root.IsCA {
		return nil, fmt.Errorf("request platform %s: the root to pin is not a CA certificate", dir)
	}
	if err := prepareNewPlatform(dir); err != nil {
		return nil, fmt.Errorf("request platform %s: %w", dir, err)
	}
	secret := make([]byte, secretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("request platform %s: secret: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("request platform %s: attestation key: %w", dir, err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: platformCommonName(platformID(secret))},
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("request platform %s: certificate request: %w", dir, err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: pemRequest, Bytes: csrDER})
	keyPEM, err := encodeECKey(key)
	if err != nil {
		return nil, fmt.Errorf("request platform %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{AttestationKeyFile, keyPEM},
		{RootCertFile, encodeCert(root.Raw)},
		{AttestationCSRFile, csrPEM},
		{SecretFile, secret}, // last: its presence marks a platform
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return nil, fmt.Errorf("request platform %s: %w", dir, err)
		}
	}
	return csrPEM, nil
}

// PendingRequest returns the certificate request of a platform awaiting its
// certificate, and whether dir is such a platform.
func PendingRequest(dir string) ([]byte, bool, error) {
	if !pendingCertificate(dir) {
		return nil, false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, AttestationCSRFile))
	if err != nil {
		return nil, false, fmt.Errorf("read certificate request: %w", err)
	}
	return b, true, nil
}

// pendingCertificate reports whether dir holds a certificate request and
// no certificate.
func pendingCertificate(dir string) bool {
	_, crtErr := os.Lstat(filepath.Join(dir, AttestationCrtFile))
	_, csrErr := os.Lstat(filepath.Join(dir, AttestationCSRFile))
	return errors.Is(crtErr, os.ErrNotExist) && csrErr == nil
}

// CheckAttestationCertificate parses a PEM attestation certificate (exactly
// one CERTIFICATE block) and checks that it is what the platform needs:
// issued by root (chain and validity, as a quote verifier checks it), not a
// CA, for digital signatures, and certifying exactly pub. It is the host's
// decoder of bytes from the CA holder.
func CheckAttestationCertificate(certPEM []byte, root *x509.Certificate, pub *ecdsa.PublicKey) (*x509.Certificate, error) {
	if len(certPEM) > MaxCertificateSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedCertificate, len(certPEM), MaxCertificateSize)
	}
	der, err := singlePEM(certPEM, pemCertificate)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedCertificate, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedCertificate, err)
	}
	if cert.IsCA || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: %q is a CA certificate or not for digital signatures", ErrMalformedCertificate, cert.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrWrongCA, root.Subject.CommonName, err)
	}
	certPub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !certPub.Equal(pub) {
		return nil, fmt.Errorf("%w: %q", ErrWrongKey, cert.Subject.CommonName)
	}
	return cert, nil
}

// InstallCertificate installs the attestation certificate the CA holder
// issued for the platform in dir (which RequestPlatform created), after
// CheckAttestationCertificate against the platform's pinned root.crt and
// attestation key, and removes the request. Installing the same
// certificate again is a no-op; another certificate over an installed one
// is refused.
func InstallCertificate(dir string, certPEM []byte) (*Platform, error) {
	if _, err := os.Stat(filepath.Join(dir, SecretFile)); err != nil {
		return nil, fmt.Errorf("install certificate in %s: %w (run 'teeup platform init %s --root ROOT.crt' first)", dir, err, dir)
	}
	key, err := readECKey(filepath.Join(dir, AttestationKeyFile))
	if err != nil {
		return nil, fmt.Errorf("install certificate in %s: %w", dir, err)
	}
	root, err := readCert(filepath.Join(dir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("install certificate in %s: %w", dir, err)
	}
	cert, err := CheckAttestationCertificate(certPEM, root, &key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("install certificate in %s: %w", dir, err)
	}
	crtPath := filepath.Join(dir, AttestationCrtFile)
	switch existing, err := readCert(crtPath); {
	case err == nil && !existing.Equal(cert):
		return nil, fmt.Errorf("install certificate in %s: %w: the platform already has another certificate", dir, os.ErrExist)
	case err == nil: // the same certificate again: finish an interrupted install
	case errors.Is(err, os.ErrNotExist):
		if err := writeFileAtomic(crtPath, encodeCert(cert.Raw)); err != nil {
			return nil, fmt.Errorf("install certificate in %s: %w", dir, err)
		}
	default:
		return nil, fmt.Errorf("install certificate in %s: %w", dir, err)
	}
	if err := os.Remove(filepath.Join(dir, AttestationCSRFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("install certificate in %s: %w", dir, err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return nil, fmt.Errorf("install certificate in %s: %w", dir, err)
	}
	return OpenPlatform(dir)
}

// ReadCertificate reads a PEM certificate file (e.g. a root.crt to pin).
func ReadCertificate(path string) (*x509.Certificate, error) { return readCert(path) }

// singlePEM decodes exactly one PEM block of type typ, with nothing but
// white space around it, and returns its bytes.
func singlePEM(raw []byte, typ string) ([]byte, error) {
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("no PEM %s block at the start", typ)
	}
	blk, rest := pem.Decode(raw)
	if blk == nil {
		return nil, fmt.Errorf("no PEM %s block", typ)
	}
	if blk.Type != typ {
		return nil, fmt.Errorf("PEM block is %q, want %q", blk.Type, typ)
	}
	if len(blk.Headers) != 0 {
		return nil, errors.New("PEM block has headers")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM block")
	}
	return blk.Bytes, nil
}

// Fingerprint returns the SHA-256 of a certificate's DER encoding in hex:
// what operators compare to know they pin the same root.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
