package release

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/tee"
)

// EnclaveIDDomain starts the bytes the Key Management Group signs for an
// enclave ID.
const EnclaveIDDomain = "teeup signed enclave id v1"

// Role is the part an enclave plays in a network.
type Role string

// The enclave roles a signed enclave ID can name.
const (
	// RoleNode is the consensus node enclave.
	RoleNode Role = "node"
	// RoleAgent is the upgrade agent enclave.
	RoleAgent Role = "agent"
)

// Validate checks that r is a known role.
func (r Role) Validate() error {
	switch r {
	case RoleNode, RoleAgent:
		return nil
	default:
		return fmt.Errorf("role %q is neither %q nor %q", string(r), RoleNode, RoleAgent)
	}
}

// EnclaveID is a network-signed enclave ID: the Key Management Group's
// statement that the enclave with measurement MREnclave is the network's
// node or agent. The node hands its keys only to an agent presenting one,
// and the agent only to a node whose measurement carries one.
type EnclaveID struct {
	// NetworkID is the chain id of the network.
	NetworkID string `json:"network_id"`
	// Role is the enclave's role: node or agent.
	Role Role `json:"role"`
	// MREnclave is the enclave's measurement.
	MREnclave tee.Measurement `json:"mrenclave"`
	// Signatures are the group members' signatures over SigningBytes.
	Signatures []Signature `json:"signatures"`
}

// SigningBytes returns the bytes the group signs: the internal/wire encoding
// of EnclaveIDDomain, the network id, the role and the measurement. (They
// begin with a length prefix, so they can never equal a manifest's signing
// bytes, which begin with ManifestDomain's text.)
func (id EnclaveID) SigningBytes() []byte {
	e := wire.NewEncoder(4 + len(EnclaveIDDomain) + 4 + len(id.NetworkID) + 4 + len(id.Role) + tee.MeasurementSize)
	e.String(EnclaveIDDomain)
	e.String(id.NetworkID)
	e.String(string(id.Role))
	e.Fixed(id.MREnclave[:])
	return e.Bytes()
}

// Verify checks that id names networkID, role and measurement m, and carries
// the threshold of kmg's signatures. The node calls it on the agent's ID, and
// the agent on the ID of the node it is about to hand keys to.
func (id EnclaveID) Verify(kmg Group, networkID string, role Role, m tee.Measurement) error {
	if err := role.Validate(); err != nil {
		return fmt.Errorf("verify enclave id: %w", err)
	}
	if id.NetworkID != networkID {
		return fmt.Errorf("verify enclave id: it is for network %q, not %q", id.NetworkID, networkID)
	}
	if id.Role != role {
		return fmt.Errorf("verify enclave id: it is for role %q, not %q", id.Role, role)
	}
	if id.MREnclave != m {
		return fmt.Errorf("verify enclave id: it is for MRENCLAVE %s, not %s", id.MREnclave, m)
	}
	if err := kmg.VerifyThreshold(id.SigningBytes(), id.Signatures); err != nil {
		return fmt.Errorf("verify %s enclave id %s: %w", id.Role, id.MREnclave.Short(), err)
	}
	return nil
}

// MarshalBinary encodes the enclave ID with internal/wire, for protocol
// messages such as the key handover:
//
//	network id (string) | role (string) | MRENCLAVE 32 |
//	count u32 | count × (public key 32 | signature 64)
//
// It fails if a signature is not hex of the right length.
func (id EnclaveID) MarshalBinary() ([]byte, error) {
	if len(id.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("encode enclave id: %d signatures, at most %d", len(id.Signatures), MaxSignatures)
	}
	if len(id.NetworkID) > maxNetworkIDLen || len(id.Role) > maxRoleLen {
		return nil, fmt.Errorf("encode enclave id: network id or role too long")
	}
	e := wire.NewEncoder(4 + len(id.NetworkID) + 4 + len(id.Role) + tee.MeasurementSize + 4 + len(id.Signatures)*(ed25519.PublicKeySize+ed25519.SignatureSize))
	e.String(id.NetworkID)
	e.String(string(id.Role))
	e.Fixed(id.MREnclave[:])
	e.U32(uint32(len(id.Signatures)))
	for i, s := range id.Signatures {
		pub, sig, err := s.decode()
		if err != nil {
			return nil, fmt.Errorf("encode enclave id: signature %d: %w", i, err)
		}
		e.Fixed(pub)
		e.Fixed(sig)
	}
	return e.Bytes(), nil
}

// maxRoleLen bounds a decoded role string.
const maxRoleLen = 16

// UnmarshalBinary decodes an enclave ID encoded by MarshalBinary. The input
// is untrusted: lengths and counts are bounded, and trailing bytes refused.
// It does not verify anything; call Verify.
func (id *EnclaveID) UnmarshalBinary(b []byte) error {
	d := wire.NewDecoder("enclave id", b)
	var out EnclaveID
	out.NetworkID = d.String("network id", maxNetworkIDLen)
	out.Role = Role(d.String("role", maxRoleLen))
	d.Fixed("mrenclave", out.MREnclave[:])
	n := d.Count("signature count", MaxSignatures)
	if d.Err() == nil {
		out.Signatures = make([]Signature, 0, n)
	}
	for i := 0; i < n && d.Err() == nil; i++ {
		var pub [ed25519.PublicKeySize]byte
		var sig [ed25519.SignatureSize]byte
		d.Fixed("public key", pub[:])
		d.Fixed("signature", sig[:])
		out.Signatures = append(out.Signatures, Signature{Key: hex.EncodeToString(pub[:]), Sig: hex.EncodeToString(sig[:])})
	}
	if err := d.Finish(); err != nil {
		return err
	}
	*id = out
	return nil
}
