package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"testing"
)

// Each decoder of untrusted bytes must never panic, and whatever it accepts
// must re-encode to exactly the input (the encodings are canonical).

func FuzzDecodeTx(f *testing.F) {
	valid := sampleTx().Encode()
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(append(append([]byte{}, valid...), 0))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := DecodeTx(b)
		if err != nil {
			return
		}
		if !bytes.Equal(tx.Encode(), b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, tx.Encode())
		}
		_ = tx.VerifySignature()
		_, _ = DecodePayment(tx.Payload)
	})
}

func FuzzDecodeBlock(f *testing.F) {
	blk := sampleBlockForFuzz()
	valid := blk.Encode()
	f.Add(valid)
	f.Add(valid[:50])
	f.Add(append(append([]byte{}, valid...), 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		blk, err := DecodeBlock(b)
		if err != nil {
			return
		}
		if !bytes.Equal(blk.Encode(), b) {
			t.Fatal("re-encoding differs")
		}
		_ = blk.VerifySignature()
		_ = blk.Hash()
	})
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range fuzzCommands(f) {
		enc, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add([]byte{0})
	f.Add([]byte{9, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("decoded command does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatal("re-encoding differs")
		}
	})
}

// FuzzOpenEntry feeds arbitrary bytes to OpenEntry, both as they are
// (authentication must reject them) and sealed as a valid ciphertext (so
// that the command decoder behind the authentication is exercised too).
func FuzzOpenEntry(f *testing.F) {
	key := testLedgerKey()
	known := map[string]bool{}
	for _, c := range fuzzCommands(f) {
		sealed, err := SealEntry(key, testChain, c)
		if err != nil {
			f.Fatal(err)
		}
		plain, _ := EncodeCommand(c)
		known[string(plain)] = true
		f.Add(sealed, false)
		f.Add(plain, true)
		f.Add(plain[:len(plain)-1], true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{}, true)
	s, err := newSuite(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		data := b
		if seal {
			data = s.entry.Seal(nil, nil, b, entryAD(testChain))
		}
		c, err := OpenEntry(key, testChain, data)
		if err != nil {
			return
		}
		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("opened command does not encode: %v", err)
		}
		switch {
		case !seal && !known[string(enc)]:
			t.Fatal("an entry that was never sealed authenticated")
		case seal && !bytes.Equal(enc, b):
			t.Fatal("opened an entry that does not round trip")
		}
	})
}

// FuzzOpenBody does for block bodies what FuzzOpenEntry does for entries.
func FuzzOpenBody(f *testing.F) {
	key := testLedgerKey()
	txs := []*Tx{sampleTx(), NewPayment(testChain, bob, addrOf(carol), 3, 1)}
	sealed, err := SealBody(key, testChain, 4, Hash{1}, txs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, false)
	f.Add(sealed[:40], false)
	s, err := newSuite(key)
	if err != nil {
		f.Fatal(err)
	}
	plain := bodyPlaintext(txs)
	f.Add(plain, true)
	f.Add(plain[:len(plain)-3], true)
	f.Add([]byte{0, 0, 0, 0}, true)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, b []byte, seal bool) {
		data := b
		if seal {
			data = s.body.Seal(nil, nil, b, bodyAD(testChain, 4, Hash{1}))
		}
		got, err := OpenBody(key, testChain, 4, Hash{1}, data)
		if err != nil {
			return
		}
		switch {
		case !seal && !bytes.Equal(bodyPlaintext(got), plain):
			t.Fatal("a body that was never sealed authenticated")
		case seal && !bytes.Equal(bodyPlaintext(got), b):
			t.Fatal("opened a body that does not round trip")
		}
	})
}

func FuzzLoadGenesis(f *testing.F) {
	valid, err := json.Marshal(testGenesis(3))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{"chain_id":"x"}`))
	f.Add([]byte(`{"params":{"block_interval":"1ms"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseGenesis(b)
		if err != nil {
			return
		}
		if err := g.Validate(); err != nil {
			t.Fatalf("parsed genesis does not validate: %v", err)
		}
		h, err := g.Hash()
		if err != nil {
			t.Fatal(err)
		}
		// The canonical form parses back to the same hash.
		again, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		g2, err := ParseGenesis(again)
		if err != nil {
			t.Fatalf("re-encoded genesis does not parse: %v", err)
		}
		if h2, _ := g2.Hash(); h2 != h {
			t.Fatal("hash changed across a JSON round trip")
		}
		if _, err := GenesisBlock(g); err != nil {
			t.Fatal(err)
		}
	})
}

// sampleBlockForFuzz returns a block with a fixed body, so that the seed
// corpus is the same in every fuzzing process (sealing uses random nonces).
func sampleBlockForFuzz() *Block {
	body := bytes.Repeat([]byte{0xb0}, 64)
	b := &Block{Header: BlockHeader{ChainID: testChain, Height: 5, PrevHash: Hash{1}, BodyHash: sha256.Sum256(body), TxCount: 1, Proposer: 1, ProposerKey: addrOf(nodeSigner(1))}, Body: body}
	resign(b, nodeSigner(1))
	return b
}

func fuzzCommands(f *testing.F) []*Command {
	return []*Command{
		{Kind: CmdSubmitTx, Tx: sampleTx()},
		{Kind: CmdBlock, Block: sampleBlockForFuzz()},
		{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 2, Key: addrOf(nodeSigner(2)), Measurement: [32]byte{1}}},
		{Kind: CmdHalt, HaltHeight: 10},
		{Kind: CmdCompact, CompactIndex: 99},
	}
}
