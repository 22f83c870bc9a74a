package loadgen

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// blocks is the pipelined mode of fakeLedger: admission counts pending
// payments (nonce = committed + pending + 1, funds minus pending debits,
// like the real ledger) and a payment is committed only by cutBlock.
type blocks struct {
	pending    []*pendingTx
	byID       map[ledger.Hash]*pendingTx
	pendingOf  map[ledger.Address]int
	debitOf    map[ledger.Address]uint64
	maxPending map[ledger.Address]int
}

type pendingTx struct {
	tx     *ledger.Tx
	amount uint64
	to     ledger.Address
	done   chan struct{}
	height uint64
}

func newPipelinedLedger(chainID string) *fakeLedger {
	l := newFakeLedger(chainID)
	l.blocks = &blocks{byID: map[ledger.Hash]*pendingTx{}, pendingOf: map[ledger.Address]int{}, debitOf: map[ledger.Address]uint64{}, maxPending: map[ledger.Address]int{}}
	return l
}

// admitAndWait admits tx as pending (or finds it pending or committed) and
// waits for its block.
func (l *fakeLedger) admitAndWait(ctx context.Context, tx *ledger.Tx) (*nodeapi.Receipt, error) {
	l.mu.Lock()
	id := tx.ID()
	if st, ok := l.txs[id]; ok && st.Status == ledger.StateCommitted {
		l.mu.Unlock()
		return &nodeapi.Receipt{TxID: id.String(), Status: ledger.StateCommitted, Height: st.Height}, nil
	}
	p := l.byID[id]
	if p == nil {
		reject := func(code ledger.Code, reason string) (*nodeapi.Receipt, error) {
			l.txs[id] = nodeapi.TxStatus{TxID: id.String(), Status: ledger.StateRejected, Code: string(code), Reason: reason}
			l.mu.Unlock()
			return nil, rejectErr(tx, code, reason)
		}
		if tx.ChainID != l.chainID || tx.VerifySignature() != nil {
			return reject(ledger.CodeBadSignature, "bad chain id or signature")
		}
		pay, err := ledger.DecodePayment(tx.Payload)
		if err != nil {
			return reject(ledger.CodeMalformed, "bad payload")
		}
		from := l.account(tx.From)
		if want := from.Nonce + uint64(l.pendingOf[tx.From]) + 1; tx.Nonce != want {
			return reject(ledger.CodeBadNonce, fmt.Sprintf("bad nonce: got %d, want %d", tx.Nonce, want))
		}
		if pay.Amount > from.Balance-l.debitOf[tx.From] {
			return reject(ledger.CodeInsufficientFunds, "insufficient funds")
		}
		p = &pendingTx{tx: tx, amount: pay.Amount, to: pay.To, done: make(chan struct{})}
		l.pending = append(l.pending, p)
		l.byID[id] = p
		l.pendingOf[tx.From]++
		l.debitOf[tx.From] += pay.Amount
		l.maxPending[tx.From] = max(l.maxPending[tx.From], l.pendingOf[tx.From])
		l.txs[id] = nodeapi.TxStatus{TxID: id.String(), Status: ledger.StatePending}
	}
	l.mu.Unlock()
	select {
	case <-p.done:
		return &nodeapi.Receipt{TxID: id.String(), Status: ledger.StateCommitted, Height: p.height}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cutBlock commits every pending payment in one block.
func (l *fakeLedger) cutBlock() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 {
		return
	}
	l.height++
	for _, p := range l.pending {
		from := l.account(p.tx.From)
		from.Balance -= p.amount
		from.Nonce++
		l.account(p.to).Balance += p.amount
		id := p.tx.ID()
		l.commits[id]++
		l.txs[id] = nodeapi.TxStatus{TxID: id.String(), Status: ledger.StateCommitted, Height: l.height}
		p.height = l.height
		close(p.done)
		delete(l.byID, id)
	}
	l.pending = nil
	clear(l.pendingOf)
	clear(l.debitOf)
}

// produceBlocks cuts blocks until the test ends.
func (l *fakeLedger) produceBlocks(t *testing.T, every time.Duration) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				l.cutBlock()
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait() })
}

