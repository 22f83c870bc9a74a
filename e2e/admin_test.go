package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// txStatus reads a transaction's status through a node's admin API.
func (tn *testNet) txStatus(ctx context.Context, id int, tx ledger.Hash) (*nodeapi.TxStatus, error) {
	var st nodeapi.TxStatus
	if err := tn.admins[id-1].Get(ctx, nodeapi.PathTx+"/"+tx.String(), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// TestClosedIngressRefusesClientsButNotOperators closes client ingress on
// one node: a client payment there fails with "closed for upgrade" and is
// not admitted, an operator test payment through the admin socket
// commits, other nodes are unaffected, a load generator retries the same
// transactions elsewhere, and reopening restores client payments.
func TestClosedIngressRefusesClientsButNotOperators(t *testing.T) {
	tn := startNet(t, 4)
	ctx := testCtx(t, 2*time.Minute)
	st, err := tn.admins[1].SetIngress(ctx, false, "e2e maintenance")
	if err != nil {
		t.Fatal(err)
	}
	if st.Ingress != nodeapi.IngressClosed {
		t.Fatalf("ingress %q after closing, want closed", st.Ingress)
	}

	payer := tn.key("user-1")
	to := addresses(tn.users(2))[1]
	from := addresses(tn.users(1))[0]
	before := tn.balances(ctx, 2, []ledger.Address{from})[from]
	tx := ledger.NewPayment(tn.net.ChainID, payer, to, 11, before.Nonce+1)
	_, err = tn.clients[1].Submit(ctx, tx.Encode())
	if !nodeapi.IsCode(err, nodeapi.CodeClosedForUpgrade) {
		t.Fatalf("client payment to a closed node: %v, want code %s", err, nodeapi.CodeClosedForUpgrade)
	}
	if !strings.Contains(err.Error(), "e2e maintenance") {
		t.Errorf("the refusal %q does not give the operator's reason", err)
	}
	if _, err := tn.txStatus(ctx, 2, tx.ID()); !nodeapi.IsCode(err, nodeapi.CodeNotFound) {
		t.Fatalf("the refused payment's status: %v, want not found (never admitted)", err)
	}
	if _, err := tn.clients[1].Account(ctx, from.String()); !nodeapi.IsCode(err, nodeapi.CodeClosedForUpgrade) {
		t.Errorf("client account query on a closed node: %v, want closed for upgrade", err)
	}

	// The operator's test payment through the admin socket commits.
	rec, err := tn.admins[1].Submit(ctx, tx.Encode())
	if err != nil {
		t.Fatalf("admin test payment while ingress is closed: %v", err)
	}
	if rec.Status != ledger.StateCommitted || rec.Height == 0 || rec.TxID != tx.ID().String() {
		t.Fatalf("admin receipt %+v", rec)
	}
	after := tn.balances(ctx, 2, []ledger.Address{from})[from]
	if after.Balance != before.Balance-11 || after.Nonce != before.Nonce+1 {
		t.Fatalf("payer %+v after the admin payment, was %+v", after, before)
	}

	// Other nodes still serve clients; a load generator whose nodes
	// include the closed one retries the same transactions on the others.
	cfg := tn.load(24, 2, 3)
	res := tn.runLoad(ctx, cfg)
	if res.ClosedForUpgrade == 0 {
		t.Errorf("loadgen saw no 'closed for upgrade' although node 2 is closed (errors %v)", res.Errors)
	}
	if err := res.Verify(ctx, tn.clients[2]); err != nil {
		t.Fatal(err)
	}

	// Reopen: client payments to node 2 work again.
	if st, err = tn.admins[1].SetIngress(ctx, true, ""); err != nil || st.Ingress != nodeapi.IngressOpen {
		t.Fatalf("reopen: %v (ingress %v)", err, st)
	}
	next := tn.nextNonce(ctx, from)
	tx2 := ledger.NewPayment(tn.net.ChainID, payer, to, 5, next)
	rec, err = tn.clients[1].Submit(ctx, tx2.Encode())
	if err != nil {
		t.Fatalf("client payment after reopening: %v", err)
	}
	if rec.Height == 0 || rec.TxID != tx2.ID().String() {
		t.Fatalf("receipt %+v", rec)
	}
}

// TestBadTransactionsAreRejected submits bad transactions through the
// client API: each is refused with a clear error, never committed, and
// the sender's account is unchanged.
func TestBadTransactionsAreRejected(t *testing.T) {
	tn := startNet(t, 4)
	ctx := testCtx(t, 2*time.Minute)
	payer := tn.key("user-1")
	from := addresses(tn.users(1))[0]
	to := addresses(tn.users(2))[1]
	chain := tn.net.ChainID

	// A committed payment whose nonce the replay reuses.
	used := tn.nextNonce(ctx, from)
	if _, err := tn.clients[0].Submit(ctx, ledger.NewPayment(chain, payer, to, 1, used).Encode()); err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 57)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		tx   func(next uint64, balance uint64) []byte
		code string
		// txCode is the ledger's code of a rejection (code rejected).
		txCode ledger.Code
	}{
		{"bad signature", func(next, _ uint64) []byte {
			tx := ledger.NewPayment(chain, payer, to, 5, next)
			tx.Sig[10] ^= 0x01
			return tx.Encode()
		}, nodeapi.CodeRejected, ledger.CodeBadSignature},
		{"overdraft", func(next, balance uint64) []byte {
			return ledger.NewPayment(chain, payer, to, balance+1, next).Encode()
		}, nodeapi.CodeRejected, ledger.CodeInsufficientFunds},
		{"replayed nonce", func(_, _ uint64) []byte {
			return ledger.NewPayment(chain, payer, to, 2, used).Encode()
		}, nodeapi.CodeRejected, ledger.CodeBadNonce},
		{"future nonce", func(next, _ uint64) []byte {
			return ledger.NewPayment(chain, payer, to, 2, next+5).Encode()
		}, nodeapi.CodeRejected, ledger.CodeBadNonce},
		{"wrong chain id", func(next, _ uint64) []byte {
			return ledger.NewPayment(chain+"-other", payer, to, 5, next).Encode()
		}, nodeapi.CodeRejected, ledger.CodeWrongChain},
		{"zero amount", func(next, _ uint64) []byte {
			return ledger.NewPayment(chain, payer, to, 0, next).Encode()
		}, nodeapi.CodeRejected, ledger.CodeMalformed},
		{"unknown kind", func(next, _ uint64) []byte {
			tx := &ledger.Tx{ChainID: chain, Kind: 99, Nonce: next, Payload: ledger.EncodePayment(ledger.Payment{To: to, Amount: 5})}
			if err := tx.Sign(payer); err != nil {
				t.Fatal(err)
			}
			return tx.Encode()
		}, nodeapi.CodeRejected, ledger.CodeMalformed},
		{"malformed bytes", func(_, _ uint64) []byte { return garbage }, nodeapi.CodeBadRequest, ""},
		{"empty", func(_, _ uint64) []byte { return nil }, nodeapi.CodeBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tn.balances(ctx, 1, []ledger.Address{from, to})
			raw := tt.tx(before[from].Nonce+1, before[from].Balance)
			_, err := tn.clients[0].Submit(ctx, raw)
			if !nodeapi.IsCode(err, tt.code) || nodeapi.TxCode(err) != string(tt.txCode) {
				t.Fatalf("submit: %v (tx code %q), want code %s and tx code %q", err, nodeapi.TxCode(err), tt.code, tt.txCode)
			}
			if tx, derr := ledger.DecodeTx(raw); derr == nil {
				st, err := tn.txStatus(ctx, 1, tx.ID())
				if err == nil && st.Status != ledger.StateRejected {
					t.Fatalf("rejected tx has status %+v", st)
				}
				if err != nil && !nodeapi.IsCode(err, nodeapi.CodeNotFound) {
					t.Fatalf("status of the rejected tx: %v", err)
				}
			}
			// A block later, nothing moved on any node.
			tn.waitHeight(ctx, tn.minHeight(ctx)+1)
			for id := 1; id <= 4; id++ {
				after := tn.balances(ctx, id, []ledger.Address{from, to})
				if after[from] != before[from] || after[to] != before[to] {
					t.Fatalf("node %d: accounts changed by a rejected tx: %+v, was %+v", id, after, before)
				}
			}
		})
	}
}

