// Package tee defines the trusted-execution platform interface teeup is
// written against: enclave identities, local reports for a target enclave on
// the same platform, quotes for remote verifiers, and seal keys by policy.
//
// The semantics follow Intel SGX. Two implementations exist: tee/sim, a
// software platform used everywhere by default, and tee/ego, real SGX through
// EGo behind the "ego" build tag.
package tee

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// MeasurementSize is the size of an enclave measurement (MRENCLAVE, MRSIGNER).
const MeasurementSize = 32

// Measurement is a 32-byte enclave measurement: MRENCLAVE or MRSIGNER.
type Measurement [MeasurementSize]byte

// String returns the measurement as lower-case hex.
func (m Measurement) String() string { return hex.EncodeToString(m[:]) }

// Short returns the first 12 hex digits, for logs and tables.
func (m Measurement) Short() string { return hex.EncodeToString(m[:6]) }

// IsZero reports whether the measurement is all zeros.
func (m Measurement) IsZero() bool { return m == Measurement{} }

// MarshalText encodes the measurement as hex.
func (m Measurement) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText decodes a hex measurement.
func (m *Measurement) UnmarshalText(text []byte) error {
	v, err := ParseMeasurement(string(text))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMeasurement parses a 64-digit hex measurement.
func ParseMeasurement(s string) (Measurement, error) {
	var m Measurement
	b, err := hex.DecodeString(s)
	if err != nil {
		return m, fmt.Errorf("parse measurement %q: not hex: %w", s, err)
	}
	if len(b) != MeasurementSize {
		return m, fmt.Errorf("parse measurement %q: %d bytes, want %d", s, len(b), MeasurementSize)
	}
	copy(m[:], b)
	return m, nil
}

// Identity is an enclave's identity as the platform reports it.
type Identity struct {
	// UniqueID is MRENCLAVE: the measurement of the enclave's code.
	UniqueID Measurement `json:"unique_id"`
	// SignerID is MRSIGNER: the hash of the enclave signer's public key.
	SignerID Measurement `json:"signer_id"`
	// ProductID is the signer-assigned product (ISVPRODID).
	ProductID uint16 `json:"product_id"`
	// SecurityVersion is the signer-assigned security version (ISVSVN).
	SecurityVersion uint16 `json:"security_version"`
	// Debug is true for an enclave whose memory the host can inspect.
	Debug bool `json:"debug"`
}

// IdentitySize is the size of an encoded Identity.
const IdentitySize = 2*MeasurementSize + 2 + 2 + 1

// String summarises the identity for humans.
func (id Identity) String() string {
	s := fmt.Sprintf("mrenclave=%s mrsigner=%s product=%d svn=%d", id.UniqueID.Short(), id.SignerID.Short(), id.ProductID, id.SecurityVersion)
	if id.Debug {
		s += " DEBUG"
	}
	return s
}

// AppendBinary appends the fixed-size encoding of id to b.
func (id Identity) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, id.UniqueID[:]...)
	b = append(b, id.SignerID[:]...)
	b = binary.BigEndian.AppendUint16(b, id.ProductID)
	b = binary.BigEndian.AppendUint16(b, id.SecurityVersion)
	if id.Debug {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return b, nil
}

// DecodeIdentity decodes an identity encoded by AppendBinary.
func DecodeIdentity(b []byte) (Identity, error) {
	var id Identity
	if len(b) != IdentitySize {
		return id, fmt.Errorf("decode identity: %d bytes, want %d", len(b), IdentitySize)
	}
	copy(id.UniqueID[:], b[0:32])
	copy(id.SignerID[:], b[32:64])
	id.ProductID = binary.BigEndian.Uint16(b[64:66])
	id.SecurityVersion = binary.BigEndian.Uint16(b[66:68])
	switch b[68] {
	case 0:
	case 1:
		id.Debug = true
	default:
		return id, fmt.Errorf("decode identity: debug flag %d is neither 0 nor 1", b[68])
	}
	return id, nil
}

// ReportDataSize is the number of caller-chosen bytes a report or quote carries.
const ReportDataSize = 64

