package loadgen

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// fakeLedger is an in-memory ledger with the admission rules of the real
// one (chain id, signature, nonce sequence, funds, dedup by tx id) that
// commits every admitted payment at once in its own block, and lets a test
// inject failures around a submission.
type fakeLedger struct {
	chainID string

	mu       sync.Mutex
	accounts map[ledger.Address]*ledger.Account
	txs      map[ledger.Hash]nodeapi.TxStatus
	height   uint64
	calls    int
	commits  map[ledger.Hash]int                 // commits per tx id (must stay ≤ 1)
	idsByKey map[string]map[ledger.Hash]bool     // distinct tx ids per (sender, nonce)
	before   func(call int, tx *ledger.Tx) error // failure before admission
	after    func(ctx context.Context, call int, tx *ledger.Tx) error

	// blocks, when set (pipelined), holds admitted payments until the next
	// cutBlock, as a real network holds them until their block.
	*blocks
}

// transportErr is what a dropped connection looks like to a client.
var transportErr = errors.New(`node 127.0.0.1:40001: Post "https://127.0.0.1:40001/v1/tx": read: connection reset by peer`)

func newFakeLedger(chainID string) *fakeLedger {
	return &fakeLedger{
		chainID: chainID, accounts: map[ledger.Address]*ledger.Account{}, txs: map[ledger.Hash]nodeapi.TxStatus{},
		commits: map[ledger.Hash]int{}, idsByKey: map[string]map[ledger.Hash]bool{},
	}
}

// fund creates n funded keys.
func (l *fakeLedger) fund(t testing.TB, n int, balance uint64) []ed25519.PrivateKey {
	t.Helper()
	keys := make([]ed25519.PrivateKey, n)
	for i := range keys {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
		l.accounts[addressOf(k)] = &ledger.Account{Balance: balance}
	}
	return keys
}

func (l *fakeLedger) addresses(keys []ed25519.PrivateKey) []ledger.Address {
	out := make([]ledger.Address, len(keys))
	for i, k := range keys {
		out[i] = addressOf(k)
	}
	return out
}

func (l *fakeLedger) account(a ledger.Address) *ledger.Account {
	acct := l.accounts[a]
	if acct == nil {
		acct = &ledger.Account{}
		l.accounts[a] = acct
	}
	return acct
}

func rejectErr(tx *ledger.Tx, code ledger.Code, reason string) error {
	return &nodeapi.Error{Code: nodeapi.CodeRejected, Message: "rejected: " + reason, TxID: tx.ID().String(), TxCode: string(code)}
}

