package remoteadmin

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/tee"
)

// Role is the admin API a server provides.
type Role uint8

// Roles.
const (
	// RoleNode is teeup-node's admin API.
	RoleNode Role = 1
	// RoleAgent is teeup-agent's admin API.
	RoleAgent Role = 2
)

// String names the role.
func (r Role) String() string {
	switch r {
	case RoleNode:
		return "node"
	case RoleAgent:
		return "agent"
	default:
		return fmt.Sprintf("role %d", uint8(r))
	}
}

// bindingDomain separates the binding from every other hash.
const bindingDomain = "teeup remote admin v1"

// Binding is what a remote admin server's quote binds next to its TLS key
// (attest.Credentials.Extra): SHA-256 over a domain, the role, the chain
// id and the node id, each unambiguously delimited.
func Binding(role Role, chainID string, nodeID uint64) [attest.ExtraSize]byte {
	h := sha256.New()
	h.Write([]byte(bindingDomain))
	h.Write([]byte{0, byte(role)})
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(chainID)))
	h.Write(n[:])
	h.Write([]byte(chainID))
	binary.BigEndian.PutUint64(n[:], nodeID)
	h.Write(n[:])
	var out [attest.ExtraSize]byte
	h.Sum(out[:0])
	return out
}

// NewServerCredentials returns attested TLS credentials for a remote admin
// server of role for node nodeID of chainID: a fresh key and a quote that
// binds it and Binding(role, chainID, nodeID).
func NewServerCredentials(e tee.Enclave, role Role, chainID string, nodeID uint64) (*attest.Credentials, error) {
	c, err := attest.NewCredentials(e, Binding(role, chainID, nodeID))
	if err != nil {
		return nil, fmt.Errorf("remote %s admin: %w", role, err)
	}
	return c, nil
}
