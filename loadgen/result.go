package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// Payment is one signed payment transaction that Run submitted.
type Payment struct {
	TxID   ledger.Hash
	From   ledger.Address
	To     ledger.Address
	Amount uint64
	Nonce  uint64
}

// Ack is an acknowledged payment: a node returned its receipt.
type Ack struct {
	Payment
	// Height is the block that committed the payment, from the receipt.
	Height uint64
	// Latency runs from the payment's first submission to its receipt,
	// retries included: what the paying client waited.
	Latency time.Duration
}

// Rejection is a payment a node refused deterministically.
type Rejection struct {
	Payment
	// Code is the ledger's result code of the rejection (e.g.
	// ledger.CodeBadNonce); empty when the node gave none (an API-level
	// refusal such as a malformed request, or a node that predates codes).
	Code ledger.Code
	// Reason is the node's error message.
	Reason string
}

// Result is the exact accounting of a Run.
type Result struct {
	// Start is when the workers started; Elapsed is the wall time from
	// Start until the last worker stopped.
	Start   time.Time
	Elapsed time.Duration
	// StartHeight is the head of the node the start state was read from.
	StartHeight uint64
	// StartAccounts are the senders' and recipients' accounts when the run
	// began, read from the most advanced node.
	StartAccounts map[ledger.Address]nodeapi.Account

	// Sent counts distinct signed payments submitted (retries excluded):
	// Sent = Acknowledged + Rejected + len(Unresolved).
	Sent int
	// Acknowledged counts payments with a receipt.
	Acknowledged int
	// Rejected counts payments refused deterministically.
	Rejected int
	// ClosedForUpgrade counts submission attempts answered "closed for
	// upgrade" (each was retried).
	ClosedForUpgrade int
	// Retries counts resubmissions of an already sent payment.
	Retries int
	// Reordered counts the retries of a payment refused while an earlier
	// payment of its account was still in flight (with InFlight > 1 a node
	// may see a nonce before its predecessor); included in Retries.
	Reordered int

	// Latencies of the acknowledged payments, in the order of Acked.
	Latencies []time.Duration
	// Acked are the acknowledged payments.
	Acked []Ack
	// RejectedTxs are the rejected payments.
	RejectedTxs []Rejection
	// Unresolved are payments still without an answer when the run ended
	// (its context was cancelled or the drain timeout passed). They may yet
	// be committed; Verify finds out.
	Unresolved []Payment
	// PerAccountDebit sums the acknowledged amounts by sender.
	PerAccountDebit map[ledger.Address]uint64
	// Errors counts failed submission attempts by kind (API error code or
	// transport failure, with numbers elided from the message).
	Errors map[string]int
}

// Throughput returns acknowledged payments per second of wall time.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Acknowledged) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0-100, nearest rank) of the
// acknowledged payments' latencies, or 0 when there are none.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 || math.IsNaN(p) {
		return 0
	}
	s := slices.Clone(r.Latencies)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// verifyPoll is how often Verify polls a node while it waits for it to
// catch up or for a pending transaction to resolve.
const verifyPoll = 100 * time.Millisecond

