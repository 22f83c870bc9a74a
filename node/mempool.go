package node

import (
	"errors"
	"fmt"
	"sync"

	"github.com/teeup/teeup/ledger"
)

// Mempool refusals that are not about the payment itself: the client may
// retry the same signed payment later.
var (
	// ErrPoolFull: the leader's mempool holds its bound of payments
	// (the genesis max_pool).
	ErrPoolFull = errors.New("pool full")
	// ErrAccountBusy: the sender already has maxPendingPerAccount
	// payments waiting in the leader's mempool.
	ErrAccountBusy = errors.New("too many pending payments from this account")
)

// maxPendingPerAccount bounds one account's payments in the mempool.
const maxPendingPerAccount = 64

// admitStatus is the outcome of a payment's admission by the leader.
type admitStatus uint8

const (
	// admitAdmitted: the payment waits in the leader's mempool (or
	// already did: the same payment submitted twice).
	admitAdmitted admitStatus = iota + 1
	// admitCommitted: the payment is already committed at a height.
	admitCommitted
	// admitRejected: the payment is invalid on the leader's latest state;
	// code and reason say why. It was neither replicated nor stored.
	admitRejected
	// admitPoolFull: ErrPoolFull.
	admitPoolFull
	// admitAccountBusy: ErrAccountBusy.
	admitAccountBusy
	// admitNotLeader: the node asked does not lead (any more).
	admitNotLeader
)

// admission is a payment's admission outcome.
type admission struct {
	status admitStatus
	height uint64 // admitCommitted
	code   ledger.Code
	reason string
	// stale marks a rejection that a lagging state could explain (a nonce
	// ahead of the next one, funds short): the leader checks again once
	// it has applied everything committed.
	stale bool
}

// mpEntry is one payment in the mempool.
type mpEntry struct {
	tx     *ledger.Tx
	id     ledger.Hash
	from   ledger.Address
	amount uint64
	gone   bool
}

// mpAccount is what one account has in the mempool.
type mpAccount struct {
	n     int
	debit uint64
}

// mempool holds the payments the leader admitted and no block has
// committed yet, in admission order. It lives in the leader's memory
// only: on a leadership change it is lost (submitters re-submit to the
// new leader; nonces make that safe). Its decisions are pure: admit takes
// the sender's account state as an argument; the node reads it (under mu,
// which the node also holds while a block applies, so the two agree).
type mempool struct {
	mu            sync.Mutex
	maxTotal      int
	maxPerAccount int
	byID          map[ledger.Hash]*mpEntry
	accounts      map[ledger.Address]*mpAccount
	queue         []*mpEntry // admission order; gone entries are skipped and compacted
	live          int
}

func newMempool(maxTotal, maxPerAccount int) *mempool {
	return &mempool{
		maxTotal: maxTotal, maxPerAccount: maxPerAccount,
		byID: map[ledger.Hash]*mpEntry{}, accounts: map[ledger.Address]*mpAccount{},
	}
}

// admit decides on payment tx (p its decoded payload, id its id) given
// its sender's account on the latest applied state; mu must be held. The
// next nonce and the funds count the sender's payments already waiting.
func (m *mempool) admit(tx *ledger.Tx, id ledger.Hash, p ledger.Payment, acct ledger.Account) admission {
	if _, ok := m.byID[id]; ok {
		return admission{status: admitAdmitted}
	}
	a := m.accounts[tx.From]
	var waiting int
	var debit uint64
	if a != nil {
		waiting, debit = a.n, a.debit
	}
	want := acct.Nonce + acct.Pending + uint64(waiting) + 1
	switch {
	case tx.Nonce < want:
		return admission{status: admitRejected, code: ledger.CodeBadNonce, reason: fmt.Sprintf("bad nonce: got %d, want %d", tx.Nonce, want)}
	case tx.Nonce > want:
		return admission{status: admitRejected, code: ledger.CodeBadNonce, reason: fmt.Sprintf("bad nonce: got %d, want %d", tx.Nonce, want), stale: true}
	}
	if acct.PendingDebit > acct.Balance || debit > acct.Balance-acct.PendingDebit || p.Amount > acct.Balance-acct.PendingDebit-debit {
		return admission{status: admitRejected, code: ledger.CodeInsufficientFunds, stale: true,
			reason: fmt.Sprintf("insufficient funds: amount %d, balance %d, pending debits %d", p.Amount, acct.Balance, acct.PendingDebit+debit)}
	}
	if m.live >= m.maxTotal {
		return admission{status: admitPoolFull, reason: fmt.Sprintf("%s: %d payments wait", ErrPoolFull, m.live)}
	}
	if waiting >= m.maxPerAccount {
		return admission{status: admitAccountBusy, reason: fmt.Sprintf("%s: %d wait", ErrAccountBusy, waiting)}
	}
	e := &mpEntry{tx: tx, id: id, from: tx.From, amount: p.Amount}
	m.byID[id] = e
	if a == nil {
		a = &mpAccount{}
		m.accounts[tx.From] = a
	}
	a.n++
	a.debit += p.Amount
	m.queue = append(m.queue, e)
	m.live++
	return admission{status: admitAdmitted}
}

