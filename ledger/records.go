package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/teeup/teeup/internal/wire"
)

// Key prefixes of the ledger's part of the Pebble key space (see the
// package documentation). RaftPrefix is the consensus package's part,
// declared here so that the whole key space is defined in one place;
// consensus builds raft's keys under it.
const (
	prefixMeta    = "m/"
	prefixBlock   = "b/"
	prefixAccount = "a/"
	prefixStatus  = "t/"
	prefixPool    = "p/"
	prefixNode    = "n/"
	prefixHistory = "x/"
	// prefixNodeKeyHistory records every key ever registered for a node,
	// so that blocks signed by a key since replaced still verify:
	// k/ + id(8) + key(32) → height at registration(8).
	prefixNodeKeyHistory = "k/"
	// GovernancePrefix is reserved for governance records (releases,
	// approvals, schedules).
	GovernancePrefix = "g/"
	// RaftPrefix is where the consensus package keeps raft's durable log in
	// the shared DB. The ledger never reads or writes it.
	RaftPrefix = "r/"
)

// Meta keys.
var (
	keySchema      = []byte(prefixMeta + "schema")
	keyChainID     = []byte(prefixMeta + "chain")
	keyGenesisHash = []byte(prefixMeta + "genesis")
	keyHead        = []byte(prefixMeta + "head")
	keyApplied     = []byte(prefixMeta + "applied")
	keyHalt        = []byte(prefixMeta + "halt")
	keyPool        = []byte(prefixMeta + "pool")
)

func heightKey(prefix string, h uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefix), h)
}

func blockKey(h uint64) []byte  { return heightKey(prefixBlock, h) }
func poolKey(seq uint64) []byte { return heightKey(prefixPool, seq) }
func nodeKey(id uint64) []byte  { return heightKey(prefixNode, id) }

func accountKey(a Address) []byte { return append([]byte(prefixAccount), a[:]...) }

func nodeKeyHistoryKey(id uint64, key Address) []byte {
	return append(heightKey(prefixNodeKeyHistory, id), key[:]...)
}

func decodeNodeKeyHistory(k, v []byte) (uint64, Address, error) {
	var key Address
	rest := k[len(prefixNodeKeyHistory):]
	if len(rest) != 8+len(key) || len(v) != 8 {
		return 0, key, fmt.Errorf("corrupt node key history record %x", k)
	}
	copy(key[:], rest[8:])
	return binary.BigEndian.Uint64(rest[:8]), key, nil
}
func statusKey(h Hash) []byte { return append([]byte(prefixStatus), h[:]...) }

// historyKey is x/ + address + height + index within the block.
func historyKey(a Address, height uint64, index uint32) []byte {
	k := append([]byte(prefixHistory), a[:]...)
	k = binary.BigEndian.AppendUint64(k, height)
	return binary.BigEndian.AppendUint32(k, index)
}

// prefixEnd returns the smallest key greater than every key with the
// prefix (the prefixes used here never end in 0xff).
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	end[len(end)-1]++
	return end
}