// Verify checks against the node c that no acknowledged payment was lost
// and that the accounts hold exactly what the committed payments imply:
//
//   - c is waited for until its head reaches the highest acknowledged
//     height;
//   - every acknowledged transaction is committed at its receipt's height;
//   - every other payment Run signed (rejected or unresolved) is looked up:
//     one still pending is waited for; one that turns out committed (a late
//     commit, never acknowledged) is counted like an acknowledged one;
//   - every sender's nonce is its start nonce plus its committed payments,
//     and every sender's and recipient's balance is its start balance minus
//     its committed debits plus its committed credits.
//
// It assumes that no other client used these accounts since Run began.
// Verify waits as long as ctx allows; give it a deadline.
func (r *Result) Verify(ctx context.Context, c Reader) error {
	c = patient{c}
	var maxHeight uint64
	for _, a := range r.Acked {
		maxHeight = max(maxHeight, a.Height)
	}
	if err := waitHead(ctx, c, maxHeight); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var problems []error
	committed := make([]Payment, 0, len(r.Acked))
	for _, a := range r.Acked {
		st, err := c.TxStatus(ctx, a.TxID.String())
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("verify: %w", ctx.Err())
		case err != nil:
			problems = append(problems, fmt.Errorf("acknowledged tx %s (height %d, nonce %d from %s): %w", a.TxID, a.Height, a.Nonce, short(a.From), err))
		case st.Status != ledger.StateCommitted || st.Height != a.Height:
			problems = append(problems, fmt.Errorf("acknowledged tx %s (height %d, nonce %d from %s) is LOST: node says %s at height %d %s",
				a.TxID, a.Height, a.Nonce, short(a.From), st.Status, st.Height, st.Reason))
		default:
			committed = append(committed, a.Payment)
		}
	}
	others := make([]Payment, 0, len(r.RejectedTxs)+len(r.Unresolved))
	for _, x := range r.RejectedTxs {
		others = append(others, x.Payment)
	}
	others = append(others, r.Unresolved...)
	// A payment rejected once may have been signed again identically (same
	// nonce, recipient and amount) after the nonce was re-read: one
	// transaction, counted once.
	counted := make(map[ledger.Hash]bool, len(r.Acked)+len(others))
	for _, a := range r.Acked {
		counted[a.TxID] = true
	}
	var unknown []Payment
	for _, p := range others {
		if counted[p.TxID] {
			continue
		}
		counted[p.TxID] = true
		st, err := waitResolved(ctx, c, p.TxID)
		switch {
		case errors.Is(err, errUnknownTx):
			unknown = append(unknown, p)
		case err != nil:
			return fmt.Errorf("verify: unacknowledged tx %s (nonce %d from %s): %w", p.TxID, p.Nonce, short(p.From), err)
		case st.Status == ledger.StateCommitted:
			committed = append(committed, p)
		}
	}
	// A payment unknown to the node read may still wait in the leader's
	// mempool (payments are admitted before consensus and are not on
	// chain until their block): it is counted as never committed only if
	// it is still unknown once the chain has moved on unknownGraceBlocks.
	if len(unknown) > 0 {
		late, err := settleUnknown(ctx, c, unknown)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		committed = append(committed, late...)
	}
	problems = append(problems, r.checkAccounts(ctx, c, committed)...)
	if ctx.Err() != nil {
		return fmt.Errorf("verify: %w", ctx.Err())
	}
	if len(problems) > 0 {
		return fmt.Errorf("verify: %d problem(s): %w", len(problems), errors.Join(problems...))
	}
	return nil
}

// expected is an account's state implied by the start state and the
// committed payments.
type expected struct {
	balance       uint64
	nonce         uint64
	debit, credit uint64
}

// checkAccounts compares every account's balance and nonce on c with what
// the start state and the committed payments imply.
func (r *Result) checkAccounts(ctx context.Context, c Reader, committed []Payment) []error {
	var problems []error
	exp := make(map[ledger.Address]*expected, len(r.StartAccounts))
	for a, acct := range r.StartAccounts {
		exp[a] = &expected{balance: acct.Balance, nonce: acct.Nonce}
	}
	for _, p := range committed {
		from, to := exp[p.From], exp[p.To]
		if from == nil || to == nil {
			problems = append(problems, fmt.Errorf("committed tx %s involves an account whose start state was not recorded", p.TxID))
			continue
		}
		from.nonce++
		from.debit += p.Amount
		to.credit += p.Amount
	}
	addrs := make([]ledger.Address, 0, len(exp))
	for a := range exp {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(x, y ledger.Address) int { return bytes.Compare(x[:], y[:]) })
	for _, a := range addrs {
		e := exp[a]
		if e.debit > e.balance+e.credit {
			problems = append(problems, fmt.Errorf("account %s: committed debits %d exceed its start balance %d plus credits %d", short(a), e.debit, e.balance, e.credit))
			continue
		}
		want := e.balance + e.credit - e.debit
		got, err := c.Account(ctx, a.String())
		if err != nil {
			problems = append(problems, fmt.Errorf("account %s: %w", short(a), err))
			continue
		}
		if got.Balance != want {
			problems = append(problems, fmt.Errorf("account %s: balance %d, want %d (start %d - debits %d + credits %d)", short(a), got.Balance, want, e.balance, e.debit, e.credit))
		}
		if got.Nonce != e.nonce {
			problems = append(problems, fmt.Errorf("account %s: nonce %d, want %d (start %d + %d committed payments): %w; was the account used by another client?",
				short(a), got.Nonce, e.nonce, r.StartAccounts[a].Nonce, e.nonce-r.StartAccounts[a].Nonce, ErrNonceMismatch))
		}
	}
	return problems
}

