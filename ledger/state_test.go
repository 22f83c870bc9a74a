package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPaymentFlow(t *testing.T) {
	c := openChain(t, testGenesis(1))
	tx1 := c.pay(alice, bob, 100)
	tx2 := c.pay(alice, carol, 50)
	tx3 := c.pay(bob, dave, 20)
	self := c.pay(bob, bob, 5) // operator self-payment

	for _, tx := range []*Tx{tx1, tx2, tx3, self} {
		st, ok, err := c.s.TxStatus(tx.ID())
		if err != nil || !ok || st.State != StatePending {
			t.Fatalf("status before the block: %+v %v %v", st, ok, err)
		}
	}
	if got := c.account(alice); got != (Account{Balance: 1000, Pending: 2, PendingDebit: 150}) {
		t.Fatalf("alice before the block: %+v", got)
	}
	if c.s.PoolSize() != 4 {
		t.Fatalf("pool size %d", c.s.PoolSize())
	}
	pool, err := c.s.Pool(0)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*Tx{tx1, tx2, tx3, self} {
		if pool[i].ID() != want.ID() {
			t.Fatalf("pool[%d] is not in admission order", i)
		}
	}
	if two, _ := c.s.Pool(2); len(two) != 2 || two[1].ID() != tx2.ID() {
		t.Fatalf("Pool(2) = %d txs", len(two))
	}

	res := c.commit()
	if res.Height != 1 || len(res.TxIDs) != 4 || res.TxIDs[0] != tx1.ID() || res.TxIDs[3] != self.ID() {
		t.Fatalf("block result %+v", res)
	}
	want := map[string]struct {
		key  ed25519.PrivateKey
		acct Account
	}{
		"alice": {alice, Account{Balance: 850, Nonce: 2}},
		"bob":   {bob, Account{Balance: 580, Nonce: 2}},
		"carol": {carol, Account{Balance: 150}},
		"dave":  {dave, Account{Balance: 20}},
	}
	for name, w := range want {
		if got := c.account(w.key); got != w.acct {
			t.Errorf("%s: %+v, want %+v", name, got, w.acct)
		}
	}
	for _, tx := range []*Tx{tx1, tx2, tx3, self} {
		st, ok, err := c.s.TxStatus(tx.ID())
		if err != nil || !ok || st != (TxStatus{State: StateCommitted, Height: 1, Code: CodeOK}) {
			t.Fatalf("status after the block: %+v %v %v", st, ok, err)
		}
	}
	if c.s.PoolSize() != 0 {
		t.Fatalf("pool size %d after the block", c.s.PoolSize())
	}
	if p, _ := c.s.Pool(0); len(p) != 0 {
		t.Fatalf("pool holds %d", len(p))
	}
	height, hash := c.s.Head()
	blk, err := c.s.Block(1)
	if err != nil {
		t.Fatal(err)
	}
	if height != 1 || hash != blk.Hash() || blk.Header.TxCount != 4 {
		t.Fatalf("head %d %s, block %+v", height, hash, blk.Header)
	}
	b0, _ := c.s.Block(0)
	if blk.Header.PrevHash != b0.Hash() {
		t.Fatal("block 1 does not chain to block 0")
	}
	txs, err := c.s.BlockTxs(1)
	if err != nil || len(txs) != 4 || txs[2].ID() != tx3.ID() {
		t.Fatalf("BlockTxs: %d, %v", len(txs), err)
	}
	if txs, err := c.s.BlockTxs(0); err != nil || len(txs) != 0 {
		t.Fatalf("BlockTxs(0): %v %v", txs, err)
	}
	// An empty heartbeat block.
	res = c.commit()
	if res.Height != 2 || len(res.TxIDs) != 0 {
		t.Fatalf("heartbeat %+v", res)
	}
	if _, unknown, err := c.s.TxStatus(Hash{1}); unknown || err != nil {
		t.Fatal("unknown tx has a status")
	}
	if _, err := c.s.Block(9); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "head is 2") {
		t.Fatalf("Block(9): %v", err)
	}
}