// u64 encodes a meta counter.
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeU64(what string, b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("corrupt %s: %d bytes, want 8", what, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// headRecord is the chain head: height, hash and time of the newest block.
type headRecord struct {
	Height uint64
	Hash   Hash
	Time   int64
}

func (h headRecord) encode() []byte {
	e := wire.NewEncoder(48)
	e.U64(h.Height)
	e.Fixed(h.Hash[:])
	e.U64(uint64(h.Time))
	return e.Bytes()
}

func decodeHead(b []byte) (headRecord, error) {
	var h headRecord
	d := wire.NewDecoder("head record", b)
	h.Height = d.U64("height")
	d.Fixed("hash", h.Hash[:])
	h.Time = int64(d.U64("time"))
	return h, d.Finish()
}

// poolRecord counts the pool: the next sequence number to assign and the
// number of entries.
type poolRecord struct {
	Next uint64
	Size uint64
}

func (p poolRecord) encode() []byte {
	e := wire.NewEncoder(16)
	e.U64(p.Next)
	e.U64(p.Size)
	return e.Bytes()
}

func decodePool(b []byte) (poolRecord, error) {
	var p poolRecord
	d := wire.NewDecoder("pool record", b)
	p.Next = d.U64("next")
	p.Size = d.U64("size")
	return p, d.Finish()
}

func encodeAccount(a Account) []byte {
	e := wire.NewEncoder(32)
	e.U64(a.Balance)
	e.U64(a.Nonce)
	e.U64(a.Pending)
	e.U64(a.PendingDebit)
	return e.Bytes()
}

func decodeAccount(b []byte) (Account, error) {
	var a Account
	d := wire.NewDecoder("account record", b)
	a.Balance = d.U64("balance")
	a.Nonce = d.U64("nonce")
	a.Pending = d.U64("pending")
	a.PendingDebit = d.U64("pending debit")
	return a, d.Finish()
}

// Status states as stored. A status written since codes exist sets
// statusCoded in its state byte and carries its code after the reason;
// one without it (written by an older binary) is decoded with a code
// derived from its state (see legacyCode).
const (
	statePending   = 1
	stateCommitted = 2
	stateRejected  = 3
	statusCoded    = 0x40
)

// noEffectPrefix starts the reason of a governance transaction committed
// without effect (see commitGovernance).
const noEffectPrefix = "no effect: "

func encodeStatus(s TxStatus) ([]byte, error) {
	e := wire.NewEncoder(16 + len(s.Reason) + len(s.Code))
	switch s.State {
	case StatePending:
		e.U8(statePending | statusCoded)
	case StateCommitted:
		e.U8(stateCommitted | statusCoded)
	case StateRejected:
		e.U8(stateRejected | statusCoded)
	default:
		return nil, fmt.Errorf("encode tx status: unknown state %q", s.State)
	}
	if s.Code == "" || len(s.Code) > maxCodeLen {
		return nil, fmt.Errorf("encode tx status: code %q is empty or longer than %d bytes", s.Code, maxCodeLen)
	}
	e.U64(s.Height)
	reason := s.Reason
	if len(reason) > MaxReasonLen {
		reason = reason[:MaxReasonLen]
	}
	e.String(reason)
	e.String(string(s.Code))
	return e.Bytes(), nil
}

func decodeStatus(b []byte) (TxStatus, error) {
	var s TxStatus
	d := wire.NewDecoder("tx status", b)
	state := d.U8("state")
	s.Height = d.U64("height")
	s.Reason = d.String("reason", MaxReasonLen)
	coded := state&statusCoded != 0
	if coded {
		s.Code = Code(d.String("code", maxCodeLen))
	}
	if err := d.Finish(); err != nil {
		return TxStatus{}, err
	}
	switch state &^ statusCoded {
	case statePending:
		s.State = StatePending
	case stateCommitted:
		s.State = StateCommitted
	case stateRejected:
		s.State = StateRejected
	default:
		return TxStatus{}, fmt.Errorf("decode tx status: unknown state %d", state)
	}
	switch {
	case !coded:
		s.Code = legacyCode(s)
	case s.Code == "":
		return TxStatus{}, errors.New("decode tx status: empty code")
	}
	return s, nil
}

// legacyCode is the code of a status stored before codes existed: CodeOK
// for pending, CodeNoEffect for a committed status with a reason (the
// ledger only ever gave one to a governance transaction committed without
// effect), CodeOK for other committed ones, and CodeRejected (no finer
// code is known) for rejections.
func legacyCode(s TxStatus) Code {
	switch {
	case s.State == StateCommitted && s.Reason != "":
		return CodeNoEffect
	case s.State == StateRejected:
		return CodeRejected
	default:
		return CodeOK
	}
}

func encodeNode(n NodeRecord) []byte {
	e := wire.NewEncoder(64)
	e.Fixed(n.Key[:])
	e.Fixed(n.Measurement[:])
	return e.Bytes()
}

func decodeNode(id uint64, b []byte) (NodeRecord, error) {
	n := NodeRecord{ID: id}
	d := wire.NewDecoder("node record", b)
	d.Fixed("key", n.Key[:])
	d.Fixed("measurement", n.Measurement[:])
	return n, d.Finish()
}

// encodeHistory is the value of a history key.
func encodeHistory(e HistoryEntry) []byte {
	enc := wire.NewEncoder(104)
	enc.Fixed(e.TxID[:])
	enc.Fixed(e.From[:])
	enc.Fixed(e.To[:])
	enc.U64(e.Amount)
	return enc.Bytes()
}

func decodeHistory(key, value []byte) (HistoryEntry, error) {
	var e HistoryEntry
	if len(key) != len(prefixHistory)+32+8+4 {
		return e, fmt.Errorf("corrupt history key %x", key)
	}
	k := key[len(prefixHistory)+32:]
	e.Height = binary.BigEndian.Uint64(k)
	e.Index = binary.BigEndian.Uint32(k[8:])
	d := wire.NewDecoder("history entry", value)
	d.Fixed("tx id", e.TxID[:])
	d.Fixed("from", e.From[:])
	d.Fixed("to", e.To[:])
	e.Amount = d.U64("amount")
	return e, d.Finish()
}
