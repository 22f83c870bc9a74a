package sim

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/teeup/teeup/tee"
)

// SigStructSuffix is appended to a binary's path to find its signature
// structure.
const SigStructSuffix = ".sig"

// Signature structure layout (big-endian), the simulation's SIGSTRUCT:
//
//	magic "TSIG" | version 1 | MRENCLAVE 32 | product id 2 | svn 2 |
//	signer ed25519 public key 32 | ed25519 signature 64
//
// The signature covers every byte before it.
const (
	sigMagic    = "TSIG"
	sigVersion  = 1
	sigBodyLen  = 4 + 1 + tee.MeasurementSize + 2 + 2 + ed25519.PublicKeySize
	sigTotalLen = sigBodyLen + ed25519.SignatureSize
)

// SigStruct is an enclave signature structure: the signer's statement that
// the binary with measurement UniqueID is product ProductID at security
// version SecurityVersion.
type SigStruct struct {
	UniqueID        tee.Measurement
	ProductID       uint16
	SecurityVersion uint16
	SignerKey       ed25519.PublicKey
	Signature       []byte
}

// ErrNoSigStruct is returned when a binary has no signature structure.
var ErrNoSigStruct = errors.New("no signature structure")

// SignerID returns MRSIGNER: SHA-256 of the signer's public key.
func (s *SigStruct) SignerID() tee.Measurement { return SignerIDOf(s.SignerKey) }

// SignerIDOf returns the MRSIGNER of an ed25519 signer key.
func SignerIDOf(pub ed25519.PublicKey) tee.Measurement { return sha256.Sum256(pub) }

// NewSigStruct signs measurement as product/svn with key.
func NewSigStruct(measurement tee.Measurement, productID, svn uint16, key ed25519.PrivateKey) *SigStruct {
	s := &SigStruct{
		UniqueID:        measurement,
		ProductID:       productID,
		SecurityVersion: svn,
		SignerKey:       key.Public().(ed25519.PublicKey),
	}
	s.Signature = ed25519.Sign(key, s.body())
	return s
}

func (s *SigStruct) body() []byte {
	b := make([]byte, 0, sigTotalLen)
	b = append(b, sigMagic...)
	b = append(b, sigVersion)
	b = append(b, s.UniqueID[:]...)
	b = binary.BigEndian.AppendUint16(b, s.ProductID)
	b = binary.BigEndian.AppendUint16(b, s.SecurityVersion)
	return append(b, s.SignerKey...)
}

// MarshalBinary encodes the signature structure.
func (s *SigStruct) MarshalBinary() ([]byte, error) {
	if len(s.SignerKey) != ed25519.PublicKeySize || len(s.Signature) != ed25519.SignatureSize {
		return nil, errors.New("marshal signature structure: incomplete")
	}
	return append(s.body(), s.Signature...), nil
}

// ParseSigStruct decodes a signature structure and verifies its signature.
// It does not compare the measurement with any binary; see VerifyBinary.
func ParseSigStruct(b []byte) (*SigStruct, error) {
	if len(b) != sigTotalLen {
		return nil, fmt.Errorf("signature structure: %d bytes, want %d", len(b), sigTotalLen)
	}
	if string(b[:4]) != sigMagic {
		return nil, fmt.Errorf("signature structure: bad magic %q", b[:4])
	}
	if b[4] != sigVersion {
		return nil, fmt.Errorf("signature structure: unsupported version %d", b[4])
	}
	s := &SigStruct{}
	off := 5
	copy(s.UniqueID[:], b[off:off+tee.MeasurementSize])
	off += tee.MeasurementSize
	s.ProductID = binary.BigEndian.Uint16(b[off:])
	s.SecurityVersion = binary.BigEndian.Uint16(b[off+2:])
	off += 4
	s.SignerKey = append(ed25519.PublicKey(nil), b[off:off+ed25519.PublicKeySize]...)
	off += ed25519.PublicKeySize
	s.Signature = append([]byte(nil), b[off:]...)
	if !ed25519.Verify(s.SignerKey, b[:sigBodyLen], s.Signature) {
		return nil, fmt.Errorf("signature structure: signature by signer %s does not verify (tampered)", s.SignerID().Short())
	}
	return s, nil
}

// Identity returns the enclave identity the signature structure declares.
func (s *SigStruct) Identity() tee.Identity {
	return tee.Identity{UniqueID: s.UniqueID, SignerID: s.SignerID(), ProductID: s.ProductID, SecurityVersion: s.SecurityVersion}
}

// Measure returns the MRENCLAVE of a binary: the SHA-256 of its bytes.
func Measure(binaryPath string) (tee.Measurement, error) {
	var m tee.Measurement
	f, err := os.Open(binaryPath)
	if err != nil {
		return m, fmt.Errorf("measure %s: %w", binaryPath, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return m, fmt.Errorf("measure %s: %w", binaryPath, err)
	}
	copy(m[:], h.Sum(nil))
	return m, nil
}

// SignBinary measures binaryPath and writes its signature structure to
// binaryPath+".sig".
func SignBinary(binaryPath string, productID, svn uint16, key ed25519.PrivateKey) (*SigStruct, error) {
	m, err := Measure(binaryPath)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	s := NewSigStruct(m, productID, svn, key)
	raw, err := s.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", binaryPath, err)
	}
	if err := writeFileAtomic(binaryPath+SigStructSuffix, raw); err != nil {
		return nil, fmt.Errorf("sign %s: %w", binaryPath, err)
	}
	return s, nil
}

// ReadSigStruct reads and verifies binaryPath+".sig".
func ReadSigStruct(binaryPath string) (*SigStruct, error) {
	raw, err := os.ReadFile(binaryPath + SigStructSuffix)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (sign it with 'teeup enclave sign')", binaryPath, ErrNoSigStruct)
	}
	if err != nil {
		return nil, fmt.Errorf("read signature structure of %s: %w", binaryPath, err)
	}
	s, err := ParseSigStruct(raw)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", binaryPath, SigStructSuffix, err)
	}
	return s, nil
}

// VerifyBinary measures binaryPath and checks that its signature structure
// verifies and declares that measurement. It returns the enclave identity.
func VerifyBinary(binaryPath string) (tee.Identity, *SigStruct, error) {
	m, err := Measure(binaryPath)
	if err != nil {
		return tee.Identity{}, nil, err
	}
	s, err := ReadSigStruct(binaryPath)
	if err != nil {
		return tee.Identity{UniqueID: m}, nil, err
	}
	if s.UniqueID != m {
		return tee.Identity{UniqueID: m}, s, fmt.Errorf("%s: signature structure is for MRENCLAVE %s but the binary measures %s (binary changed after signing)", binaryPath, s.UniqueID, m)
	}
	return s.Identity(), s, nil
}
