package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// Payments are admitted before consensus. The node that receives one
// checks what needs no state (ledger.PrecheckPayment: encoding, chain id,
// size, signature) and hands it to the leader — itself, or over the
// mutual attested peer transport (consensus.Transport.Forward). The
// leader's mempool admits it against the leader's latest applied state
// and the payments already waiting (nonce sequence, balance less pending
// debits), or rejects it: a rejected payment is never replicated nor
// written to disk. The leader's blocks carry the admitted payments; every
// node re-checks each one when the block applies. The receiving node
// answers "committed" only once it applied the block itself.

// verifiedSigsSize bounds the ids of payments whose signatures this node
// verified at admission and need not verify again when their block
// applies (ledger.VerifiedSigs): about two full mempools.
const verifiedSigsSize = 1 << 14

// forwardTimeout bounds one forwarded admission.
const forwardTimeout = 5 * time.Second

// staleWait bounds how long the leader waits for its state to catch up
// with what is committed before it confirms a rejection a lagging state
// could explain.
const staleWait = 2 * time.Second

// Limits of an encoded admission.
const (
	maxAdmissionCode   = 64
	maxAdmissionReason = 1024
)

// encodeAdmission encodes a's answer for the forwarding node.
func encodeAdmission(a admission) []byte {
	e := wire.NewEncoder(32 + len(a.code) + len(a.reason))
	e.U8(uint8(a.status))
	e.U64(a.height)
	e.String(truncate(string(a.code), maxAdmissionCode))
	e.String(truncate(a.reason, maxAdmissionReason))
	e.Bool(a.stale)
	return e.Bytes()
}

// decodeAdmission decodes a leader's answer (from an attested peer, but
// untrusted bytes all the same).
func decodeAdmission(b []byte) (admission, error) {
	d := wire.NewDecoder("admission", b)
	a := admission{status: admitStatus(d.U8("status"))}
	a.height = d.U64("height")
	a.code = ledger.Code(d.String("code", maxAdmissionCode))
	a.reason = d.String("reason", maxAdmissionReason)
	a.stale = d.Bool("stale")
	if err := d.Finish(); err != nil {
		return admission{}, err
	}
	if a.status < admitAdmitted || a.status > admitNotLeader {
		return admission{}, fmt.Errorf("admission: unknown status %d", a.status)
	}
	if a.status == admitRejected && a.code == "" {
		return admission{}, errors.New("admission: a rejection without a code")
	}
	return a, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// forwarded is the transport's Forwarded handler: a member hands this
// node a payment it received. The member is attested (same MRENCLAVE) and
// checked the signature (every node checks it again when the block
// applies), so the leader decodes the payment and checks the state.
func (n *Node) forwarded(ctx context.Context, from uint64, req []byte) []byte {
	tx, err := ledger.DecodeTx(req)
	if err != nil {
		return encodeAdmission(admission{status: admitRejected, code: ledger.CodeMalformed, reason: "malformed transaction: " + err.Error()})
	}
	if tx.Kind != ledger.TxPayment || tx.ChainID != n.genesis.ChainID {
		return encodeAdmission(admission{status: admitRejected, code: ledger.CodeMalformed, reason: "only payments of this chain are forwarded"})
	}
	p, err := ledger.DecodePayment(tx.Payload)
	if err != nil {
		return encodeAdmission(admission{status: admitRejected, code: ledger.CodeMalformed, reason: "bad payload: " + err.Error()})
	}
	return encodeAdmission(n.admitAtLeader(ctx, tx, tx.ID(), p))
}

// admitAtLeader admits a payment to this leader's mempool. A rejection a
// lagging state could explain is confirmed only once this node applied
// every entry committed when it was first checked.
func (n *Node) admitAtLeader(ctx context.Context, tx *ledger.Tx, id ledger.Hash, p ledger.Payment) admission {
	for attempt := 0; ; attempt++ {
		r := n.raftRef.Load()
		if r == nil || !r.IsLeader() {
			return admission{status: admitNotLeader, reason: "not the leader"}
		}
		commit := r.CommitIndex()
		a, err := n.admitOnce(tx, id, p)
		if err != nil {
			n.log.Warn("payment admission", "tx", id.String(), "err", err)
			return admission{status: admitNotLeader, reason: "admission failed: " + err.Error()}
		}
		if a.status != admitRejected || !a.stale || attempt > 0 || n.store.AppliedIndex() >= commit {
			return a
		}
		wctx, cancel := context.WithTimeout(ctx, staleWait)
		_ = n.waitUntil(wctx, func() bool { return n.store.AppliedIndex() >= commit })
		cancel()
	}
}

// admitOnce is one admission decision on the applied state.
func (n *Node) admitOnce(tx *ledger.Tx, id ledger.Hash, p ledger.Payment) (admission, error) {
	mp := n.mempool
	mp.mu.Lock()
	defer mp.mu.Unlock()
	st, ok, err := n.store.TxStatus(id)
	if err != nil {
		return admission{}, err
	}
	if ok {
		switch st.State {
		case ledger.StateCommitted:
			return admission{status: admitCommitted, height: st.Height}, nil
		case ledger.StatePending:
			return admission{status: admitAdmitted}, nil // in the replicated pool (an older log)
		}
	}
	acct, err := n.store.Account(tx.From)
	if err != nil {
		return admission{}, err
	}
	return mp.admit(tx, id, p, acct), nil
}

// admitPayment has the leader admit a payment: this node's mempool if it
// leads, else the leader's through the peer transport.
func (n *Node) admitPayment(ctx context.Context, tx *ledger.Tx, id ledger.Hash, p ledger.Payment) (admission, error) {
	leader := n.raft.Leader()
	switch leader {
	case 0:
		return admission{status: admitNotLeader, reason: "no leader known"}, nil
	case n.cfg.NodeID:
		return n.admitAtLeader(ctx, tx, id, p), nil
	}
	fctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	ans, err := n.tr.Forward(fctx, leader, tx.Encode())
	if err != nil {
		return admission{}, fmt.Errorf("forward to the leader (node %d): %w", leader, err)
	}
	a, err := decodeAdmission(ans)
	if err != nil {
		return admission{}, fmt.Errorf("answer of the leader (node %d): %w", leader, err)
	}
	return a, nil
}

// submitPayment admits a payment through the leader and waits until this
// node applied the block that commits it, or the leader rejected it. While
// it waits it asks the leader again every few seconds: if leadership
// moved, the old leader's mempool is gone and the new leader admits it
// (the ledger never commits a payment twice: its nonce is used once).
//
// admitted, if not nil, is called once when the leader has admitted the
// payment (or found it committed): a payment with the sender's next nonce
// may follow it then.
func (n *Node) submitPayment(ctx context.Context, tx *ledger.Tx, p ledger.Payment, admitted func()) (*nodeapi.Receipt, error) {
	var admittedOnce sync.Once
	signal := func() {
		if admitted != nil {
			admittedOnce.Do(admitted)
		}
	}
	id := tx.ID()
	ch := n.waiters.add(id)
	defer n.waiters.remove(id, ch)
	committed := func() (*nodeapi.Receipt, bool) {
		st, ok, err := n.store.TxStatus(id)
		if err == nil && ok && st.State == ledger.StateCommitted {
			return committedReceipt(id, st), true
		}
		return nil, false
	}
	if rec, ok := committed(); ok {
		signal()
		return rec, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.SubmitTimeout))
	defer cancel()
	for {
		a, err := n.admitPayment(ctx, tx, id, p)
		wait := 3 * time.Second
		switch {
		case err != nil:
			n.log.Debug("payment admission", "tx", id.String(), "err", err)
			wait = 200 * time.Millisecond
		case a.status == admitRejected:
			n.recent.put(id, ledger.TxStatus{State: ledger.StateRejected, Code: a.code, Reason: a.reason})
			return nil, &rejection{a.code, a.reason}
		case a.status == admitPoolFull:
			return nil, fmt.Errorf("%w (%s)", ErrPoolFull, a.reason)
		case a.status == admitAccountBusy:
			return nil, fmt.Errorf("%w (%s)", ErrAccountBusy, a.reason)
		case a.status == admitNotLeader:
			wait = 100 * time.Millisecond
		case a.status == admitCommitted:
			signal()
			wait = time.Second
		default:
			n.recent.put(id, ledger.TxStatus{State: ledger.StatePending, Code: ledger.CodeOK})
			signal()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if rec, ok := committed(); ok {
				return rec, nil
			}
			return nil, ctx.Err()
		case o := <-ch:
			t.Stop()
			if !o.committed {
				n.recent.put(id, ledger.TxStatus{State: ledger.StateRejected, Code: o.code, Reason: o.reason})
				return nil, &rejection{o.code, o.reason}
			}
			if rec, ok := committed(); ok {
				return rec, nil
			}
			n.log.Warn("committed transaction without a readable status", "tx", id.String())
			return &nodeapi.Receipt{TxID: id.String(), Status: ledger.StateCommitted, Height: o.height}, nil
		case <-t.C:
		}
		if rec, ok := committed(); ok {
			return rec, nil
		}
	}
}

