package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/teeup/teeup/internal/wire"
)

func sampleTx() *Tx {
	return NewPayment(testChain, alice, addrOf(bob), 42, 7)
}

func sampleBlock(t *testing.T) *Block {
	t.Helper()
	txs := []*Tx{sampleTx(), NewPayment(testChain, bob, addrOf(bob), 1, 1)}
	prev := Hash{1, 2, 3}
	body, err := SealBody(testLedgerKey(), testChain, 5, prev, txs)
	if err != nil {
		t.Fatal(err)
	}
	b := &Block{
		Header: BlockHeader{
			ChainID: testChain, Height: 5, PrevHash: prev, Time: genesisTime.UnixNano() + 99,
			BodyHash: sha256.Sum256(body), TxCount: 2, Proposer: 1, ProposerKey: addrOf(nodeSigner(1)),
		},
		Body: body,
	}
	resign(b, nodeSigner(1))
	return b
}

func TestTxRoundTrip(t *testing.T) {
	tx := sampleTx()
	if err := tx.VerifySignature(); err != nil {
		t.Fatalf("fresh payment: %v", err)
	}
	enc := tx.Encode()
	got, err := DecodeTx(enc)
	if err != nil {
		t.Fatalf("DecodeTx: %v", err)
	}
	if !reflect.DeepEqual(got, tx) {
		t.Fatalf("round trip: got %+v, want %+v", got, tx)
	}
	if got.ID() != tx.ID() || got.ID() != sha256.Sum256(enc) {
		t.Fatal("tx id is not SHA-256 of the encoding")
	}
	p, err := DecodePayment(got.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if p.To != addrOf(bob) || p.Amount != 42 {
		t.Fatalf("payment %+v", p)
	}
	if got.From != addrOf(alice) || got.Nonce != 7 || got.Kind != TxPayment || got.ChainID != testChain {
		t.Fatalf("fields %+v", got)
	}
}

func TestTxSignatureCoversEveryField(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Tx)
	}{
		{"chain id", func(t *Tx) { t.ChainID = "other" }},
		{"kind", func(t *Tx) { t.Kind = 2 }},
		{"from", func(t *Tx) { t.From = addrOf(bob) }},
		{"nonce", func(t *Tx) { t.Nonce++ }},
		{"payload", func(t *Tx) { t.Payload = EncodePayment(Payment{To: addrOf(bob), Amount: 43}) }},
		{"signature", func(t *Tx) { t.Sig[10] ^= 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx := sampleTx()
			c.mutate(tx)
			if err := tx.VerifySignature(); err == nil {
				t.Fatal("signature still verifies")
			}
		})
	}
}

func TestTxSign(t *testing.T) {
	tx := &Tx{ChainID: testChain, Kind: TxPayment, Nonce: 1, Payload: EncodePayment(Payment{To: addrOf(bob), Amount: 1})}
	if err := tx.Sign(alice); err != nil {
		t.Fatal(err)
	}
	if err := tx.VerifySignature(); err != nil || tx.From != addrOf(alice) {
		t.Fatalf("signed tx: from %s, %v", tx.From, err)
	}
	if err := tx.Sign(alice[:10]); err == nil || !strings.Contains(err.Error(), "private key has 10 bytes") {
		t.Fatalf("short key: %v", err)
	}
}

func TestBlockRoundTrip(t *testing.T) {
	b := sampleBlock(t)
	if err := b.VerifySignature(); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBlock(b.Encode())
	if err != nil {
		t.Fatalf("DecodeBlock: %v", err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip: got %+v, want %+v", got.Header, b.Header)
	}
	if got.Hash() != sha256.Sum256(b.Header.Encode()) {
		t.Fatal("block hash is not SHA-256 of the header")
	}
	// The hash and the signature cover every header field.
	mutations := []func(*BlockHeader){
		func(h *BlockHeader) { h.ChainID = "x" },
		func(h *BlockHeader) { h.Height++ },
		func(h *BlockHeader) { h.PrevHash[0] ^= 1 },
		func(h *BlockHeader) { h.Time++ },
		func(h *BlockHeader) { h.BodyHash[0] ^= 1 },
		func(h *BlockHeader) { h.TxCount++ },
		func(h *BlockHeader) { h.Proposer++ },
		func(h *BlockHeader) { h.ProposerKey[0] ^= 1 },
	}
	for i, m := range mutations {
		c := *b
		m(&c.Header)
		if c.Hash() == b.Hash() {
			t.Errorf("mutation %d: hash unchanged", i)
		}
		if c.VerifySignature() == nil {
			t.Errorf("mutation %d: signature still verifies", i)
		}
	}
}

func TestCommandRoundTrip(t *testing.T) {
	cmds := []*Command{
		{Kind: CmdSubmitTx, Tx: sampleTx()},
		{Kind: CmdBlock, Block: sampleBlock(t)},
		{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 3, Key: addrOf(nodeSigner(3)), Measurement: [32]byte{9}}},
		{Kind: CmdHalt, HaltHeight: 77},
		{Kind: CmdHalt},
		{Kind: CmdCompact, CompactIndex: 12345},
	}
	for _, c := range cmds {
		t.Run(c.Kind.String(), func(t *testing.T) {
			enc, err := EncodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeCommand(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip: got %+v, want %+v", got, c)
			}
		})
	}
}

