package node

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"

	"github.com/teeup/teeup/ledger"
)

const mpChain = "mp-chain"

func mpKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func mpAddr(k ed25519.PrivateKey) ledger.Address {
	var a ledger.Address
	copy(a[:], k.Public().(ed25519.PublicKey))
	return a
}

// mpAdmit admits a payment of amount with nonce from key to the mempool,
// given the sender's account.
func mpAdmit(m *mempool, key ed25519.PrivateKey, amount, nonce uint64, acct ledger.Account) (admission, *ledger.Tx) {
	tx := ledger.NewPayment(mpChain, key, mpAddr(mpKey(99)), amount, nonce)
	p, err := ledger.DecodePayment(tx.Payload)
	if err != nil {
		panic(err)
	}
	return m.admit(tx, tx.ID(), p, acct), tx
}

// TestMempoolAdmission: every admission decision, on a given account
// state and what already waits.
func TestMempoolAdmission(t *testing.T) {
	alice := mpKey(1)
	funded := ledger.Account{Balance: 100, Nonce: 4}
	cases := []struct {
		name    string
		acct    ledger.Account
		waiting []uint64 // amounts already admitted from the sender, nonces following acct's
		amount  uint64
		nonce   uint64
		status  admitStatus
		code    ledger.Code
		stale   bool
	}{
		{name: "next nonce, funded", acct: funded, amount: 100, nonce: 5, status: admitAdmitted},
		{name: "after waiting payments", acct: funded, waiting: []uint64{10, 20}, amount: 70, nonce: 7, status: admitAdmitted},
		{name: "nonce used", acct: funded, amount: 1, nonce: 4, status: admitRejected, code: ledger.CodeBadNonce},
		{name: "nonce of a waiting payment", acct: funded, waiting: []uint64{10}, amount: 1, nonce: 5, status: admitRejected, code: ledger.CodeBadNonce},
		{name: "nonce ahead (the leader may lag)", acct: funded, amount: 1, nonce: 6, status: admitRejected, code: ledger.CodeBadNonce, stale: true},
		{name: "counts pool entries", acct: ledger.Account{Balance: 100, Nonce: 4, Pending: 2, PendingDebit: 30}, amount: 70, nonce: 7, status: admitAdmitted},
		{name: "unfunded", acct: ledger.Account{}, amount: 1, nonce: 1, status: admitRejected, code: ledger.CodeInsufficientFunds, stale: true},
		{name: "over the balance", acct: funded, amount: 101, nonce: 5, status: admitRejected, code: ledger.CodeInsufficientFunds, stale: true},
		{name: "over the balance less waiting debits", acct: funded, waiting: []uint64{60}, amount: 41, nonce: 6, status: admitRejected, code: ledger.CodeInsufficientFunds, stale: true},
		{name: "over the balance less pool debits", acct: ledger.Account{Balance: 100, Nonce: 4, Pending: 1, PendingDebit: 60}, amount: 41, nonce: 6, status: admitRejected, code: ledger.CodeInsufficientFunds, stale: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMempool(100, 10)
			for i, amt := range tc.waiting {
				if a, _ := mpAdmit(m, alice, amt, tc.acct.Nonce+tc.acct.Pending+uint64(i)+1, tc.acct); a.status != admitAdmitted {
					t.Fatalf("setup: %+v", a)
				}
			}
			a, _ := mpAdmit(m, alice, tc.amount, tc.nonce, tc.acct)
			if a.status != tc.status || a.code != tc.code || a.stale != tc.stale {
				t.Fatalf("admission %+v, want status %d code %q stale %v", a, tc.status, tc.code, tc.stale)
			}
			if a.status == admitRejected && a.reason == "" {
				t.Fatal("a rejection without a reason")
			}
			want := len(tc.waiting)
			if tc.status == admitAdmitted {
				want++
			}
			if m.size() != want {
				t.Fatalf("%d waiting, want %d", m.size(), want)
			}
		})
	}
}

func TestMempoolBounds(t *testing.T) {
	acct := ledger.Account{Balance: 1 << 40}
	t.Run("total", func(t *testing.T) {
		m := newMempool(3, 10)
		for i := range 3 {
			if a, _ := mpAdmit(m, mpKey(byte(10+i)), 1, 1, acct); a.status != admitAdmitted {
				t.Fatalf("payment %d: %+v", i, a)
			}
		}
		a, _ := mpAdmit(m, mpKey(20), 1, 1, acct)
		if a.status != admitPoolFull || a.reason == "" {
			t.Fatalf("%+v, want pool full", a)
		}
		// An invalid payment is rejected for what it is, full or not.
		if a, _ := mpAdmit(m, mpKey(20), 1, 0, acct); a.status != admitRejected {
			t.Fatalf("%+v, want a rejection", a)
		}
	})
	t.Run("per account", func(t *testing.T) {
		m := newMempool(100, 2)
		k := mpKey(30)
		var txs []*ledger.Tx
		for n := uint64(1); n <= 2; n++ {
			a, tx := mpAdmit(m, k, 1, n, acct)
			if a.status != admitAdmitted {
				t.Fatalf("nonce %d: %+v", n, a)
			}
			txs = append(txs, tx)
		}
		if a, _ := mpAdmit(m, k, 1, 3, acct); a.status != admitAccountBusy {
			t.Fatalf("%+v, want too many pending", a)
		}
		if a, _ := mpAdmit(m, mpKey(31), 1, 1, acct); a.status != admitAdmitted {
			t.Fatalf("another account: %+v", a)
		}
		// The first is committed: the account's nonce moved, one slot frees.
		m.remove([]ledger.Hash{txs[0].ID()})
		if a, _ := mpAdmit(m, k, 1, 3, ledger.Account{Balance: 1 << 40, Nonce: 1}); a.status != admitAdmitted {
			t.Fatalf("after a commit: %+v", a)
		}
	})
}