// checkContiguousNonces fails unless each sender's acknowledged nonces are
// 1..k.
func checkContiguousNonces(t *testing.T, res *Result) {
	t.Helper()
	nonces := map[ledger.Address][]uint64{}
	for _, a := range res.Acked {
		nonces[a.From] = append(nonces[a.From], a.Nonce)
	}
	for from, ns := range nonces {
		slices.Sort(ns)
		for i, n := range ns {
			if n != uint64(i+1) {
				t.Fatalf("sender %s: acknowledged nonces %v, want 1..%d", short(from), ns, len(ns))
			}
		}
	}
}

// TestRunKeepsSeveralPaymentsInFlightPerAccount: with InFlight k, every
// account has k payments pending at once in the ledger (never more), and
// the accounting is exact.
func TestRunKeepsSeveralPaymentsInFlightPerAccount(t *testing.T) {
	for _, k := range []int{1, 4} {
		t.Run(fmt.Sprint("in flight ", k), func(t *testing.T) {
			l := newPipelinedLedger(testChain)
			cfg := baseConfig(t, l)
			cfg.InFlight = k
			cfg.Payments = 160
			l.produceBlocks(t, 2*time.Millisecond)
			ctx := testContext(t)
			res, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Acknowledged != 160 || res.Rejected != 0 || len(res.Unresolved) != 0 {
				t.Fatalf("acked %d rejected %d unresolved %d (errors %v)", res.Acknowledged, res.Rejected, len(res.Unresolved), res.Errors)
			}
			l.mu.Lock()
			for _, a := range l.addresses(cfg.Accounts) {
				if m := l.maxPending[a]; m > k || m < min(k, 2) && k > 1 {
					t.Errorf("sender %s had at most %d payments pending, want up to %d", short(a), m, k)
				}
			}
			l.mu.Unlock()
			checkContiguousNonces(t, res)
			if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
				t.Fatal(err)
			}
			l.checkNoDoublePayment(t, true)
		})
	}
}

// TestRunResubmitsAPaymentThatOvertookItsPredecessor: a node sees some
// payments before the previous nonce of their account; they are refused
// with a bad nonce and resubmitted unchanged, not counted as rejected.
func TestRunResubmitsAPaymentThatOvertookItsPredecessor(t *testing.T) {
	l := newPipelinedLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.InFlight = 3
	cfg.Payments = 120
	var delayed atomic.Int64
	held := map[ledger.Hash]bool{}
	var mu sync.Mutex
	// The first attempt of every odd nonce is held back until its successor
	// has been refused once.
	l.before = func(_ int, tx *ledger.Tx) error {
		if tx.Nonce%2 == 1 {
			mu.Lock()
			first := !held[tx.ID()]
			held[tx.ID()] = true
			mu.Unlock()
			if first {
				delayed.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}
		return nil
	}
	l.produceBlocks(t, time.Millisecond)
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Acknowledged != 120 || res.Rejected != 0 || len(res.Unresolved) != 0 {
		t.Fatalf("acked %d rejected %d unresolved %d (errors %v)", res.Acknowledged, res.Rejected, len(res.Unresolved), res.Errors)
	}
	if res.Reordered == 0 || res.Reordered > res.Retries {
		t.Fatalf("reordered %d, retries %d: no payment overtook its predecessor (delayed %d)", res.Reordered, res.Retries, delayed.Load())
	}
	checkContiguousNonces(t, res)
	if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatal(err)
	}
	l.checkNoDoublePayment(t, true)
}