func TestEncodeCommandRejections(t *testing.T) {
	big := sampleTx()
	big.Payload = make([]byte, MaxPayloadSize+1)
	longChain := sampleTx()
	longChain.ChainID = strings.Repeat("a", MaxChainIDLen+1)
	bigBlock := &Block{Body: make([]byte, MaxBodySize+1)}
	cases := []struct {
		name string
		cmd  *Command
		want string
	}{
		{"nil", nil, "nil command"},
		{"unknown kind", &Command{Kind: 9}, "unknown command kind"},
		{"compact index 0", &Command{Kind: CmdCompact}, "compact index 0"},
		{"halt with compact index", &Command{Kind: CmdHalt, CompactIndex: 3}, "compact index"},
		{"kind zero", &Command{}, "unknown command kind"},
		{"submit without tx", &Command{Kind: CmdSubmitTx}, "missing tx"},
		{"block without block", &Command{Kind: CmdBlock}, "missing block"},
		{"register without node", &Command{Kind: CmdRegisterNode}, "missing node"},
		{"submit with block", &Command{Kind: CmdSubmitTx, Tx: sampleTx(), Block: &Block{}}, "carries a block"},
		{"block with tx", &Command{Kind: CmdBlock, Block: &Block{}, Tx: sampleTx()}, "carries a tx"},
		{"halt with node", &Command{Kind: CmdHalt, Node: &NodeRecord{}}, "carries a node"},
		{"submit with halt height", &Command{Kind: CmdSubmitTx, Tx: sampleTx(), HaltHeight: 3}, "carries a halt height"},
		{"oversize payload", &Command{Kind: CmdSubmitTx, Tx: big}, "payload has"},
		{"oversize chain id", &Command{Kind: CmdSubmitTx, Tx: longChain}, "chain id has"},
		{"oversize body", &Command{Kind: CmdBlock, Block: bigBlock}, "body has"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := EncodeCommand(c.cmd)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// encodeWith builds bytes with the wire encoder for malformed inputs.
func encodeWith(f func(e *wire.Encoder)) []byte {
	e := wire.NewEncoder(64)
	f(e)
	return e.Bytes()
}

func TestDecodeRejections(t *testing.T) {
	tx := sampleTx().Encode()
	blk := sampleBlock(t).Encode()
	submit, err := EncodeCommand(&Command{Kind: CmdSubmitTx, Tx: sampleTx()})
	if err != nil {
		t.Fatal(err)
	}
	register, err := EncodeCommand(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	decoders := map[string]func([]byte) error{
		"tx":      func(b []byte) error { _, err := DecodeTx(b); return err },
		"block":   func(b []byte) error { _, err := DecodeBlock(b); return err },
		"command": func(b []byte) error { _, err := DecodeCommand(b); return err },
		"payment": func(b []byte) error { _, err := DecodePayment(b); return err },
	}
	cases := []struct {
		name    string
		decoder string
		input   []byte
		want    string
	}{
		{"tx empty", "tx", nil, "truncated"},
		{"tx truncated signature", "tx", tx[:len(tx)-1], "truncated"},
		{"tx trailing byte", "tx", append(append([]byte{}, tx...), 0), "trailing"},
		{"tx oversize chain id", "tx", encodeWith(func(e *wire.Encoder) { e.String(strings.Repeat("a", MaxChainIDLen+1)) }), "exceeds the maximum"},
		{"tx chain id length beyond input", "tx", encodeWith(func(e *wire.Encoder) { e.U32(60) }), "truncated"},
		{"tx oversize payload", "tx", encodeWith(func(e *wire.Encoder) {
			e.String(testChain)
			e.U8(1)
			e.Fixed(make([]byte, 32))
			e.U64(1)
			e.U32(MaxPayloadSize + 1)
		}), "length 4097 exceeds the maximum 4096"},
		{"block empty", "block", nil, "truncated"},
		{"block truncated body", "block", blk[:len(blk)-3], "truncated"},
		{"block trailing byte", "block", append(append([]byte{}, blk...), 1), "trailing"},
		{"block oversize body", "block", encodeWith(func(e *wire.Encoder) {
			(&BlockHeader{ChainID: testChain}).encode(e)
			e.Fixed(make([]byte, 64))
			e.U32(MaxBodySize + 1)
		}), "length 8388609 exceeds the maximum 8388608"},
		{"block oversize chain id", "block", encodeWith(func(e *wire.Encoder) { e.String(strings.Repeat("b", 65)) }), "exceeds the maximum"},
		{"command empty", "command", nil, "truncated"},
		{"command kind 0", "command", []byte{0}, "unknown command kind 0"},
		{"command kind 6", "command", append([]byte{6}, submit[1:]...), "unknown command kind 6"},
		{"compact index 0", "command", []byte{5, 0, 0, 0, 0, 0, 0, 0, 0}, "compact index 0"},
		{"compact truncated", "command", []byte{5, 0, 0}, "truncated"},
		{"command kind 255", "command", []byte{255, 0, 0}, "unknown command kind 255"},
		{"command truncated tx", "command", submit[:len(submit)-1], "truncated"},
		{"command trailing byte", "command", append(append([]byte{}, submit...), 0), "trailing"},
		{"command tx with trailing byte inside", "command", encodeWith(func(e *wire.Encoder) {
			e.U8(uint8(CmdSubmitTx))
			e.Var(append(append([]byte{}, tx...), 0))
		}), "decode tx: end"},
		{"command oversize tx", "command", encodeWith(func(e *wire.Encoder) {
			e.U8(uint8(CmdSubmitTx))
			e.U32(maxTxLen + 1)
		}), "exceeds the maximum"},
		{"command malformed block", "command", encodeWith(func(e *wire.Encoder) {
			e.U8(uint8(CmdBlock))
			e.Var([]byte{1, 2, 3})
		}), "decode block"},
		{"command truncated register", "command", register[:len(register)-1], "truncated"},
		{"command truncated halt", "command", []byte{uint8(CmdHalt), 0, 0}, "truncated"},
		{"payment short", "payment", make([]byte, 39), "truncated"},
		{"payment long", "payment", make([]byte, 41), "trailing"},
		{"payment zero amount", "payment", EncodePayment(Payment{To: addrOf(bob)}), "amount is zero"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decoders[c.decoder](c.input)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	// Every proper prefix of a valid encoding is refused.
	for name, valid := range map[string][]byte{"tx": tx, "block": blk, "command": submit} {
		for n := 0; n < len(valid); n++ {
			if err := decoders[name](valid[:n]); err == nil {
				t.Fatalf("%s prefix of %d bytes decoded", name, n)
			}
		}
	}
}

func TestDecodePaymentZeroAmountIsErrZeroAmount(t *testing.T) {
	_, err := DecodePayment(EncodePayment(Payment{To: addrOf(bob), Amount: 0}))
	if !errors.Is(err, ErrZeroAmount) {
		t.Fatalf("got %v, want ErrZeroAmount", err)
	}
	p, err := DecodePayment(EncodePayment(Payment{To: addrOf(bob), Amount: 1}))
	if err != nil || p.Amount != 1 {
		t.Fatalf("got %+v, %v", p, err)
	}
}

func TestParseAddressAndHash(t *testing.T) {
	a := addrOf(alice)
	if got, err := ParseAddress(a.String()); err != nil || got != a {
		t.Fatalf("ParseAddress round trip: %v %v", got, err)
	}
	h := sampleTx().ID()
	if got, err := ParseHash(h.String()); err != nil || got != h {
		t.Fatalf("ParseHash round trip: %v %v", got, err)
	}
	bad := []struct{ in, want string }{
		{"", "has 0 hex digits"},
		{"abcd", "has 4 hex digits"},
		{a.String() + "00", "has 66 hex digits"},
		{strings.Repeat("zz", 32), "not hex"},
	}
	for _, c := range bad {
		if _, err := ParseAddress(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseAddress(%q): %v, want %q", c.in, err, c.want)
		}
		if _, err := ParseHash(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseHash(%q): %v, want %q", c.in, err, c.want)
		}
	}
	if _, err := AddressOf(alice.Public().(ed25519.PublicKey)[:5]); err == nil {
		t.Error("AddressOf accepted a 5-byte key")
	}
	var fromText Address
	if err := fromText.UnmarshalText([]byte(a.String())); err != nil || fromText != a {
		t.Fatalf("UnmarshalText: %v", err)
	}
	if !bytes.Equal(a.PublicKey(), alice.Public().(ed25519.PublicKey)) {
		t.Fatal("PublicKey differs")
	}
}