func TestMempoolOrderRemoveClear(t *testing.T) {
	m := newMempool(1000, 100)
	acct := ledger.Account{Balance: 1 << 40}
	var ids []ledger.Hash
	for i := range 50 {
		a, tx := mpAdmit(m, mpKey(byte(40+i%5)), 1, uint64(i/5+1), acct)
		if a.status != admitAdmitted {
			t.Fatalf("%d: %+v", i, a)
		}
		ids = append(ids, tx.ID())
	}
	// Submitting the same payment again is no new entry.
	if a, _ := mpAdmit(m, mpKey(40), 1, 1, acct); a.status != admitAdmitted || m.size() != 50 {
		t.Fatalf("duplicate: %+v, %d waiting", a, m.size())
	}
	c := m.candidates(10)
	for i, tx := range c {
		if tx.ID() != ids[i] {
			t.Fatalf("candidate %d out of admission order", i)
		}
	}
	// Each of the five senders has 10 payments waiting (counted into the
	// last nonce the account API reports); an unknown sender none.
	if w := m.waiting(mpAddr(mpKey(40))); w != 10 {
		t.Fatalf("sender 40: %d waiting, want 10", w)
	}
	if w := m.waiting(mpAddr(mpKey(7))); w != 0 {
		t.Fatalf("unknown sender: %d waiting", w)
	}
	m.remove(ids[:30])
	m.remove(ids[:5]) // already gone: ignored
	if w := m.waiting(mpAddr(mpKey(40))); w != 4 {
		t.Fatalf("sender 40 after removal: %d waiting, want 4", w)
	}
	if m.size() != 20 || len(m.queue) != 20 {
		t.Fatalf("%d waiting, queue %d", m.size(), len(m.queue))
	}
	if c := m.candidates(100); len(c) != 20 || c[0].ID() != ids[30] {
		t.Fatalf("%d candidates", len(c))
	}
	if !m.has(ids[49]) || m.has(ids[0]) {
		t.Fatal("has")
	}
	if lost := m.clear(); len(lost) != 20 || m.size() != 0 || len(m.candidates(10)) != 0 || len(m.accounts) != 0 {
		t.Fatalf("clear: %d lost, %d left", len(lost), m.size())
	}
}

func TestAdmissionCodec(t *testing.T) {
	for _, a := range []admission{
		{status: admitAdmitted},
		{status: admitCommitted, height: 42},
		{status: admitRejected, code: ledger.CodeBadNonce, reason: "bad nonce: got 3, want 2", stale: true},
		{status: admitPoolFull, reason: "pool full"},
		{status: admitAccountBusy, reason: "busy"},
		{status: admitNotLeader, reason: "not the leader"},
	} {
		got, err := decodeAdmission(encodeAdmission(a))
		if err != nil || got != a {
			t.Fatalf("round trip of %+v: %+v %v", a, got, err)
		}
	}
	bad := [][]byte{
		nil,
		{0},
		encodeAdmission(admission{status: 0}),
		encodeAdmission(admission{status: admitNotLeader + 1}),
		encodeAdmission(admission{status: admitRejected}), // no code
		append(encodeAdmission(admission{status: admitAdmitted}), 0),
	}
	for i, b := range bad {
		if _, err := decodeAdmission(b); err == nil {
			t.Errorf("bad answer %d decoded", i)
		}
	}
	long := admission{status: admitRejected, code: ledger.Code(bytes.Repeat([]byte{'c'}, 200)), reason: string(bytes.Repeat([]byte{'r'}, 5000))}
	if got, err := decodeAdmission(encodeAdmission(long)); err != nil || len(got.code) != maxAdmissionCode || len(got.reason) != maxAdmissionReason {
		t.Fatalf("long answer: %v", err)
	}
}

func FuzzDecodeAdmission(f *testing.F) {
	f.Add(encodeAdmission(admission{status: admitRejected, code: ledger.CodeInsufficientFunds, reason: "x", stale: true}))
	f.Add(encodeAdmission(admission{status: admitCommitted, height: 7}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAdmission(b)
		if err != nil {
			return
		}
		again, err := decodeAdmission(encodeAdmission(a))
		if err != nil || again != a {
			t.Fatalf("re-encoding %+v: %+v %v", a, again, err)
		}
	})
}

func TestRecentStatusesBounded(t *testing.T) {
	r := newRecentStatuses(3)
	id := func(i int) ledger.Hash { return ledger.Hash{byte(i)} }
	for i := range 5 {
		r.put(id(i), ledger.TxStatus{State: ledger.StateRejected, Reason: fmt.Sprint(i)})
	}
	if r.len() != 3 {
		t.Fatalf("%d remembered, want 3", r.len())
	}
	if _, ok := r.get(id(0)); ok {
		t.Fatal("the oldest was kept")
	}
	r.get(id(2)) // used: kept over 3
	r.put(id(5), ledger.TxStatus{State: ledger.StatePending})
	if _, ok := r.get(id(2)); !ok {
		t.Fatal("a recently used status was evicted")
	}
	if _, ok := r.get(id(3)); ok {
		t.Fatal("the least recently used was kept")
	}
	r.put(id(5), ledger.TxStatus{State: ledger.StateRejected})
	if st, _ := r.get(id(5)); st.State != ledger.StateRejected || r.len() != 3 {
		t.Fatalf("update: %+v", st)
	}
}