func TestSubmitRejections(t *testing.T) {
	mkTx := func(chainID string, from ed25519.PrivateKey, kind TxKind, payload []byte, nonce uint64) *Tx {
		tx := &Tx{ChainID: chainID, Kind: kind, Nonce: nonce, Payload: payload}
		if err := tx.Sign(from); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	type tcase struct {
		name    string
		genesis func(*Genesis)
		setup   func(c *chain) // commands applied before the tested one
		tx      func(c *chain) *Tx
		code    Code
		// statusKept: the tx id already has a status, which must not change.
		statusKept bool
	}
	cases := []tcase{
		{
			name: "bad signature",
			tx: func(*chain) *Tx {
				tx := NewPayment(testChain, alice, addrOf(bob), 10, 1)
				tx.Sig[0] ^= 1
				return tx
			},
			code: CodeBadSignature,
		},
		{
			name: "amount changed after signing",
			tx: func(*chain) *Tx {
				tx := NewPayment(testChain, alice, addrOf(bob), 10, 1)
				tx.Payload = EncodePayment(Payment{To: addrOf(bob), Amount: 999})
				return tx
			},
			code: CodeBadSignature,
		},
		{
			name: "wrong chain id",
			tx:   func(*chain) *Tx { return NewPayment("other-chain", alice, addrOf(bob), 10, 1) },
			code: CodeWrongChain,
		},
		{
			name: "unknown kind",
			tx: func(*chain) *Tx {
				return mkTx(testChain, alice, 99, EncodePayment(Payment{To: addrOf(bob), Amount: 1}), 1)
			},
			code: CodeMalformed,
		},
		{
			name: "kind zero",
			tx:   func(*chain) *Tx { return mkTx(testChain, alice, 0, nil, 1) },
			code: CodeMalformed,
		},
		{
			name: "malformed payload",
			tx:   func(*chain) *Tx { return mkTx(testChain, alice, TxPayment, []byte{1, 2, 3}, 1) },
			code: CodeMalformed,
		},
		{
			name: "oversize payload",
			tx:   func(*chain) *Tx { return mkTx(testChain, alice, TxPayment, make([]byte, MaxPayloadSize+1), 1) },
			code: CodeMalformed,
		},
		{
			name: "zero amount",
			tx:   func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(bob), 0, 1) },
			code: CodeMalformed,
		},
		{
			name: "overdraft",
			tx:   func(*chain) *Tx { return NewPayment(testChain, carol, addrOf(bob), 101, 1) },
			code: CodeInsufficientFunds,
		},
		{
			name: "unknown sender",
			tx:   func(*chain) *Tx { return NewPayment(testChain, dave, addrOf(bob), 1, 1) },
			code: CodeInsufficientFunds,
		},
		{
			name:  "overdraft including pending debits",
			setup: func(c *chain) { c.pay(carol, bob, 60) },
			tx:    func(*chain) *Tx { return NewPayment(testChain, carol, addrOf(bob), 50, 2) },
			code:  CodeInsufficientFunds,
		},
		{
			name:  "replayed nonce after commit",
			setup: func(c *chain) { c.pay(alice, bob, 10); c.commit() },
			tx:    func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(carol), 10, 1) },
			code:  CodeBadNonce,
		},
		{
			name:  "replayed nonce while pending",
			setup: func(c *chain) { c.pay(alice, bob, 10) },
			tx:    func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(carol), 10, 1) },
			code:  CodeBadNonce,
		},
		{
			name: "nonce gap",
			tx:   func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(bob), 10, 3) },
			code: CodeBadNonce,
		},
		{
			name: "nonce zero",
			tx:   func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(bob), 10, 0) },
			code: CodeBadNonce,
		},
		{
			name: "replay of the identical committed tx",
			setup: func(c *chain) {
				c.pay(alice, bob, 10)
				c.commit()
			},
			tx:         func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(bob), 10, 1) },
			code:       CodeAlreadyCommitted,
			statusKept: true,
		},
		{
			name:       "identical pending tx",
			setup:      func(c *chain) { c.pay(alice, bob, 10) },
			tx:         func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(bob), 10, 1) },
			code:       CodeAlreadyPending,
			statusKept: true,
		},
		{
			name:    "pool full",
			genesis: func(g *Genesis) { g.Params.MaxPool = 2 },
			setup:   func(c *chain) { c.pay(bob, carol, 1); c.pay(carol, bob, 1) },
			tx:      func(*chain) *Tx { return NewPayment(testChain, alice, addrOf(bob), 10, 1) },
			code:    CodePoolFull,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := testGenesis(1)
			if tc.genesis != nil {
				tc.genesis(g)
			}
			c := openChain(t, g)
			if tc.setup != nil {
				tc.setup(c)
			}
			tx := tc.tx(c)
			senderOf := func() Account {
				a, err := c.s.Account(tx.From)
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			before := senderOf()
			pool := c.s.PoolSize()
			prevStatus, _, _ := c.s.TxStatus(tx.ID())

			res := c.submit(tx)
			if res.Accepted || res.Kind != CmdSubmitTx || res.TxID != tx.ID() {
				t.Fatalf("result %+v, want a rejection of %s", res, tx.ID())
			}
			if res.Code != tc.code || res.Reason == "" {
				t.Fatalf("code %q (reason %q), want %q with a reason", res.Code, res.Reason, tc.code)
			}
			st, ok, err := c.s.TxStatus(tx.ID())
			if err != nil || !ok {
				t.Fatalf("no status: %v", err)
			}
			if tc.statusKept {
				if st != prevStatus {
					t.Fatalf("status changed from %+v to %+v", prevStatus, st)
				}
			} else if st.State != StateRejected || st.Code != tc.code || st.Reason != res.Reason {
				t.Fatalf("status %+v, want rejected with the code and reason", st)
			}
			if got := senderOf(); got != before {
				t.Fatalf("sender changed: %+v -> %+v", before, got)
			}
			if c.s.PoolSize() != pool {
				t.Fatalf("pool size changed: %d -> %d", pool, c.s.PoolSize())
			}
			if c.s.AppliedIndex() != c.index {
				t.Fatal("applied index did not advance")
			}
		})
	}
	t.Run("missing tx", func(t *testing.T) {
		c := openChain(t, testGenesis(1))
		if res := c.apply(&Command{Kind: CmdSubmitTx}); res.Accepted || res.Code != CodeMalformed {
			t.Fatalf("result %+v", res)
		}
	})
}