// TestRunRecoversFromARejectionMidPipeline: one payment is refused for
// good while its successors are in flight; they fail too, the worker
// re-reads the nonce, signs new payments from there, and Verify's
// accounting still holds.
func TestRunRecoversFromARejectionMidPipeline(t *testing.T) {
	l := newPipelinedLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.InFlight = 4
	cfg.Payments = 100
	victim := addressOf(cfg.Accounts[0])
	var refused ledger.Hash
	var mu sync.Mutex
	l.before = func(_ int, tx *ledger.Tx) error {
		if tx.From != victim || tx.Nonce != 5 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if refused == (ledger.Hash{}) {
			refused = tx.ID()
		}
		if tx.ID() == refused {
			return rejectErr(tx, ledger.CodeInsufficientFunds, "insufficient funds (injected)")
		}
		return nil
	}
	l.produceBlocks(t, time.Millisecond)
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rejected == 0 || res.Sent != cfg.Payments || len(res.Unresolved) != 0 || res.Acknowledged+res.Rejected != cfg.Payments {
		t.Fatalf("sent %d acked %d rejected %d unresolved %d (errors %v)", res.Sent, res.Acknowledged, res.Rejected, len(res.Unresolved), res.Errors)
	}
	found := false
	for _, r := range res.RejectedTxs {
		if r.TxID == refused {
			found = true
		}
		if r.From != victim {
			t.Errorf("a payment of another account was rejected: %+v", r)
		}
	}
	if !found {
		t.Fatal("the injected rejection is not in the result")
	}
	checkContiguousNonces(t, res)
	if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCountsAReSignedIdenticalPaymentOnce: a payment rejected (a full
// pool, say) is signed again after the nonce is re-read; with a single
// recipient it is the identical transaction, acknowledged this time. The
// result lists it as rejected and as acknowledged; Verify counts it once.
func TestVerifyCountsAReSignedIdenticalPaymentOnce(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Recipients = cfg.Recipients[:1]
	cfg.Concurrency, cfg.Accounts, cfg.Payments = 1, cfg.Accounts[:1], 3
	var once atomic.Bool
	l.before = func(_ int, tx *ledger.Tx) error {
		if tx.Nonce == 2 && once.CompareAndSwap(false, true) {
			return rejectErr(tx, ledger.CodePoolFull, "pool full: 10000 transactions")
		}
		return nil
	}
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rejected != 1 || res.Acknowledged != 2 || res.RejectedTxs[0].TxID != res.Acked[1].TxID {
		t.Fatalf("rejected %v, acked %v: want the rejected payment acknowledged as the second", res.RejectedTxs, res.Acked)
	}
	if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatal(err)
	}
}

// limitedReader refuses every other read as rate limited, as a node does
// when one address reads faster than its rate limit.
type limitedReader struct {
	Reader
	calls atomic.Int64
}

var errRateLimited = &nodeapi.Error{Code: nodeapi.CodeRateLimited, Message: "rate limited: more than 1000 requests per second (burst 2000) from 127.0.0.1; retry after 1s"}

func (l *limitedReader) refuse() bool { return l.calls.Add(1)%2 == 1 }

func (l *limitedReader) TxStatus(ctx context.Context, id string) (*nodeapi.TxStatus, error) {
	if l.refuse() {
		return nil, errRateLimited
	}
	return l.Reader.TxStatus(ctx, id)
}

func (l *limitedReader) Account(ctx context.Context, a string) (*nodeapi.Account, error) {
	if l.refuse() {
		return nil, errRateLimited
	}
	return l.Reader.Account(ctx, a)
}

func (l *limitedReader) Head(ctx context.Context) (*nodeapi.Head, error) {
	if l.refuse() {
		return nil, errRateLimited
	}
	return l.Reader.Head(ctx)
}

// TestVerifyWaitsOutARateLimit: Verify reads every transaction it sent; a
// node that rate-limits those reads slows it down but does not fail it.
func TestVerifyWaitsOutARateLimit(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 20
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lr := &limitedReader{Reader: &fakeNode{l: l}}
	if err := res.Verify(ctx, lr); err != nil {
		t.Fatal(err)
	}
	if lr.calls.Load() < 2*int64(cfg.Payments) {
		t.Fatalf("%d reads: the limit was not exercised", lr.calls.Load())
	}
}
