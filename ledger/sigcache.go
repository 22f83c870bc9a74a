package ledger

import "sync"

// VerifiedSigs is a bounded set of transaction ids whose signatures this
// process verified. A transaction id is the SHA-256 of the whole encoded
// transaction, signature included, so an id in the set stands for exactly
// the bytes that verified: a block's apply may skip verifying them again
// without changing its outcome (verification is deterministic). The node
// that received a payment from a client verified it then; when the
// payment's block applies there, that is one verification fewer.
//
// It keeps between size/2 and size ids: when the newer half fills up, the
// older half is dropped. The zero value is unusable; use NewVerifiedSigs.
// A nil *VerifiedSigs is an empty set.
type VerifiedSigs struct {
	mu       sync.Mutex
	half     int
	cur, old map[Hash]struct{}
}

// NewVerifiedSigs returns a set of at most size ids.
func NewVerifiedSigs(size int) *VerifiedSigs {
	half := max(size/2, 1)
	return &VerifiedSigs{half: half, cur: make(map[Hash]struct{}, half)}
}

// Add records that the transaction with id verified.
func (v *VerifiedSigs) Add(id Hash) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cur) >= v.half {
		v.old, v.cur = v.cur, make(map[Hash]struct{}, v.half)
	}
	v.cur[id] = struct{}{}
}

// Has reports whether id is in the set.
func (v *VerifiedSigs) Has(id Hash) bool {
	if v == nil {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.cur[id]; ok {
		return true
	}
	_, ok := v.old[id]
	return ok
}