func TestRejectedTxCanBeAdmittedLater(t *testing.T) {
	c := openChain(t, testGenesis(1))
	tx := NewPayment(testChain, dave, addrOf(bob), 5, 1)
	if res := c.submit(tx); res.Accepted {
		t.Fatal("dave has no funds yet")
	}
	c.pay(alice, dave, 10)
	c.commit()
	if res := c.submit(tx); !res.Accepted {
		t.Fatalf("after funding: %s", res.Reason)
	}
	if st, _, _ := c.s.TxStatus(tx.ID()); st.State != StatePending {
		t.Fatalf("status %+v", st)
	}
}

// blockCase builds, from a chain with three pooled payments, a block to
// apply.
type blockCase struct {
	name  string
	setup func(c *chain)
	block func(c *chain) *Block
	code  Code
}

func TestBlockRejections(t *testing.T) {
	key := testLedgerKey()
	resealed := func(c *chain, b *Block, txs []*Tx) *Block {
		body, err := SealBody(key, b.Header.ChainID, b.Header.Height, b.Header.PrevHash, txs)
		if err != nil {
			c.t.Fatal(err)
		}
		b.Body = body
		b.Header.BodyHash = sha256.Sum256(body)
		b.Header.TxCount = uint32(len(txs))
		resign(b, nodeSigner(1))
		return b
	}
	pool := func(c *chain) []*Tx {
		p, err := c.s.Pool(0)
		if err != nil {
			c.t.Fatal(err)
		}
		return p
	}
	cases := []blockCase{
		{name: "missing block", block: func(*chain) *Block { return nil }, code: CodeMalformed},
		{name: "wrong height", block: func(c *chain) *Block {
			b := c.build(0)
			b.Header.Height = 2
			return resealed(c, b, pool(c))
		}, code: CodeBadBlock},
		{name: "height of the head", setup: func(c *chain) { c.commit() }, block: func(c *chain) *Block {
			b, _ := c.s.Block(1)
			return b
		}, code: CodeBadBlock},
		{name: "wrong previous hash", block: func(c *chain) *Block {
			b := c.build(0)
			b.Header.PrevHash = Hash{1}
			return resealed(c, b, pool(c))
		}, code: CodeBadBlock},
		{name: "wrong chain id", block: func(c *chain) *Block {
			b := c.build(0)
			b.Header.ChainID = "other"
			return resealed(c, b, pool(c))
		}, code: CodeWrongChain},
		{name: "unregistered proposer", block: func(c *chain) *Block {
			b := c.build(0)
			b.Header.Proposer = 2
			b.Header.ProposerKey = addrOf(nodeSigner(2))
			copy(b.Sig[:], ed25519.Sign(nodeSigner(2), b.Header.SigningBytes()))
			return b
		}, code: CodeBadBlock},
		{name: "wrong proposer key", block: func(c *chain) *Block {
			b := c.build(0)
			b.Header.ProposerKey = addrOf(nodeSigner(2))
			copy(b.Sig[:], ed25519.Sign(nodeSigner(2), b.Header.SigningBytes()))
			return b
		}, code: CodeBadBlock},
		{name: "bad signature", block: func(c *chain) *Block {
			b := c.build(0)
			b.Sig[5] ^= 1
			return b
		}, code: CodeBadBlock},
		{name: "signed by another key", block: func(c *chain) *Block {
			b := c.build(0)
			copy(b.Sig[:], ed25519.Sign(nodeSigner(2), b.Header.SigningBytes()))
			return b
		}, code: CodeBadBlock},
		{name: "body hash mismatch", block: func(c *chain) *Block {
			b := c.build(0)
			b.Body[20] ^= 1
			return b
		}, code: CodeBadBlock},
		{name: "tampered body", block: func(c *chain) *Block {
			b := c.build(0)
			b.Body[20] ^= 1
			b.Header.BodyHash = sha256.Sum256(b.Body)
			resign(b, nodeSigner(1))
			return b
		}, code: CodeBadBlock},
		{name: "body sealed for another height", block: func(c *chain) *Block {
			b := c.build(0)
			body, _ := SealBody(key, testChain, 7, b.Header.PrevHash, pool(c))
			b.Body = body
			b.Header.BodyHash = sha256.Sum256(body)
			resign(b, nodeSigner(1))
			return b
		}, code: CodeBadBlock},
		{name: "tx count mismatch", block: func(c *chain) *Block {
			b := c.build(0)
			b.Header.TxCount = 2
			resign(b, nodeSigner(1))
			return b
		}, code: CodeBadBlock},
		{name: "txs out of pool order", block: func(c *chain) *Block {
			p := pool(c)
			return resealed(c, c.build(0), []*Tx{p[1], p[0], p[2]})
		}, code: CodeBadBlock},
		{name: "skips the pool head", block: func(c *chain) *Block {
			return resealed(c, c.build(0), pool(c)[1:])
		}, code: CodeBadBlock},
		{name: "tx not in the pool", block: func(c *chain) *Block {
			return resealed(c, c.build(0), []*Tx{NewPayment(testChain, bob, addrOf(alice), 1, 1)})
		}, code: CodeBadBlock},
		{name: "more txs than the pool", block: func(c *chain) *Block {
			p := pool(c)
			return resealed(c, c.build(0), append(p, NewPayment(testChain, bob, addrOf(alice), 1, 1)))
		}, code: CodeBadBlock},
		{name: "time goes backwards", setup: func(c *chain) { c.commit() }, block: func(c *chain) *Block {
			b := c.build(0)
			b.Header.Time -= int64(2 * time.Second)
			resign(b, nodeSigner(1))
			return b
		}, code: CodeBadBlock},
		{name: "past halt height", setup: func(c *chain) {
			c.commit()
			c.mustAccept(&Command{Kind: CmdHalt, HaltHeight: 1})
		}, block: func(c *chain) *Block {
			// Built by hand: BuildBlock refuses past the halt.
			b := &Block{Header: BlockHeader{ChainID: testChain, Height: 2, Proposer: 1, ProposerKey: addrOf(nodeSigner(1)), Time: time.Now().UnixNano()}}
			_, b.Header.PrevHash = c.s.Head()
			return resealed(c, b, nil)
		}, code: CodeHalted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openChain(t, testGenesis(2))
			if tc.setup != nil {
				tc.setup(c)
			}
			c.pay(alice, bob, 10)
			c.pay(bob, carol, 20)
			c.pay(alice, carol, 30)
			blk := tc.block(c)
			height, hash := c.s.Head()
			digest := dbDigest(t, c.s.DB(), string(keyApplied), prefixStatus)
			res := c.apply(&Command{Kind: CmdBlock, Block: blk})
			if res.Accepted || res.Kind != CmdBlock || res.Code != tc.code || res.Reason == "" {
				t.Fatalf("result %+v, want a rejection with code %q", res, tc.code)
			}
			if h2, hash2 := c.s.Head(); h2 != height || hash2 != hash {
				t.Fatal("head moved")
			}
			if c.s.PoolSize() != 3 {
				t.Fatalf("pool size %d", c.s.PoolSize())
			}
			if got := dbDigest(t, c.s.DB(), string(keyApplied), prefixStatus); got != digest {
				t.Fatal("a rejected block changed the state")
			}
			if c.s.AppliedIndex() != c.index {
				t.Fatal("applied index did not advance")
			}
		})
	}
}

