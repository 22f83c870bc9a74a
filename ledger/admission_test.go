package ledger

import (
	"crypto/sha256"
	"strings"
	"testing"
)

// directBlock builds the next block (pool entries first) with payments,
// and fails the test if any is dropped.
func (c *chain) directBlock(payments ...*Tx) *Block {
	c.t.Helper()
	blk, dropped, err := c.s.BuildBlockWith(1, nodeSigner(1), c.nextTime(), 0, payments)
	if err != nil {
		c.t.Fatalf("BuildBlockWith: %v", err)
	}
	if len(dropped) > 0 {
		c.t.Fatalf("dropped %+v", dropped)
	}
	return blk
}

// sealedWith replaces a block's body with txs, re-signed by node 1.
func sealedWith(c *chain, b *Block, txs []*Tx) *Block {
	c.t.Helper()
	body, err := SealBody(testLedgerKey(), b.Header.ChainID, b.Header.Height, b.Header.PrevHash, txs)
	if err != nil {
		c.t.Fatal(err)
	}
	b.Body, b.Header.BodyHash, b.Header.TxCount = body, sha256.Sum256(body), uint32(len(txs))
	resign(b, nodeSigner(1))
	return b
}

func TestBlockCarriesPayments(t *testing.T) {
	c := openChain(t, testGenesis(1))
	p1 := NewPayment(testChain, alice, addrOf(bob), 10, 1)
	p2 := NewPayment(testChain, alice, addrOf(carol), 20, 2)
	p3 := NewPayment(testChain, bob, addrOf(dave), 5, 1)
	before := c.index
	res := c.mustAccept(&Command{Kind: CmdBlock, Block: c.directBlock(p1, p2, p3)})
	if c.index != before+1 {
		t.Fatal("one raft entry per block")
	}
	if len(res.TxIDs) != 3 || res.TxIDs[0] != p1.ID() || res.TxIDs[2] != p3.ID() {
		t.Fatalf("tx ids %v", res.TxIDs)
	}
	if a := c.account(alice); a.Balance != 970 || a.Nonce != 2 || a.Pending != 0 || a.PendingDebit != 0 {
		t.Fatalf("alice %+v", a)
	}
	if a := c.account(dave); a.Balance != 5 {
		t.Fatalf("dave %+v", a)
	}
	for _, tx := range []*Tx{p1, p2, p3} {
		st, ok, err := c.s.TxStatus(tx.ID())
		if err != nil || !ok || st.State != StateCommitted || st.Height != 1 || st.Code != CodeOK {
			t.Fatalf("status %+v %v %v", st, ok, err)
		}
	}
	if txs, err := c.s.BlockTxs(1); err != nil || len(txs) != 3 {
		t.Fatalf("block txs %d %v", len(txs), err)
	}
	if h, err := c.s.AccountHistory(addrOf(dave), 10); err != nil || len(h) != 1 || h[0].Amount != 5 {
		t.Fatalf("history %+v %v", h, err)
	}
}

func TestPoolEntriesComeFirst(t *testing.T) {
	c := openChain(t, testGenesis(1))
	pooled := c.pay(alice, bob, 10) // through the replicated pool (an older log)
	direct := NewPayment(testChain, alice, addrOf(bob), 10, 2)
	blk := c.directBlock(direct)
	if blk.Header.TxCount != 2 {
		t.Fatalf("%d txs", blk.Header.TxCount)
	}
	res := c.mustAccept(&Command{Kind: CmdBlock, Block: blk})
	if res.TxIDs[0] != pooled.ID() || res.TxIDs[1] != direct.ID() || c.s.PoolSize() != 0 {
		t.Fatalf("%v pool %d", res.TxIDs, c.s.PoolSize())
	}
	if a := c.account(alice); a.Balance != 980 || a.Nonce != 2 {
		t.Fatalf("alice %+v", a)
	}
}