// ReportData is the caller-chosen data bound into a report or quote.
type ReportData [ReportDataSize]byte

// NewReportData builds report data from up to 64 bytes, zero padded.
func NewReportData(b []byte) (ReportData, error) {
	var d ReportData
	if len(b) > ReportDataSize {
		return d, fmt.Errorf("report data is %d bytes, at most %d fit", len(b), ReportDataSize)
	}
	copy(d[:], b)
	return d, nil
}

// Report is the verified content of a local report or a quote.
type Report struct {
	// Identity is the identity of the enclave that made the report.
	Identity Identity
	// Data is the caller-chosen data the enclave bound into the report.
	Data ReportData
	// Target is the MRENCLAVE the local report was made for; zero for quotes.
	Target Measurement
}

// SealPolicy selects what a seal key is bound to.
type SealPolicy uint8

const (
	// SealUnique binds keys to MRENCLAVE: only the identical enclave can
	// derive them (SGX KEYPOLICY.MRENCLAVE).
	SealUnique SealPolicy = 1
	// SealProduct binds keys to MRSIGNER and product ID, at a given security
	// version: an enclave may derive the key of its own SVN or a lower one,
	// never a higher one (SGX KEYPOLICY.MRSIGNER).
	SealProduct SealPolicy = 2
)

// String names the policy.
func (p SealPolicy) String() string {
	switch p {
	case SealUnique:
		return "unique"
	case SealProduct:
		return "product"
	default:
		return fmt.Sprintf("unknown(%d)", uint8(p))
	}
}

// KeyIDSize is the size of a seal key id.
const KeyIDSize = 32

// KeyRequest asks the platform for a seal key.
type KeyRequest struct {
	// Policy selects what the key is bound to.
	Policy SealPolicy
	// SecurityVersion is the SVN the key is derived for. Under SealProduct it
	// must not exceed the enclave's own SVN. Under SealUnique it is ignored.
	SecurityVersion uint16
	// KeyID diversifies keys; a random id per sealed blob is usual.
	KeyID [KeyIDSize]byte
}

// SealKeySize is the size of keys returned by Enclave.SealKey.
const SealKeySize = 32

// ErrHigherSVN is returned when a key is requested for a security version
// above the enclave's own.
var ErrHigherSVN = errors.New("key requested for a higher security version than the enclave's own")

// Enclave is the running enclave's handle on its platform.
type Enclave interface {
	// Identity returns the identity of this enclave.
	Identity() Identity
	// TargetInfo returns what another enclave on the same platform needs
	// to make a local report for this one (SGX TARGETINFO; under EGo, a
	// report made for no particular target). It is not secret.
	TargetInfo() ([]byte, error)
	// LocalReport makes a report for the enclave described by targetInfo
	// (from that enclave's TargetInfo) on the same platform. Only the target
	// can verify it.
	LocalReport(targetInfo []byte, data ReportData) ([]byte, error)
	// VerifyLocalReport verifies a local report made for this enclave on
	// this platform and returns its content.
	VerifyLocalReport(report []byte) (Report, error)
	// Quote makes a report that remote parties can verify against the
	// platform's root of trust.
	Quote(data ReportData) ([]byte, error)
	// SealKey derives a seal key as requested.
	SealKey(req KeyRequest) ([]byte, error)
	// Simulated reports whether the platform is a software simulation
	// that offers no hardware protection.
	Simulated() bool
}

// QuoteVerifier verifies quotes against a pinned root of trust.
type QuoteVerifier interface {
	// VerifyQuote checks the quote's signature chain and returns its content.
	VerifyQuote(quote []byte) (Report, error)
}

// HashReportData returns report data whose first 32 bytes are SHA-256 over a
// domain-separated, length-prefixed encoding of parts. Use it to bind several
// values (a nonce, a key, a role) into one report without ambiguity.
func HashReportData(domain string, parts ...[]byte) ReportData {
	var d ReportData
	sum := hashParts(domain, parts...)
	copy(d[:], sum[:])
	return d
}

// Equal reports whether two report data values are equal.
func (d ReportData) Equal(o ReportData) bool { return bytes.Equal(d[:], o[:]) }