func TestBlockMaxTxs(t *testing.T) {
	g := testGenesis(1)
	g.Params.MaxBlockTxs = 2
	c := openChain(t, g)
	c.pay(alice, bob, 1)
	c.pay(alice, bob, 2)
	c.pay(alice, bob, 3)
	// BuildBlock caps at max_block_txs whatever it is asked.
	for _, ask := range []int{0, 5} {
		if b := c.build(ask); b.Header.TxCount != 2 {
			t.Fatalf("BuildBlock(%d) took %d txs", ask, b.Header.TxCount)
		}
	}
	if b := c.build(1); b.Header.TxCount != 1 {
		t.Fatalf("BuildBlock(1) took %d txs", b.Header.TxCount)
	}
	// A block over the limit, built by hand, is rejected.
	b := c.build(0)
	pool, _ := c.s.Pool(0)
	body, _ := SealBody(testLedgerKey(), testChain, 1, b.Header.PrevHash, pool)
	b.Body, b.Header.BodyHash, b.Header.TxCount = body, sha256.Sum256(body), 3
	resign(b, nodeSigner(1))
	if res := c.apply(&Command{Kind: CmdBlock, Block: b}); res.Accepted || res.Code != CodeBadBlock {
		t.Fatalf("result %+v", res)
	}
	c.commit()
	c.commit()
	if c.s.PoolSize() != 0 || c.account(alice).Balance != 994 {
		t.Fatalf("pool %d, alice %+v", c.s.PoolSize(), c.account(alice))
	}
}