// TestBlockWithAnInvalidPaymentIsRefused: a block carrying one payment that
// is not valid on the state it meets is refused as a whole, even after a
// valid one, and changes nothing but the applied index.
func TestBlockWithAnInvalidPaymentIsRefused(t *testing.T) {
	valid := func() *Tx { return NewPayment(testChain, alice, addrOf(bob), 10, 1) }
	cases := []struct {
		name  string
		setup func(c *chain)
		bad   func() *Tx
		code  Code
		// noPool leaves the pool's entries out of the block.
		noPool bool
	}{
		{name: "bad signature", bad: func() *Tx {
			tx := NewPayment(testChain, bob, addrOf(carol), 1, 1)
			tx.Sig[0] ^= 1
			return tx
		}, code: CodeBadSignature},
		{name: "wrong chain", bad: func() *Tx { return NewPayment("other", bob, addrOf(carol), 1, 1) }, code: CodeWrongChain},
		{name: "nonce reused", bad: func() *Tx { return NewPayment(testChain, alice, addrOf(carol), 1, 1) }, code: CodeBadNonce},
		{name: "nonce gap", bad: func() *Tx { return NewPayment(testChain, bob, addrOf(carol), 1, 2) }, code: CodeBadNonce},
		{name: "same payment twice", bad: valid, code: CodeBadNonce},
		{name: "unfunded", bad: func() *Tx { return NewPayment(testChain, dave, addrOf(carol), 1, 1) }, code: CodeInsufficientFunds},
		{name: "overspend after the first", bad: func() *Tx { return NewPayment(testChain, alice, addrOf(carol), 991, 2) }, code: CodeInsufficientFunds},
		{name: "zero amount", bad: func() *Tx {
			tx := NewPayment(testChain, bob, addrOf(carol), 1, 1)
			tx.Payload = EncodePayment(Payment{To: addrOf(carol)})
			if err := tx.Sign(bob); err != nil {
				t.Fatal(err)
			}
			return tx
		}, code: CodeMalformed},
		{name: "bad payload", bad: func() *Tx {
			tx := NewPayment(testChain, bob, addrOf(carol), 1, 1)
			tx.Payload = []byte{1, 2, 3}
			if err := tx.Sign(bob); err != nil {
				t.Fatal(err)
			}
			return tx
		}, code: CodeMalformed},
		{name: "governance kind outside the pool", bad: func() *Tx {
			tx := NewPayment(testChain, bob, addrOf(carol), 1, 1)
			tx.Kind = TxProposeRelease
			if err := tx.Sign(bob); err != nil {
				t.Fatal(err)
			}
			return tx
		}, code: CodeMalformed},
		{name: "sender with a pool entry pending", setup: func(c *chain) { c.pay(bob, carol, 1) },
			bad: func() *Tx { return NewPayment(testChain, bob, addrOf(carol), 1, 2) }, code: CodeBadNonce, noPool: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openChain(t, testGenesis(1))
			if tc.setup != nil {
				tc.setup(c)
			}
			pool, err := c.s.Pool(0)
			if err != nil {
				t.Fatal(err)
			}
			lead := pool
			if tc.noPool {
				lead = nil
			}
			blk := sealedWith(c, c.directBlock(), append(lead, valid(), tc.bad()))
			height, _ := c.s.Head()
			digest := dbDigest(t, c.s.DB(), string(keyApplied))
			res := c.apply(&Command{Kind: CmdBlock, Block: blk})
			if res.Accepted || res.Code != CodeBadBlock || !strings.Contains(res.Reason, string(tc.code)) || len(res.TxIDs) != 0 {
				t.Fatalf("result %+v, want a refusal naming %q", res, tc.code)
			}
			if h, _ := c.s.Head(); h != height {
				t.Fatal("head moved")
			}
			if got := dbDigest(t, c.s.DB(), string(keyApplied)); got != digest {
				t.Fatal("a refused block changed the state")
			}
			if c.s.AppliedIndex() != c.index {
				t.Fatal("applied index did not advance")
			}
			// The same block without the bad payment applies.
			c.mustAccept(&Command{Kind: CmdBlock, Block: sealedWith(c, c.directBlock(), append(lead, valid()))})
			if a := c.account(alice); a.Nonce != 1 || a.Balance != 990 {
				t.Fatalf("alice %+v", a)
			}
		})
	}
}

func TestBuildBlockDropsInvalidPayments(t *testing.T) {
	g := testGenesis(1)
	g.Params.MaxBlockTxs = 4
	c := openChain(t, g)
	ok1 := NewPayment(testChain, alice, addrOf(bob), 10, 1)
	gap := NewPayment(testChain, bob, addrOf(carol), 1, 5)
	broke := NewPayment(testChain, dave, addrOf(carol), 1, 1)
	ok2 := NewPayment(testChain, alice, addrOf(bob), 10, 2)
	ok3 := NewPayment(testChain, carol, addrOf(bob), 10, 1)
	ok4 := NewPayment(testChain, bob, addrOf(carol), 10, 1)
	ok5 := NewPayment(testChain, alice, addrOf(bob), 10, 3) // no room: max_block_txs 4
	blk, dropped, err := c.s.BuildBlockWith(1, nodeSigner(1), c.nextTime(), 0, []*Tx{ok1, gap, broke, ok2, ok3, ok4, ok5})
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 2 || dropped[0].ID != gap.ID() || dropped[0].Code != CodeBadNonce || dropped[1].ID != broke.ID() || dropped[1].Code != CodeInsufficientFunds {
		t.Fatalf("dropped %+v", dropped)
	}
	res := c.mustAccept(&Command{Kind: CmdBlock, Block: blk})
	if len(res.TxIDs) != 4 || res.TxIDs[3] != ok4.ID() {
		t.Fatalf("committed %v", res.TxIDs)
	}
}

func TestPrecheckPayment(t *testing.T) {
	signed := func(f func(tx *Tx)) *Tx {
		tx := NewPayment(testChain, alice, addrOf(bob), 1, 1)
		f(tx)
		if err := tx.Sign(alice); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	cases := []struct {
		name string
		tx   *Tx
		code Code
	}{
		{"valid", NewPayment(testChain, alice, addrOf(bob), 1, 1), ""},
		{"missing", nil, CodeMalformed},
		{"wrong chain", NewPayment("other", alice, addrOf(bob), 1, 1), CodeWrongChain},
		{"not a payment", signed(func(tx *Tx) { tx.Kind = TxAddNode }), CodeMalformed},
		{"zero amount", signed(func(tx *Tx) { tx.Payload = EncodePayment(Payment{To: addrOf(bob)}) }), CodeMalformed},
		{"bad payload", signed(func(tx *Tx) { tx.Payload = []byte("x") }), CodeMalformed},
		{"oversize payload", signed(func(tx *Tx) { tx.Payload = make([]byte, TxPayment.MaxPayload()+1) }), CodeMalformed},
		{"bad signature", func() *Tx { tx := NewPayment(testChain, alice, addrOf(bob), 1, 1); tx.Sig[1] ^= 1; return tx }(), CodeBadSignature},
		{"signed by another key", func() *Tx {
			tx := NewPayment(testChain, alice, addrOf(bob), 1, 1)
			if err := tx.Sign(bob); err != nil {
				t.Fatal(err)
			}
			tx.From = addrOf(alice)
			return tx
		}(), CodeBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, code, reason := PrecheckPayment(testChain, tc.tx)
			if code != tc.code || (code != "" && reason == "") {
				t.Fatalf("code %q (%s), want %q", code, reason, tc.code)
			}
		})
	}
}
