package remoteadmin

import (
	"fmt"
	"net/http"
	"slices"
)

// Access is what a request needs, or what a key may do.
type Access uint8

// Access levels, ordered.
const (
	// AccessNone: nothing (a stranger).
	AccessNone Access = iota
	// AccessRead: read-only requests (status, reads, attestation probes).
	AccessRead
	// AccessWrite: everything (ingress, halt, stop, admin transactions,
	// checkpoints, leadership; the agent's upgrade actions).
	AccessWrite
)

// String names the access level.
func (a Access) String() string {
	switch a {
	case AccessNone:
		return "none"
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	default:
		return "unknown"
	}
}

// Policy says which keys may use one host's admin API: Own are the host's
// own operators (read and write), Readers may read. A key in neither set
// may do nothing.
type Policy struct {
	Own     []Key
	Readers []Key
}

// AccessOf returns what key may do.
func (p Policy) AccessOf(key Key) Access {
	switch {
	case key.IsZero():
		return AccessNone
	case slices.Contains(p.Own, key):
		return AccessWrite
	case slices.Contains(p.Readers, key):
		return AccessRead
	default:
		return AccessNone
	}
}

// Add returns p with the keys added (zero keys and duplicates skipped).
func (p Policy) Add(own, readers []Key) Policy {
	add := func(set []Key, keys []Key) []Key {
		for _, k := range keys {
			if !k.IsZero() && !slices.Contains(set, k) {
				set = append(set, k)
			}
		}
		return set
	}
	return Policy{Own: add(slices.Clone(p.Own), own), Readers: add(slices.Clone(p.Readers), readers)}
}

// MemberOperator is an active network member and the operator key the
// chain records for it.
type MemberOperator struct {
	// Node is the member's node id.
	Node uint64
	// Operator is its operator's key.
	Operator Key
}

// WithChain returns p extended by what the chain authorises for node self:
// the operator the chain records for self acts (writes), the operators of
// every active member and the NOG members (hex keys) read. Callers pass
// active members only.
func (p Policy) WithChain(self uint64, members []MemberOperator, nog []string) (Policy, error) {
	var own, readers []Key
	for _, m := range members {
		if m.Operator.IsZero() {
			continue
		}
		if m.Node == self {
			own = append(own, m.Operator)
		}
		readers = append(readers, m.Operator)
	}
	nogKeys, err := ParseKeys(nog)
	if err != nil {
		return Policy{}, fmt.Errorf("node operators group: %w", err)
	}
	return p.Add(own, append(readers, nogKeys...)), nil
}

// Requirement returns the access a request needs.
type Requirement func(r *http.Request) Access

// ReadsAre returns the Requirement of an API whose GET and HEAD requests
// are reads, as are POSTs to readPosts (requests that change nothing, such
// as an attestation probe); every other request — any other method or
// path, including ones added later — is a write.
func ReadsAre(readPosts ...string) Requirement {
	return func(r *http.Request) Access {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return AccessRead
		case http.MethodPost:
			if slices.Contains(readPosts, r.URL.Path) {
				return AccessRead
			}
		}
		return AccessWrite
	}
}