func TestRegisterNode(t *testing.T) {
	g := testGenesis(3)
	c := openChain(t, g) // node 1 registered with nodeSigner(1)
	m1 := [32]byte{1}
	cases := []struct {
		name string
		node *NodeRecord
		code Code // CodeOK = accepted
	}{
		{"new id", &NodeRecord{ID: 2, Key: addrOf(nodeSigner(2)), Measurement: m1}, CodeOK},
		{"same id and key, new measurement", &NodeRecord{ID: 2, Key: addrOf(nodeSigner(2)), Measurement: [32]byte{2}}, CodeOK},
		{"same id, other key", &NodeRecord{ID: 2, Key: addrOf(nodeSigner(9))}, CodeKeyConflict},
		{"key of another node", &NodeRecord{ID: 3, Key: addrOf(nodeSigner(1))}, CodeKeyConflict},
		{"id not in the genesis", &NodeRecord{ID: 4, Key: addrOf(nodeSigner(4))}, CodeNotMember},
		{"id zero", &NodeRecord{ID: 0, Key: addrOf(nodeSigner(5))}, CodeNotMember},
		{"zero key", &NodeRecord{ID: 3}, CodeMalformed},
		{"missing node", nil, CodeMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before NodeRecord
			var had bool
			if tc.node != nil {
				before, had, _ = c.s.Node(tc.node.ID)
			}
			res := c.apply(&Command{Kind: CmdRegisterNode, Node: tc.node})
			if tc.code == CodeOK {
				if !res.Accepted || res.Code != CodeOK {
					t.Fatalf("rejected: %s", res.Reason)
				}
				got, ok, err := c.s.Node(tc.node.ID)
				if err != nil || !ok || got != *tc.node {
					t.Fatalf("stored %+v %v %v, want %+v", got, ok, err, *tc.node)
				}
				return
			}
			if res.Accepted || res.Code != tc.code || res.Reason == "" {
				t.Fatalf("result %+v, want code %q", res, tc.code)
			}
			if tc.node != nil {
				after, has, _ := c.s.Node(tc.node.ID)
				if has != had || after != before {
					t.Fatalf("node changed: %+v -> %+v", before, after)
				}
			}
		})
	}
	nodes, err := c.s.Nodes()
	if err != nil || len(nodes) != 2 || nodes[0].ID != 1 || nodes[1].ID != 2 || nodes[1].Measurement != [32]byte{2} {
		t.Fatalf("Nodes() = %+v, %v", nodes, err)
	}
}

