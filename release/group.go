// Package release defines network-signed releases: manifests describing a
// node (and agent) version, the Key Management Group's threshold signatures
// over them, and "signed enclave IDs" — the group's statement that a given
// MRENCLAVE is the network's node or agent for a network.
package release

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/teeup/teeup/keyfile"
)

// MaxSignatures bounds the signatures one set may carry, so that a hostile
// file cannot make a verifier spend unbounded time.
const MaxSignatures = 256

// Errors of VerifyThreshold, to be matched with errors.Is.
var (
	// ErrNotMember means a signature in the set is by a key outside the group.
	ErrNotMember = errors.New("not a member of the group")
	// ErrBadSignature means a member's signature does not verify, or is malformed.
	ErrBadSignature = errors.New("signature does not verify")
)

// ThresholdError reports that fewer distinct members signed than the group's
// threshold requires.
type ThresholdError struct {
	// Have is the number of distinct members with a valid signature.
	Have int
	// Need is the group's threshold.
	Need int
}

// Error says how many of the required signatures were found.
func (e *ThresholdError) Error() string {
	return fmt.Sprintf("%d of %d required signatures", e.Have, e.Need)
}

// Group is a set of ed25519 keys with a threshold: the Key Management Group
// (signs releases) or the Node Operators Group (approves them on chain). Its
// JSON form appears in the genesis file.
type Group struct {
	// Keys are the members' ed25519 public keys as hex.
	Keys []string `json:"keys"`
	// Threshold is how many distinct members must sign.
	Threshold int `json:"threshold"`
}

// PublicKeys parses the members' keys.
func (g Group) PublicKeys() ([]ed25519.PublicKey, error) {
	keys := make([]ed25519.PublicKey, 0, len(g.Keys))
	for i, k := range g.Keys {
		pub, err := keyfile.ParsePublicHex(k)
		if err != nil {
			return nil, fmt.Errorf("group key %d: %w", i, err)
		}
		keys = append(keys, pub)
	}
	return keys, nil
}

// Validate checks that keys parse, are distinct, and that the threshold is
// between 1 and the number of keys.
func (g Group) Validate() error {
	keys, err := g.PublicKeys()
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return errors.New("group has no keys")
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		h := hex.EncodeToString(k)
		if seen[h] {
			return fmt.Errorf("group lists key %s twice", h)
		}
		seen[h] = true
	}
	if g.Threshold < 1 || g.Threshold > len(keys) {
		return fmt.Errorf("group threshold %d is not between 1 and the %d keys", g.Threshold, len(keys))
	}
	return nil
}

// Contains reports whether pub is a member. Keys are compared as keys, not
// as text, so upper- and lower-case hex in the group are the same member.
func (g Group) Contains(pub ed25519.PublicKey) bool {
	for _, k := range g.Keys {
		member, err := keyfile.ParsePublicHex(k)
		if err == nil && bytes.Equal(member, pub) {
			return true
		}
	}
	return false
}

// VerifyThreshold checks that at least Threshold distinct members of g
// signed msg with ed25519.
//
// The whole set is refused, whatever the count, when any entry is malformed,
// is by a key outside the group (ErrNotMember), or is a member's signature
// that does not verify (ErrBadSignature): a legitimate signing process never
// produces such entries, so their presence means the set was tampered with
// or assembled carelessly, and neither should be trusted. Several entries by
// one member count once. Too few members yield a *ThresholdError.
func (g Group) VerifyThreshold(msg []byte, sigs []Signature) error {
	if err := g.Validate(); err != nil {
		return fmt.Errorf("verify signatures: %w", err)
	}
	if len(sigs) > MaxSignatures {
		return fmt.Errorf("verify signatures: %d signatures, at most %d are accepted", len(sigs), MaxSignatures)
	}
	members := make(map[string]bool, len(g.Keys))
	for _, k := range g.Keys {
		pub, _ := keyfile.ParsePublicHex(k) // Validate parsed every key
		members[hex.EncodeToString(pub)] = true
	}
	signed := make(map[string]bool, len(sigs))
	verified := make(map[string]bool, len(sigs)) // key+sig pairs already checked
	for i, s := range sigs {
		pub, sig, err := s.decode()
		if err != nil {
			return fmt.Errorf("verify signatures: signature %d: %w", i, err)
		}
		key := hex.EncodeToString(pub)
		if !members[key] {
			return fmt.Errorf("verify signatures: signed by %s, which is %w", key, ErrNotMember)
		}
		pair := key + hex.EncodeToString(sig)
		if verified[pair] {
			continue
		}
		if !ed25519.Verify(pub, msg, sig) {
			return fmt.Errorf("verify signatures: signature by member %s: %w", key, ErrBadSignature)
		}
		verified[pair] = true
		signed[key] = true
	}
	if len(signed) < g.Threshold {
		return fmt.Errorf("verify signatures: %w", &ThresholdError{Have: len(signed), Need: g.Threshold})
	}
	return nil
}
