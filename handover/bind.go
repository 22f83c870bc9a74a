package handover

import (
	"crypto/ecdh"
	"crypto/hpke"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Domain strings keep the report data and HPKE info of this protocol apart
// from every other use of reports and keys.
const (
	// AnswerDomain separates the report data of an Answer.
	AnswerDomain = "teeup handover answer v1"
	// DeliveryDomain separates the report data of a Delivery.
	DeliveryDomain = "teeup handover delivery v1"
	// SealDomain separates the HPKE info under which the secret is sealed.
	SealDomain = "teeup handover seal v1"
)

// BindAnswer returns the report data of an Answer: it binds the requester's
// report to the challenge (nonce, chain id), to the role the requester
// claims, and to the one-time key the secret will be sealed to, so that none
// of them can be swapped after the report is made.
func BindAnswer(nonce [NonceSize]byte, chainID string, role release.Role, oneTimeKey []byte) tee.ReportData {
	return tee.HashReportData(AnswerDomain, nonce[:], []byte(chainID), []byte(role), oneTimeKey)
}

// BindDelivery returns the report data of a Delivery: it binds the
// provider's report to the challenge's nonce and to the SHA-256 digest of
// the ciphertext it sent.
func BindDelivery(nonce [NonceSize]byte, ciphertextDigest [32]byte) tee.ReportData {
	return tee.HashReportData(DeliveryDomain, nonce[:], ciphertextDigest[:])
}

// The HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
func suiteKEM() hpke.KEM   { return hpke.DHKEM(ecdh.X25519()) }
func suiteKDF() hpke.KDF   { return hpke.HKDFSHA256() }
func suiteAEAD() hpke.AEAD { return hpke.AES256GCM() }

// party is one side of an exchange as the other side has verified it.
type party struct {
	role      release.Role
	mrenclave tee.Measurement
}

// sealInfo returns the HPKE info the secret is sealed under: the nonce, the
// chain id, and both parties' roles and measurements (taken from verified
// reports). A ciphertext made for one exchange cannot be opened as another.
func sealInfo(nonce [NonceSize]byte, chainID string, provider, requester party) []byte {
	e := wire.NewEncoder(4 + len(SealDomain) + NonceSize + 4 + len(chainID) + 2*(4+maxRoleLen+tee.MeasurementSize))
	e.String(SealDomain)
	e.Fixed(nonce[:])
	e.String(chainID)
	e.String(string(provider.role))
	e.Fixed(provider.mrenclave[:])
	e.String(string(requester.role))
	e.Fixed(requester.mrenclave[:])
	return e.Bytes()
}
