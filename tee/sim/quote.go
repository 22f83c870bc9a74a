package sim

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"

	"github.com/teeup/teeup/tee"
)

// Quote layout (big-endian):
//
//	magic "TQOT" | version 1 | identity 69 | report data 64 |
//	cert length 2 | platform attestation certificate (DER) |
//	signature length 2 | ECDSA P-256 signature (ASN.1) over SHA-256 of all
//	preceding bytes
const (
	quoteMagic    = "TQOT"
	quoteVersion  = 1
	quoteFixedLen = 4 + 1 + tee.IdentitySize + tee.ReportDataSize + 2
	maxQuoteCert  = 4096
	maxQuoteSig   = 80
)

// DecodedQuote is a quote split into its parts, not yet verified.
type DecodedQuote struct {
	Report    tee.Report
	CertDER   []byte
	Signature []byte
	Signed    []byte // the bytes the signature covers
}

// DecodeQuote splits a quote into its parts without verifying it.
func DecodeQuote(raw []byte) (*DecodedQuote, error) {
	if len(raw) < quoteFixedLen+2 {
		return nil, fmt.Errorf("quote: %d bytes, shorter than the minimum %d", len(raw), quoteFixedLen+2)
	}
	if string(raw[:4]) != quoteMagic {
		return nil, fmt.Errorf("quote: bad magic %q", raw[:4])
	}
	if raw[4] != quoteVersion {
		return nil, fmt.Errorf("quote: unsupported version %d", raw[4])
	}
	off := 5
	id, err := tee.DecodeIdentity(raw[off : off+tee.IdentitySize])
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	off += tee.IdentitySize
	q := &DecodedQuote{Report: tee.Report{Identity: id}}
	copy(q.Report.Data[:], raw[off:off+tee.ReportDataSize])
	off += tee.ReportDataSize
	certLen := int(binary.BigEndian.Uint16(raw[off:]))
	off += 2
	if certLen == 0 || certLen > maxQuoteCert {
		return nil, fmt.Errorf("quote: certificate length %d out of range 1..%d", certLen, maxQuoteCert)
	}
	if len(raw) < off+certLen+2 {
		return nil, fmt.Errorf("quote: truncated in certificate (%d bytes)", len(raw))
	}
	q.CertDER = raw[off : off+certLen]
	off += certLen
	q.Signed = raw[:off]
	sigLen := int(binary.BigEndian.Uint16(raw[off:]))
	off += 2
	if sigLen == 0 || sigLen > maxQuoteSig {
		return nil, fmt.Errorf("quote: signature length %d out of range 1..%d", sigLen, maxQuoteSig)
	}
	if len(raw) != off+sigLen {
		return nil, fmt.Errorf("quote: %d bytes, want %d", len(raw), off+sigLen)
	}
	q.Signature = raw[off:]
	return q, nil
}

// Verifier verifies quotes against a pinned simulated root certificate. It
// implements tee.QuoteVerifier.
type Verifier struct {
	roots *x509.CertPool
	root  *x509.Certificate
}

var _ tee.QuoteVerifier = (*Verifier)(nil)

// NewVerifier returns a verifier that trusts only root.
func NewVerifier(root *x509.Certificate) *Verifier {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &Verifier{roots: pool, root: root}
}

// NewVerifierFromPEM returns a verifier pinned to a PEM root certificate.
func NewVerifierFromPEM(rootPEM []byte) (*Verifier, error) {
	c, err := ParseCertificatePEM(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("quote verifier root: %w", err)
	}
	return NewVerifier(c), nil
}

// Root returns the pinned root certificate.
func (v *Verifier) Root() *x509.Certificate { return v.root }

// VerifyQuote implements tee.QuoteVerifier: the attestation certificate
// must chain to the pinned root and its key must have signed the quote.
func (v *Verifier) VerifyQuote(raw []byte) (tee.Report, error) {
	q, err := DecodeQuote(raw)
	if err != nil {
		return tee.Report{}, fmt.Errorf("verify %w", err)
	}
	cert, err := x509.ParseCertificate(q.CertDER)
	if err != nil {
		return tee.Report{}, fmt.Errorf("verify quote: attestation certificate: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return tee.Report{}, fmt.Errorf("verify quote: attestation certificate %q does not chain to the pinned root %q: %w", cert.Subject.CommonName, v.root.Subject.CommonName, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return tee.Report{}, fmt.Errorf("verify quote: attestation key is %T, want ECDSA", cert.PublicKey)
	}
	digest := sha256.Sum256(q.Signed)
	if !ecdsa.VerifyASN1(pub, digest[:], q.Signature) {
		return tee.Report{}, fmt.Errorf("verify quote from %s: signature does not verify (tampered)", q.Report.Identity.UniqueID.Short())
	}
	return q.Report, nil
}