func (l *fakeLedger) submit(ctx context.Context, raw []byte) (*nodeapi.Receipt, error) {
	tx, err := ledger.DecodeTx(raw)
	if err != nil {
		return nil, &nodeapi.Error{Code: nodeapi.CodeBadRequest, Message: "malformed transaction: " + err.Error()}
	}
	l.mu.Lock()
	l.calls++
	call := l.calls
	id := tx.ID()
	key := fmt.Sprintf("%s/%d", tx.From, tx.Nonce)
	if l.idsByKey[key] == nil {
		l.idsByKey[key] = map[ledger.Hash]bool{}
	}
	l.idsByKey[key][id] = true
	before, after := l.before, l.after
	l.mu.Unlock()
	if before != nil {
		if err := before(call, tx); err != nil {
			return nil, err
		}
	}
	var rec *nodeapi.Receipt
	if l.blocks != nil {
		rec, err = l.admitAndWait(ctx, tx)
	} else {
		rec, err = l.admitAndCommit(tx)
	}
	if err != nil {
		return nil, err
	}
	if after != nil {
		if err := after(ctx, call, tx); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

func (l *fakeLedger) admitAndCommit(tx *ledger.Tx) (*nodeapi.Receipt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := tx.ID()
	if st, ok := l.txs[id]; ok && st.Status == ledger.StateCommitted {
		return &nodeapi.Receipt{TxID: id.String(), Status: ledger.StateCommitted, Height: st.Height}, nil
	}
	reject := func(code ledger.Code, reason string) error {
		l.txs[id] = nodeapi.TxStatus{TxID: id.String(), Status: ledger.StateRejected, Code: string(code), Reason: reason}
		return rejectErr(tx, code, reason)
	}
	if tx.ChainID != l.chainID {
		return nil, reject(ledger.CodeWrongChain, "wrong chain id")
	}
	if tx.VerifySignature() != nil {
		return nil, reject(ledger.CodeBadSignature, "bad signature")
	}
	p, err := ledger.DecodePayment(tx.Payload)
	if err != nil {
		return nil, reject(ledger.CodeMalformed, "bad payload: "+err.Error())
	}
	from := l.account(tx.From)
	if tx.Nonce != from.Nonce+1 {
		return nil, reject(ledger.CodeBadNonce, fmt.Sprintf("bad nonce: got %d, want %d", tx.Nonce, from.Nonce+1))
	}
	if p.Amount > from.Balance {
		return nil, reject(ledger.CodeInsufficientFunds, fmt.Sprintf("insufficient funds: amount %d, balance %d", p.Amount, from.Balance))
	}
	from.Balance -= p.Amount
	from.Nonce++
	l.account(p.To).Balance += p.Amount
	l.height++
	l.commits[id]++
	l.txs[id] = nodeapi.TxStatus{TxID: id.String(), Status: ledger.StateCommitted, Height: l.height}
	return &nodeapi.Receipt{TxID: id.String(), Status: ledger.StateCommitted, Height: l.height}, nil
}

// fakeNode is one node's client API over a shared fakeLedger.
type fakeNode struct {
	l *fakeLedger
	// down makes every call fail like an unreachable node.
	down bool
	// closed refuses payments and account queries like a node whose
	// client ingress is closed (heads are still served).
	closed bool
	// lag makes Head report a height this much behind the ledger's.
	lag uint64
	// emptyBlocks makes every Head read with no payment pending add an
	// empty block, as a running chain does: Verify waits a few blocks
	// before it takes a transaction unknown to the node as never committed.
	emptyBlocks bool
	// onHead, when set, is called (without the ledger's lock) on every
	// Head read with the number of that read.
	onHead func(read int)
	heads  int
	// accountReads counts Account calls.
	accountReads int
}

var errClosed = &nodeapi.Error{Code: nodeapi.CodeClosedForUpgrade, Message: "closed for upgrade: this network is not accepting client requests right now"}

func (n *fakeNode) Submit(ctx context.Context, raw []byte) (*nodeapi.Receipt, error) {
	if n.down {
		return nil, transportErr
	}
	if n.closed {
		return nil, errClosed
	}
	return n.l.submit(ctx, raw)
}

func (n *fakeNode) Account(_ context.Context, address string) (*nodeapi.Account, error) {
	if n.down {
		return nil, transportErr
	}
	n.l.mu.Lock()
	n.accountReads++
	n.l.mu.Unlock()
	if n.closed {
		return nil, errClosed
	}
	a, err := ledger.ParseAddress(address)
	if err != nil {
		return nil, &nodeapi.Error{Code: nodeapi.CodeBadRequest, Message: err.Error()}
	}
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	acct := n.l.account(a)
	return &nodeapi.Account{Address: address, Balance: acct.Balance, Nonce: acct.Nonce}, nil
}

func (n *fakeNode) Head(context.Context) (*nodeapi.Head, error) {
	if n.down {
		return nil, transportErr
	}
	if n.onHead != nil {
		n.heads++
		n.onHead(n.heads)
	}
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	if n.emptyBlocks && (n.l.blocks == nil || len(n.l.pending) == 0) {
		n.l.height++
	}
	return &nodeapi.Head{Height: n.l.height - min(n.lag, n.l.height), Hash: hex.EncodeToString(make([]byte, 32))}, nil
}

func (n *fakeNode) TxStatus(_ context.Context, id string) (*nodeapi.TxStatus, error) {
	if n.down {
		return nil, transportErr
	}
	h, err := ledger.ParseHash(id)
	if err != nil {
		return nil, &nodeapi.Error{Code: nodeapi.CodeBadRequest, Message: err.Error()}
	}
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	st, ok := n.l.txs[h]
	if !ok {
		return nil, &nodeapi.Error{Code: nodeapi.CodeNotFound, Message: "unknown transaction " + id}
	}
	return &st, nil
}

// nodes returns k nodes over l.
func (l *fakeLedger) nodes(k int) []Node {
	out := make([]Node, k)
	for i := range out {
		out[i] = &fakeNode{l: l}
	}
	return out
}

// checkNoDoublePayment fails the test if a tx id was committed twice or if
// one (sender, nonce) was signed as several transactions although nothing
// was rejected.
func (l *fakeLedger) checkNoDoublePayment(t *testing.T, expectSameTx bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range l.commits {
		if n > 1 {
			t.Errorf("tx %s committed %d times", id, n)
		}
	}
	if !expectSameTx {
		return
	}
	for key, ids := range l.idsByKey {
		if len(ids) != 1 {
			t.Errorf("sender/nonce %s was signed as %d different transactions; a retry must resubmit the same one", key, len(ids))
		}
	}
}