// waitHead polls c until its head reaches height.
func waitHead(ctx context.Context, c Reader, height uint64) error {
	for {
		h, err := c.Head(ctx)
		if err == nil && h.Height >= height {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("wait for the node to reach height %d: %w (last error: %v)", height, ctx.Err(), err)
			}
			return fmt.Errorf("wait for the node to reach height %d (it is at %d): %w", height, h.Height, ctx.Err())
		case <-time.After(verifyPoll):
		}
	}
}

// unknownGraceBlocks is how many blocks Verify waits before it takes a
// transaction the node does not know as never committed: a payment in the
// leader's mempool when it asked is in one of the next blocks.
const unknownGraceBlocks = 3

// errUnknownTx: the node read knows no such transaction (yet).
var errUnknownTx = errors.New("unknown to the node")

// settleUnknown waits until the chain has moved unknownGraceBlocks past
// its current head and returns the payments of unknown that committed by
// then; the others were never committed.
func settleUnknown(ctx context.Context, c Reader, unknown []Payment) ([]Payment, error) {
	h, err := c.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	if err := waitHead(ctx, c, h.Height+unknownGraceBlocks); err != nil {
		return nil, err
	}
	var committed []Payment
	for _, p := range unknown {
		st, err := waitResolved(ctx, c, p.TxID)
		switch {
		case errors.Is(err, errUnknownTx):
		case err != nil:
			return nil, fmt.Errorf("unacknowledged tx %s (nonce %d from %s): %w", p.TxID, p.Nonce, short(p.From), err)
		case st.Status == ledger.StateCommitted:
			committed = append(committed, p)
		}
	}
	return committed, nil
}

// waitResolved returns a transaction's status once it is not pending, or
// errUnknownTx when the node does not know it.
func waitResolved(ctx context.Context, c Reader, id ledger.Hash) (*nodeapi.TxStatus, error) {
	for {
		st, err := c.TxStatus(ctx, id.String())
		if nodeapi.IsCode(err, nodeapi.CodeNotFound) {
			return nil, errUnknownTx
		}
		if err == nil && st.Status != ledger.StatePending {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
			}
			return nil, fmt.Errorf("still pending: %w", ctx.Err())
		case <-time.After(verifyPoll):
		}
	}
}

// patient is a Reader that waits out a node's rate limit: Verify reads
// every transaction it sent, faster than a node may let one address read.
type patient struct{ Reader }

// rateLimitBackoff bounds the wait between reads refused as rate limited.
const (
	rateLimitMinBackoff = 50 * time.Millisecond
	rateLimitMaxBackoff = time.Second
)

// retry calls f until it is not refused as rate limited or ctx ends.
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	backoff := rateLimitMinBackoff
	for {
		v, err := f()
		if !nodeapi.IsCode(err, nodeapi.CodeRateLimited) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, rateLimitMaxBackoff)
	}
}

func (p patient) TxStatus(ctx context.Context, id string) (*nodeapi.TxStatus, error) {
	return retry(ctx, func() (*nodeapi.TxStatus, error) { return p.Reader.TxStatus(ctx, id) })
}

func (p patient) Account(ctx context.Context, address string) (*nodeapi.Account, error) {
	return retry(ctx, func() (*nodeapi.Account, error) { return p.Reader.Account(ctx, address) })
}

func (p patient) Head(ctx context.Context) (*nodeapi.Head, error) {
	return retry(ctx, func() (*nodeapi.Head, error) { return p.Reader.Head(ctx) })
}

// short abbreviates an address for messages.
func short(a ledger.Address) string { return a.String()[:12] }