func TestHalt(t *testing.T) {
	c := openChain(t, testGenesis(1))
	if res := c.mustAccept(&Command{Kind: CmdHalt, HaltHeight: 2}); res.Height != 2 {
		t.Fatalf("result %+v", res)
	}
	if c.s.HaltHeight() != 2 {
		t.Fatal("halt height not set")
	}
	c.commit()
	c.commit()
	if _, err := c.s.BuildBlock(1, nodeSigner(1), c.nextTime(), 0); !errors.Is(err, ErrHalted) {
		t.Fatalf("BuildBlock past the halt: %v", err)
	}
	// Submissions are still admitted while halted.
	c.pay(alice, bob, 1)
	c.mustAccept(&Command{Kind: CmdHalt, HaltHeight: 0})
	if c.s.HaltHeight() != 0 {
		t.Fatal("halt not cleared")
	}
	if res := c.commit(); res.Height != 3 || len(res.TxIDs) != 1 {
		t.Fatalf("block after clearing the halt: %+v", res)
	}
}

func TestDuplicateIndexIsNoOp(t *testing.T) {
	c := openChain(t, testGenesis(1))
	tx := c.pay(alice, bob, 10)
	blk := c.build(0)
	c.mustAccept(&Command{Kind: CmdBlock, Block: blk})
	applied := c.s.AppliedIndex()
	digest := dbDigest(t, c.s.DB())
	cmds := []*Command{
		{Kind: CmdSubmitTx, Tx: NewPayment(testChain, alice, addrOf(carol), 5, 2)},
		{Kind: CmdSubmitTx, Tx: tx},
		{Kind: CmdBlock, Block: blk},
		{Kind: CmdHalt, HaltHeight: 1},
		nil,
	}
	for _, idx := range []uint64{applied, applied - 1, 1} {
		for _, cmd := range cmds {
			res, err := c.s.Apply(idx, cmd)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Duplicate || res.Accepted {
				t.Fatalf("Apply(%d) = %+v, want a duplicate", idx, res)
			}
			if cmd != nil && res.Kind != cmd.Kind {
				t.Fatalf("duplicate kind %v, want %v", res.Kind, cmd.Kind)
			}
		}
	}
	if res, _ := c.s.Apply(applied, &Command{Kind: CmdSubmitTx, Tx: tx}); res.TxID != tx.ID() {
		t.Fatal("duplicate result lacks the tx id")
	}
	if res, _ := c.s.Apply(applied, &Command{Kind: CmdBlock, Block: blk}); res.Height != 1 {
		t.Fatal("duplicate result lacks the height")
	}
	if got := dbDigest(t, c.s.DB()); got != digest || c.s.AppliedIndex() != applied {
		t.Fatal("a duplicate changed the database")
	}
}

