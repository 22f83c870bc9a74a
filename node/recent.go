package node

import (
	"container/list"
	"sync"

	"github.com/teeup/teeup/ledger"
)

// recentStatusSize bounds the statuses this node remembers of payments
// that are not on chain: rejected by admission (never replicated nor
// written to disk) or waiting in the leader's mempool.
const recentStatusSize = 10_000

// recentStatuses is a bounded LRU of transaction statuses kept in memory
// only; the ledger's statuses (committed) take precedence over it.
type recentStatuses struct {
	mu  sync.Mutex
	max int
	ll  *list.List
	m   map[ledger.Hash]*list.Element
}

type recentEntry struct {
	id ledger.Hash
	st ledger.TxStatus
}

func newRecentStatuses(max int) *recentStatuses {
	return &recentStatuses{max: max, ll: list.New(), m: map[ledger.Hash]*list.Element{}}
}

// put records id's status, evicting the least recently used beyond max.
func (r *recentStatuses) put(id ledger.Hash, st ledger.TxStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.m[id]; ok {
		e.Value.(*recentEntry).st = st
		r.ll.MoveToFront(e)
		return
	}
	r.m[id] = r.ll.PushFront(&recentEntry{id: id, st: st})
	for r.ll.Len() > r.max {
		last := r.ll.Back()
		r.ll.Remove(last)
		delete(r.m, last.Value.(*recentEntry).id)
	}
}

// get returns id's remembered status.
func (r *recentStatuses) get(id ledger.Hash) (ledger.TxStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[id]
	if !ok {
		return ledger.TxStatus{}, false
	}
	r.ll.MoveToFront(e)
	return e.Value.(*recentEntry).st, true
}

// len returns how many statuses are remembered.
func (r *recentStatuses) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ll.Len()
}