// precheckPayment checks what payment tx needs no state for
// (ledger.PrecheckPayment: chain id, limits, payload, signature) and
// records its verified signature, which its block's apply here then skips
// (n.verified). A failure is a *rejection.
func (n *Node) precheckPayment(tx *ledger.Tx) (ledger.Payment, error) {
	p, code, reason := ledger.PrecheckPaymentInto(n.genesis.ChainID, tx, n.verified)
	if code != "" {
		return p, &rejection{code, reason}
	}
	return p, nil
}

// submitInOrder submits payments of one sender with consecutive nonces,
// each sent once the leader admitted the one before (the mempool takes a
// sender's nonces in order), and waits until every one committed: they
// may share a block instead of taking one block each.
func (n *Node) submitInOrder(ctx context.Context, txs []*ledger.Tx) ([]*nodeapi.Receipt, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		rec *nodeapi.Receipt
		err error
	}
	results := make([]chan result, len(txs))
	for i, tx := range txs {
		results[i] = make(chan result, 1)
		p, err := n.precheckPayment(tx)
		if err != nil {
			return nil, fmt.Errorf("payment %d: %w", i+1, err)
		}
		admitted := make(chan struct{})
		go func() {
			rec, err := n.submitPayment(ctx, tx, p, func() { close(admitted) })
			results[i] <- result{rec, err}
		}()
		select {
		case <-admitted:
		case r := <-results[i]:
			results[i] <- r // read again below
		case <-ctx.Done():
		}
	}
	recs := make([]*nodeapi.Receipt, len(txs))
	for i := range txs {
		r := <-results[i]
		if r.err != nil {
			return nil, fmt.Errorf("payment %d: %w", i+1, r.err)
		}
		recs[i] = r.rec
	}
	return recs, nil
}