func TestNilAndUnknownCommands(t *testing.T) {
	c := openChain(t, testGenesis(1))
	digest := dbDigest(t, c.s.DB(), string(keyApplied))
	res := c.apply(nil)
	if !res.Accepted || c.s.AppliedIndex() != c.index {
		t.Fatalf("nil command: %+v, applied %d", res, c.s.AppliedIndex())
	}
	res = c.apply(&Command{Kind: 77})
	if res.Accepted || res.Code != CodeMalformed {
		t.Fatalf("unknown kind: %+v", res)
	}
	if c.s.AppliedIndex() != c.index {
		t.Fatal("applied index did not advance")
	}
	if got := dbDigest(t, c.s.DB(), string(keyApplied)); got != digest {
		t.Fatal("state changed")
	}
	// Gaps are allowed (the consensus layer may skip entries it handles).
	if _, err := c.s.Apply(c.index+10, nil); err != nil || c.s.AppliedIndex() != c.index+10 {
		t.Fatalf("gap: %v", err)
	}
}

func TestKeylessStore(t *testing.T) {
	dir := t.TempDir()
	c := openChainAt(t, dir, testOptions(testGenesis(1)))
	c.mustAccept(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1))}})
	c.pay(alice, bob, 1)
	c.commit()
	if err := c.s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{Genesis: testGenesis(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Apply(99, nil); !errors.Is(err, ErrNoLedgerKey) {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := s.BuildBlock(1, nodeSigner(1), time.Now(), 0); !errors.Is(err, ErrNoLedgerKey) {
		t.Fatalf("BuildBlock: %v", err)
	}
	if _, err := s.BlockTxs(1); !errors.Is(err, ErrNoLedgerKey) {
		t.Fatalf("BlockTxs: %v", err)
	}
	// Public reads work.
	if h, _ := s.Head(); h != 1 {
		t.Fatalf("head %d", h)
	}
	if a, err := s.Account(addrOf(bob)); err != nil || a.Balance != 501 {
		t.Fatalf("bob %+v %v", a, err)
	}
}

func TestBuildBlockRejections(t *testing.T) {
	c := openChain(t, testGenesis(2))
	cases := []struct {
		name     string
		proposer uint64
		key      ed25519.PrivateKey
		want     string
	}{
		{"short key", 1, nodeSigner(1)[:31], "private key has 31 bytes"},
		{"unregistered proposer", 2, nodeSigner(2), "proposer 2 is not registered"},
		{"key of another node", 1, nodeSigner(2), "proposer 1 is registered with key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.s.BuildBlock(tc.proposer, tc.key, time.Now(), 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.proposer == 2 && !errors.Is(err, ErrProposerNotRegistered) {
				t.Fatalf("got %v, want ErrProposerNotRegistered", err)
			}
		})
	}
}

func TestBlockTimeNeverDecreases(t *testing.T) {
	c := openChain(t, testGenesis(1))
	// A leader whose clock is behind the genesis time still builds a valid
	// block, stamped with the previous block's time.
	b, err := c.s.BuildBlock(1, nodeSigner(1), genesisTime.Add(-time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Header.Time != genesisTime.UnixNano() {
		t.Fatalf("time %d", b.Header.Time)
	}
	c.mustAccept(&Command{Kind: CmdBlock, Block: b})
}

// feed applies the same sealed entries to a store, as raft would.
func feed(t *testing.T, s *Store, entries [][]byte) {
	t.Helper()
	for i, e := range entries {
		cmd, err := OpenEntry(testLedgerKey(), testChain, e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(uint64(i+1), cmd); err != nil {
			t.Fatal(err)
		}
	}
}

// scenario runs a workload on a leader store and returns the sealed entries
// it applied.
func scenario(t *testing.T, blocks int) (*chain, [][]byte) {
	t.Helper()
	leader := openChainAt(t, t.TempDir(), testOptions(testGenesis(3)))
	var entries [][]byte
	add := func(cmd *Command) {
		e, err := SealEntry(testLedgerKey(), testChain, cmd)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
		leader.apply(cmd)
	}
	add(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1))}})
	add(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 2, Key: addrOf(nodeSigner(2)), Measurement: [32]byte{7}}})
	keys := []ed25519.PrivateKey{alice, bob, carol, dave}
	for b := 0; b < blocks; b++ {
		for i, from := range keys {
			to := keys[(i+b+1)%len(keys)]
			a := leader.account(from)
			add(&Command{Kind: CmdSubmitTx, Tx: NewPayment(testChain, from, addrOf(to), uint64(1+b+i), a.Nonce+a.Pending+1)})
		}
		add(&Command{Kind: CmdSubmitTx, Tx: NewPayment(testChain, carol, addrOf(alice), 1<<40, 99)}) // rejected
		proposer := uint64(1 + b%2)
		blk, err := leader.s.BuildBlock(proposer, nodeSigner(proposer), leader.nextTime(), 3)
		if err != nil {
			t.Fatal(err)
		}
		add(&Command{Kind: CmdBlock, Block: blk})
		if b == blocks/2 {
			add(&Command{Kind: CmdHalt, HaltHeight: 1000})
		}
	}
	return leader, entries
}