// TestHaltAtHeight halts the network three blocks ahead: every node stops
// at exactly that height with the same hash, a payment stays pending, and
// clearing the halt commits it.
func TestHaltAtHeight(t *testing.T) {
	tn := startNet(t, 4)
	ctx := testCtx(t, 2*time.Minute)
	halt := tn.minHeight(ctx) + 3
	st, err := tn.admins[0].Halt(ctx, halt)
	if err != nil {
		t.Fatal(err)
	}
	if st.HaltHeight != halt {
		t.Fatalf("halt height %d, want %d", st.HaltHeight, halt)
	}
	tn.waitHeight(ctx, halt)

	// A payment submitted now is admitted (to the leader's mempool) but
	// not committed.
	payer := tn.key("user-2")
	from := addresses([]ed25519.PrivateKey{payer})[0]
	tx := ledger.NewPayment(tn.net.ChainID, payer, addresses(tn.users(1))[0], 9, tn.nextNonce(ctx, from))
	type answer struct {
		rec *nodeapi.Receipt
		err error
	}
	done := make(chan answer, 1)
	go func() {
		rec, err := tn.clients[2].Submit(ctx, tx.Encode())
		done <- answer{rec, err}
	}()
	eventually(t, 20*time.Second, "the payment admitted to the pool", func() (bool, string) {
		st, err := tn.txStatus(ctx, 3, tx.ID())
		if err != nil {
			return false, err.Error()
		}
		return st.Status == ledger.StatePending, st.Status
	})

	// Watch the network for ten block intervals (two empty-block periods):
	// no node moves past the halt height.
	interval := 200 * time.Millisecond
	watchUntil := time.Now().Add(10 * interval)
	for time.Now().Before(watchUntil) {
		hs, err := tn.heads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if h.Height != halt || h.Hash != hs[1].Hash {
				t.Fatalf("halted at %d, but%s", halt, describe(hs))
			}
		}
		select {
		case a := <-done:
			t.Fatalf("payment answered while halted: %+v %v", a.rec, a.err)
		case <-time.After(interval / 2):
		}
	}
	// The payment waits in the leader's mempool only (never replicated
	// before its block).
	pending := 0
	for id := 1; id <= 4; id++ {
		st := tn.statusOf(ctx, id)
		if !st.Halted {
			t.Errorf("node %d: not halted", id)
		}
		if st.Pending != 0 && uint64(id) != st.Leader {
			t.Errorf("node %d (not the leader, %d is): %d pending", id, st.Leader, st.Pending)
		}
		pending += st.Pending
	}
	if pending != 1 {
		t.Errorf("%d payments pending on the network, want 1 (in the leader's mempool)", pending)
	}

	// Clear the halt: the pending payment commits after the halt height.
	if _, err := tn.admins[3].Halt(ctx, 0); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if nodeapi.IsCode(a.err, nodeapi.CodeTimeout) {
		// The node gave up waiting; the same transaction gets its receipt.
		a.rec, a.err = tn.clients[2].Submit(ctx, tx.Encode())
	}
	if a.err != nil {
		t.Fatalf("payment after clearing the halt: %v", a.err)
	}
	if a.rec.Height <= halt {
		t.Fatalf("payment committed at %d, at or below the halt height %d", a.rec.Height, halt)
	}
	tn.waitHeight(ctx, a.rec.Height)
	tn.checkSameChain(ctx, a.rec.Height)
}
