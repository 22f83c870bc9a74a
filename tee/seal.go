package tee

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sealed blob layout (all integers big-endian):
//
//	magic "TSLD" | version 1 | policy 1 | svn 2 | key id 32 |
//	sealer MRENCLAVE 32 | sealer MRSIGNER 32 | product id 2 |
//	nonce 12 | AES-256-GCM ciphertext+tag
//
// The header is authenticated as additional data together with the caller's
// additional data. The sealer fields are informational (they make errors
// precise); the key itself is always derived from the unsealing enclave's own
// identity, so editing them only makes authentication fail.
const (
	sealMagic     = "TSLD"
	sealVersion   = 1
	sealNonceSize = 12
	sealHeaderLen = 4 + 1 + 1 + 2 + KeyIDSize + 2*MeasurementSize + 2
	sealMinLen    = sealHeaderLen + sealNonceSize + 16
)

// Errors returned by Unseal; wrap-checked with errors.Is.
var (
	// ErrSealedForOtherEnclave means the blob was sealed under the unique
	// policy by an enclave with a different MRENCLAVE.
	ErrSealedForOtherEnclave = errors.New("sealed by another enclave (MRENCLAVE differs)")
	// ErrSealedForOtherProduct means the blob was sealed under the product
	// policy by another signer or product.
	ErrSealedForOtherProduct = errors.New("sealed by another signer or product")
	// ErrSealedAuth means the blob failed authentication: it was sealed on
	// another platform, tampered with, or bound to other additional data.
	ErrSealedAuth = errors.New("sealed blob failed authentication (sealed on another platform, tampered, or wrong additional data)")
)

// SealedHeader is the decoded, unauthenticated header of a sealed blob.
type SealedHeader struct {
	Policy          SealPolicy
	SecurityVersion uint16
	KeyID           [KeyIDSize]byte
	SealerUniqueID  Measurement
	SealerSignerID  Measurement
	SealerProductID uint16
}

// ParseSealedHeader decodes the header of a sealed blob without
// authenticating it.
func ParseSealedHeader(blob []byte) (SealedHeader, error) {
	var h SealedHeader
	if len(blob) < sealMinLen {
		return h, fmt.Errorf("sealed blob: %d bytes, shorter than the minimum %d", len(blob), sealMinLen)
	}
	if string(blob[:4]) != sealMagic {
		return h, fmt.Errorf("sealed blob: bad magic %q", blob[:4])
	}
	if blob[4] != sealVersion {
		return h, fmt.Errorf("sealed blob: unsupported version %d", blob[4])
	}
	h.Policy = SealPolicy(blob[5])
	if h.Policy != SealUnique && h.Policy != SealProduct {
		return h, fmt.Errorf("sealed blob: unknown policy %d", blob[5])
	}
	h.SecurityVersion = binary.BigEndian.Uint16(blob[6:8])
	off := 8
	copy(h.KeyID[:], blob[off:off+KeyIDSize])
	off += KeyIDSize
	copy(h.SealerUniqueID[:], blob[off:off+MeasurementSize])
	off += MeasurementSize
	copy(h.SealerSignerID[:], blob[off:off+MeasurementSize])
	off += MeasurementSize
	h.SealerProductID = binary.BigEndian.Uint16(blob[off : off+2])
	return h, nil
}

// Seal encrypts plaintext with a fresh seal key of the given policy, bound to
// additionalData, so that only an enclave allowed by the policy on the same
// platform can unseal it.
func Seal(e Enclave, policy SealPolicy, plaintext, additionalData []byte) ([]byte, error) {
	id := e.Identity()
	req := KeyRequest{Policy: policy, SecurityVersion: id.SecurityVersion}
	if _, err := rand.Read(req.KeyID[:]); err != nil {
		return nil, fmt.Errorf("seal: key id: %w", err)
	}
	key, err := e.SealKey(req)
	if err != nil {
		return nil, fmt.Errorf("seal: derive %s key: %w", policy, err)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	blob := make([]byte, 0, sealHeaderLen+sealNonceSize+len(plaintext)+aead.Overhead())
	blob = append(blob, sealMagic...)
	blob = append(blob, sealVersion, byte(policy))
	blob = binary.BigEndian.AppendUint16(blob, req.SecurityVersion)
	blob = append(blob, req.KeyID[:]...)
	blob = append(blob, id.UniqueID[:]...)
	blob = append(blob, id.SignerID[:]...)
	blob = binary.BigEndian.AppendUint16(blob, id.ProductID)
	header := blob[:sealHeaderLen]
	nonce := make([]byte, sealNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	blob = append(blob, nonce...)
	return aead.Seal(blob, nonce, plaintext, sealAD(header, additionalData)), nil
}

// Unseal decrypts a blob made by Seal. It fails with a precise error when the
// blob belongs to another enclave, another product, a higher security
// version, another platform, or was tampered with.
func Unseal(e Enclave, blob, additionalData []byte) ([]byte, error) {
	h, err := ParseSealedHeader(blob)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	id := e.Identity()
	switch h.Policy {
	case SealUnique:
		if h.SealerUniqueID != id.UniqueID {
			return nil, fmt.Errorf("unseal: %w: sealed to MRENCLAVE %s, this enclave is %s", ErrSealedForOtherEnclave, h.SealerUniqueID, id.UniqueID)
		}
	case SealProduct:
		if h.SealerSignerID != id.SignerID || h.SealerProductID != id.ProductID {
			return nil, fmt.Errorf("unseal: %w: sealed for signer %s product %d, this enclave is signer %s product %d",
				ErrSealedForOtherProduct, h.SealerSignerID, h.SealerProductID, id.SignerID, id.ProductID)
		}
		if h.SecurityVersion > id.SecurityVersion {
			return nil, fmt.Errorf("unseal: %w: sealed at SVN %d, this enclave is SVN %d", ErrHigherSVN, h.SecurityVersion, id.SecurityVersion)
		}
	}
	key, err := e.SealKey(KeyRequest{Policy: h.Policy, SecurityVersion: h.SecurityVersion, KeyID: h.KeyID})
	if err != nil {
		return nil, fmt.Errorf("unseal: derive %s key: %w", h.Policy, err)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	header := blob[:sealHeaderLen]
	nonce := blob[sealHeaderLen : sealHeaderLen+sealNonceSize]
	plaintext, err := aead.Open(nil, nonce, blob[sealHeaderLen+sealNonceSize:], sealAD(header, additionalData))
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", ErrSealedAuth)
	}
	return plaintext, nil
}

func sealAD(header, additionalData []byte) []byte {
	ad := make([]byte, 0, len(header)+8+len(additionalData))
	ad = append(ad, header...)
	ad = binary.BigEndian.AppendUint64(ad, uint64(len(additionalData)))
	return append(ad, additionalData...)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != SealKeySize {
		return nil, fmt.Errorf("seal key is %d bytes, want %d", len(key), SealKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// hashParts hashes a domain string and parts with length prefixes, so that
// no two different inputs produce the same encoding.
func hashParts(domain string, parts ...[]byte) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(domain)))
	h.Write(n[:])
	h.Write([]byte(domain))
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