func TestDeterminism(t *testing.T) {
	leader, entries := scenario(t, 12)
	var stores []*Store
	for i := 0; i < 2; i++ {
		s, err := Open(t.TempDir(), testOptions(testGenesis(3)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		feed(t, s, entries)
		stores = append(stores, s)
	}
	lh, lhash := leader.s.Head()
	if lh != 12 {
		t.Fatalf("leader head %d, want 12", lh)
	}
	want := dbDigest(t, leader.s.DB())
	for i, s := range stores {
		h, hash := s.Head()
		if h != lh || hash != lhash {
			t.Fatalf("store %d head %d %s, leader %d %s", i, h, hash, lh, lhash)
		}
		for _, k := range []ed25519.PrivateKey{alice, bob, carol, dave} {
			a, _ := s.Account(addrOf(k))
			if a != leader.account(k) {
				t.Fatalf("store %d: account %s differs", i, addrOf(k))
			}
		}
		if got := dbDigest(t, s.DB()); got != want {
			t.Fatalf("store %d: database differs from the leader's", i)
		}
	}
	// The total supply is conserved.
	var total uint64
	for _, k := range []ed25519.PrivateKey{alice, bob, carol, dave} {
		total += leader.account(k).Balance
	}
	if total != 1600 {
		t.Fatalf("total supply %d, want 1600", total)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	c := openChainAt(t, dir, testOptions(testGenesis(2)))
	c.mustAccept(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1)), Measurement: [32]byte{3}}})
	tx := c.pay(alice, bob, 10)
	c.commit()
	pending := c.pay(bob, carol, 7)
	rejected := NewPayment(testChain, dave, addrOf(bob), 1, 1)
	c.submit(rejected)
	c.mustAccept(&Command{Kind: CmdHalt, HaltHeight: 50})
	digest := dbDigest(t, c.s.DB())
	height, hash := c.s.Head()
	applied := c.s.AppliedIndex()
	if err := c.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.s.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}

	r := openChainAt(t, dir, testOptions(testGenesis(2)))
	r.index, r.clock = applied, c.clock
	if got := dbDigest(t, r.s.DB()); got != digest {
		t.Fatal("database changed across restart")
	}
	if h, hh := r.s.Head(); h != height || hh != hash || r.s.AppliedIndex() != applied || r.s.HaltHeight() != 50 || r.s.PoolSize() != 1 {
		t.Fatalf("reopened: head %d, applied %d, halt %d, pool %d", h, r.s.AppliedIndex(), r.s.HaltHeight(), r.s.PoolSize())
	}
	for id, want := range map[Hash]string{tx.ID(): StateCommitted, pending.ID(): StatePending, rejected.ID(): StateRejected} {
		if st, _, _ := r.s.TxStatus(id); st.State != want {
			t.Fatalf("status %+v, want %s", st, want)
		}
	}
	if n, ok, _ := r.s.Node(1); !ok || n.Measurement != [32]byte{3} {
		t.Fatalf("node %+v", n)
	}
	// It continues where it stopped.
	if res := r.commit(); res.Height != 2 || len(res.TxIDs) != 1 || res.TxIDs[0] != pending.ID() {
		t.Fatalf("block after restart: %+v", res)
	}
	if r.account(carol).Balance != 107 {
		t.Fatalf("carol %+v", r.account(carol))
	}
}
