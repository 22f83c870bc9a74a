package ledger

import (
	"errors"
	"fmt"

	"github.com/teeup/teeup/internal/wire"
)

// Encoded sizes, used to bound decoders.
const (
	// txFixedLen is the encoded size of a transaction with an empty chain id
	// and payload: chain id length, kind, from, nonce, payload length, sig.
	txFixedLen = 4 + 1 + 32 + 8 + 4 + 64
	// maxTxLen is the largest encoded transaction (of any kind).
	maxTxLen = txFixedLen + MaxChainIDLen + MaxGovernancePayloadSize
	// headerFixedLen is the encoded size of a header with an empty chain id.
	headerFixedLen = 4 + 8 + 32 + 8 + 32 + 4 + 8 + 32
	// maxBlockLen is the largest encoded block.
	maxBlockLen = headerFixedLen + MaxChainIDLen + 64 + 4 + MaxBodySize
	// paymentLen is the encoded size of a payment.
	paymentLen = 32 + 8
)

// SigningBytes returns what the sender signs: a domain and every field but
// Sig.
func (t *Tx) SigningBytes() []byte {
	e := wire.NewEncoder(len(txSigningDomain) + txFixedLen + len(t.ChainID) + len(t.Payload))
	e.String(txSigningDomain)
	t.encodeUnsigned(e)
	return e.Bytes()
}

func (t *Tx) encodeUnsigned(e *wire.Encoder) {
	e.String(t.ChainID)
	e.U8(uint8(t.Kind))
	e.Fixed(t.From[:])
	e.U64(t.Nonce)
	e.Var(t.Payload)
}

// Encode returns the canonical encoding of the transaction.
func (t *Tx) Encode() []byte {
	e := wire.NewEncoder(txFixedLen + len(t.ChainID) + len(t.Payload))
	t.encodeUnsigned(e)
	e.Fixed(t.Sig[:])
	return e.Bytes()
}

// checkLimits reports an error if the transaction's encoding would be
// refused by DecodeTx.
func (t *Tx) checkLimits() error {
	if len(t.ChainID) > MaxChainIDLen {
		return fmt.Errorf("tx chain id has %d bytes, more than %d", len(t.ChainID), MaxChainIDLen)
	}
	if limit := t.Kind.MaxPayload(); len(t.Payload) > limit {
		return fmt.Errorf("tx payload has %d bytes, more than %d", len(t.Payload), limit)
	}
	return nil
}

// DecodeTx decodes a transaction from untrusted bytes. It checks structure
// and bounds only (chain id ≤ MaxChainIDLen, payload ≤ the kind's
// MaxPayload, no trailing bytes); the kind, signature and payload are
// checked when the transaction is applied.
func DecodeTx(b []byte) (*Tx, error) {
	d := wire.NewDecoder("tx", b)
	t := decodeTx(d)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return t, nil
}

func decodeTx(d *wire.Decoder) *Tx {
	t := &Tx{}
	t.ChainID = d.String("chain id", MaxChainIDLen)
	t.Kind = TxKind(d.U8("kind"))
	d.Fixed("from", t.From[:])
	t.Nonce = d.U64("nonce")
	t.Payload = d.Var("payload", t.Kind.MaxPayload())
	d.Fixed("signature", t.Sig[:])
	return t
}

// EncodePayment returns the canonical encoding of a payment payload.
func EncodePayment(p Payment) []byte {
	e := wire.NewEncoder(paymentLen)
	e.Fixed(p.To[:])
	e.U64(p.Amount)
	return e.Bytes()
}

// DecodePayment decodes a payment payload and refuses a zero amount (the
// error then wraps ErrZeroAmount).
func DecodePayment(b []byte) (Payment, error) {
	var p Payment
	d := wire.NewDecoder("payment", b)
	d.Fixed("to", p.To[:])
	p.Amount = d.U64("amount")
	if err := d.Finish(); err != nil {
		return Payment{}, err
	}
	if p.Amount == 0 {
		return Payment{}, fmt.Errorf("decode payment: %w", ErrZeroAmount)
	}
	return p, nil
}

// Encode returns the canonical encoding of the header.
func (h *BlockHeader) Encode() []byte {
	e := wire.NewEncoder(headerFixedLen + len(h.ChainID))
	h.encode(e)
	return e.Bytes()
}

func (h *BlockHeader) encode(e *wire.Encoder) {
	e.String(h.ChainID)
	e.U64(h.Height)
	e.Fixed(h.PrevHash[:])
	e.U64(uint64(h.Time))
	e.Fixed(h.BodyHash[:])
	e.U32(h.TxCount)
	e.U64(h.Proposer)
	e.Fixed(h.ProposerKey[:])
}

func decodeHeader(d *wire.Decoder) BlockHeader {
	var h BlockHeader
	h.ChainID = d.String("chain id", MaxChainIDLen)
	h.Height = d.U64("height")
	d.Fixed("prev hash", h.PrevHash[:])
	h.Time = int64(d.U64("time"))
	d.Fixed("body hash", h.BodyHash[:])
	h.TxCount = d.U32("tx count")
	h.Proposer = d.U64("proposer")
	d.Fixed("proposer key", h.ProposerKey[:])
	return h
}