// has reports whether id waits in the mempool; mu must be held.
func (m *mempool) has(id ledger.Hash) bool {
	_, ok := m.byID[id]
	return ok
}

// candidates returns up to max waiting payments, in admission order, for
// the next block; mu must be held.
func (m *mempool) candidates(max int) []*ledger.Tx {
	out := make([]*ledger.Tx, 0, min(max, m.live))
	for _, e := range m.queue {
		if len(out) >= max {
			break
		}
		if !e.gone {
			out = append(out, e.tx)
		}
	}
	return out
}

// remove forgets the payments ids (committed by a block, or dropped as
// invalid); ids not in the mempool are ignored; mu must be held.
func (m *mempool) remove(ids []ledger.Hash) {
	for _, id := range ids {
		e, ok := m.byID[id]
		if !ok {
			continue
		}
		delete(m.byID, id)
		e.gone = true
		m.live--
		if a := m.accounts[e.from]; a != nil {
			a.n--
			a.debit -= e.amount
			if a.n == 0 {
				delete(m.accounts, e.from)
			}
		}
	}
	if gone := len(m.queue) - m.live; gone > 0 && gone >= m.live {
		q := make([]*mpEntry, 0, m.live)
		for _, e := range m.queue {
			if !e.gone {
				q = append(q, e)
			}
		}
		m.queue = q
	}
}

// clear forgets every payment and returns their ids (this node stopped
// leading); mu must be held.
func (m *mempool) clear() []ledger.Hash {
	if m.live == 0 {
		return nil
	}
	ids := make([]ledger.Hash, 0, m.live)
	for id := range m.byID {
		ids = append(ids, id)
	}
	m.byID, m.accounts, m.queue, m.live = map[ledger.Hash]*mpEntry{}, map[ledger.Address]*mpAccount{}, nil, 0
	return ids
}

// waiting returns how many of addr's payments wait; mu must be held.
func (m *mempool) waiting(addr ledger.Address) int {
	if a := m.accounts[addr]; a != nil {
		return a.n
	}
	return 0
}

// size returns how many payments wait; mu must be held.
func (m *mempool) size() int { return m.live }

// mempoolHas reports whether payment id waits in this node's mempool.
func (n *Node) mempoolHas(id ledger.Hash) bool {
	mp := n.mempool
	if mp == nil {
		return false
	}
	mp.mu.Lock()
	defer mp.mu.Unlock()
	return mp.has(id)
}

// mempoolSize returns how many payments wait in this node's mempool.
func (n *Node) mempoolSize() int {
	mp := n.mempool
	if mp == nil {
		return 0
	}
	mp.mu.Lock()
	defer mp.mu.Unlock()
	return mp.size()
}

// account returns addr's account on this node's applied state and the last
// nonce addr used as this node knows it: committed payments, payments in
// the replicated pool and — while this node leads — payments waiting in its
// mempool. The next transaction from addr uses the returned nonce + 1; a
// follower cannot see the leader's mempool, and the leader's admission has
// the last word.
func (n *Node) account(addr ledger.Address) (ledger.Account, uint64, error) {
	mp := n.mempool
	if mp != nil {
		mp.mu.Lock()
		defer mp.mu.Unlock()
	}
	a, err := n.store.Account(addr)
	if err != nil {
		return ledger.Account{}, 0, err
	}
	last := a.Nonce + a.Pending
	if mp != nil {
		last += uint64(mp.waiting(addr))
	}
	return a, last, nil
}