// Encode returns the canonical encoding of the block.
func (b *Block) Encode() []byte {
	e := wire.NewEncoder(headerFixedLen + len(b.Header.ChainID) + 64 + 4 + len(b.Body))
	b.Header.encode(e)
	e.Fixed(b.Sig[:])
	e.Var(b.Body)
	return e.Bytes()
}

func (b *Block) checkLimits() error {
	if len(b.Header.ChainID) > MaxChainIDLen {
		return fmt.Errorf("block chain id has %d bytes, more than %d", len(b.Header.ChainID), MaxChainIDLen)
	}
	if len(b.Body) > MaxBodySize {
		return fmt.Errorf("block body has %d bytes, more than %d", len(b.Body), MaxBodySize)
	}
	return nil
}

// DecodeBlock decodes a block from untrusted bytes (body ≤ MaxBodySize, no
// trailing bytes). It does not verify the signature or the body.
func DecodeBlock(b []byte) (*Block, error) {
	d := wire.NewDecoder("block", b)
	blk := &Block{Header: decodeHeader(d)}
	d.Fixed("signature", blk.Sig[:])
	blk.Body = d.Var("body", MaxBodySize)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return blk, nil
}

// EncodeCommand returns the canonical encoding of a command. It refuses a
// command whose kind is unknown, whose field for its kind is missing, which
// carries fields of another kind, or whose parts exceed the decoders'
// limits: whatever EncodeCommand accepts, DecodeCommand decodes.
func EncodeCommand(c *Command) ([]byte, error) {
	if c == nil {
		return nil, errors.New("encode command: nil command")
	}
	if err := c.checkShape(); err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Kind, err)
	}
	e := wire.NewEncoder(64)
	e.U8(uint8(c.Kind))
	switch c.Kind {
	case CmdSubmitTx:
		if err := c.Tx.checkLimits(); err != nil {
			return nil, fmt.Errorf("encode %s command: %w", c.Kind, err)
		}
		e.Var(c.Tx.Encode())
	case CmdBlock:
		if err := c.Block.checkLimits(); err != nil {
			return nil, fmt.Errorf("encode %s command: %w", c.Kind, err)
		}
		e.Var(c.Block.Encode())
	case CmdRegisterNode:
		e.U64(c.Node.ID)
		e.Fixed(c.Node.Key[:])
		e.Fixed(c.Node.Measurement[:])
	case CmdHalt:
		e.U64(c.HaltHeight)
	case CmdCompact:
		e.U64(c.CompactIndex)
	}
	return e.Bytes(), nil
}

// checkShape checks that the field of the command's kind is set and that
// no field of another kind is.
func (c *Command) checkShape() error {
	switch c.Kind {
	case CmdSubmitTx:
		if c.Tx == nil {
			return errors.New("missing tx")
		}
	case CmdBlock:
		if c.Block == nil {
			return errors.New("missing block")
		}
	case CmdRegisterNode:
		if c.Node == nil {
			return errors.New("missing node")
		}
	case CmdHalt:
	case CmdCompact:
		if c.CompactIndex == 0 {
			return errors.New("compact index 0")
		}
	default:
		return errors.New("unknown command kind")
	}
	switch {
	case c.Kind != CmdSubmitTx && c.Tx != nil:
		return errors.New("carries a tx, which belongs to another kind")
	case c.Kind != CmdBlock && c.Block != nil:
		return errors.New("carries a block, which belongs to another kind")
	case c.Kind != CmdRegisterNode && c.Node != nil:
		return errors.New("carries a node, which belongs to another kind")
	case c.Kind != CmdHalt && c.HaltHeight != 0:
		return errors.New("carries a halt height, which belongs to another kind")
	case c.Kind != CmdCompact && c.CompactIndex != 0:
		return errors.New("carries a compact index, which belongs to another kind")
	}
	return nil
}

// DecodeCommand decodes a command from untrusted bytes.
func DecodeCommand(b []byte) (*Command, error) {
	d := wire.NewDecoder("command", b)
	c := &Command{Kind: CmdKind(d.U8("kind"))}
	switch c.Kind {
	case CmdSubmitTx:
		raw := d.Var("tx", maxTxLen)
		if d.Err() == nil {
			t, err := DecodeTx(raw)
			if err != nil {
				return nil, fmt.Errorf("decode command: %w", err)
			}
			c.Tx = t
		}
	case CmdBlock:
		raw := d.Var("block", maxBlockLen)
		if d.Err() == nil {
			blk, err := DecodeBlock(raw)
			if err != nil {
				return nil, fmt.Errorf("decode command: %w", err)
			}
			c.Block = blk
		}
	case CmdRegisterNode:
		n := &NodeRecord{}
		n.ID = d.U64("node id")
		d.Fixed("node key", n.Key[:])
		d.Fixed("node measurement", n.Measurement[:])
		c.Node = n
	case CmdHalt:
		c.HaltHeight = d.U64("halt height")
	case CmdCompact:
		c.CompactIndex = d.U64("compact index")
		if d.Err() == nil && c.CompactIndex == 0 {
			return nil, errors.New("decode command: compact index 0")
		}
	default:
		if d.Err() == nil {
			return nil, fmt.Errorf("decode command: unknown %s", c.Kind)
		}
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return c, nil
}
