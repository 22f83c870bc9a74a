package ledger

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/teeup/teeup/internal/wire"
)

// LedgerKey is the network's 32-byte ledger key. Sub-keys for block bodies
// and raft entries are derived from it with HKDF-SHA256; each is used with
// AES-256-GCM and a random 96-bit nonce, so one ledger key must not seal
// more than 2^32 bodies or 2^32 entries.
type LedgerKey [32]byte

// HKDF info strings of the sub-keys; also the domains of the additional
// data.
const (
	bodyKeyInfo  = "teeup block body v1"
	entryKeyInfo = "teeup raft entry v1"
)

// gcmOverhead is what sealing adds: the 12-byte nonce and the 16-byte tag.
const gcmOverhead = 12 + 16

// ErrNoLedgerKey is returned by operations that need the ledger key when
// the store was opened without one.
var ErrNoLedgerKey = errors.New("no ledger key")

// NewLedgerKey returns a fresh random ledger key.
func NewLedgerKey() (LedgerKey, error) {
	var k LedgerKey
	if _, err := rand.Read(k[:]); err != nil {
		return LedgerKey{}, fmt.Errorf("new ledger key: %w", err)
	}
	return k, nil
}

// IsZero reports whether the key is all zeros (that is, absent).
func (k LedgerKey) IsZero() bool { return k == LedgerKey{} }

// String hides the key so that it cannot leak into logs by accident.
func (k LedgerKey) String() string { return "LedgerKey(redacted)" }

// GoString hides the key from %#v as well.
func (k LedgerKey) GoString() string { return k.String() }

// suite holds the AEADs derived from one ledger key.
type suite struct {
	body  cipher.AEAD
	entry cipher.AEAD
}

func newSuite(key LedgerKey) (*suite, error) {
	if key.IsZero() {
		return nil, ErrNoLedgerKey
	}
	body, err := deriveAEAD(key, bodyKeyInfo)
	if err != nil {
		return nil, err
	}
	entry, err := deriveAEAD(key, entryKeyInfo)
	if err != nil {
		return nil, err
	}
	return &suite{body: body, entry: entry}, nil
}

func deriveAEAD(key LedgerKey, info string) (cipher.AEAD, error) {
	sub, err := hkdf.Key(sha256.New, key[:], nil, info, 32)
	if err != nil {
		return nil, fmt.Errorf("derive %q key: %w", info, err)
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, fmt.Errorf("derive %q key: %w", info, err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("derive %q key: %w", info, err)
	}
	return aead, nil
}

// bodyAD binds a body to its chain, height and parent.
func bodyAD(chainID string, height uint64, prev Hash) []byte {
	e := wire.NewEncoder(len(bodyKeyInfo) + len(chainID) + 48)
	e.String(bodyKeyInfo)
	e.String(chainID)
	e.U64(height)
	e.Fixed(prev[:])
	return e.Bytes()
}

// entryAD binds an entry to its chain.
func entryAD(chainID string) []byte {
	e := wire.NewEncoder(len(entryKeyInfo) + len(chainID) + 8)
	e.String(entryKeyInfo)
	e.String(chainID)
	return e.Bytes()
}

// SealBody encrypts the transactions of the block at height on prev: the
// plaintext is a count followed by the length-prefixed encoded transactions,
// and the additional data binds the chain id, the height and prev.
func SealBody(key LedgerKey, chainID string, height uint64, prev Hash, txs []*Tx) ([]byte, error) {
	s, err := newSuite(key)
	if err != nil {
		return nil, fmt.Errorf("seal block %d body: %w", height, err)
	}
	return s.sealBody(chainID, height, prev, txs)
}

func (s *suite) sealBody(chainID string, height uint64, prev Hash, txs []*Tx) ([]byte, error) {
	size := 4
	for i, t := range txs {
		if t == nil {
			return nil, fmt.Errorf("seal block %d body: tx %d is nil", height, i)
		}
		if err := t.checkLimits(); err != nil {
			return nil, fmt.Errorf("seal block %d body: tx %d: %w", height, i, err)
		}
		size += 4 + txFixedLen + len(t.ChainID) + len(t.Payload)
	}
	if size+gcmOverhead > MaxBodySize {
		return nil, fmt.Errorf("seal block %d body: %d transactions take %d bytes, more than %d", height, len(txs), size+gcmOverhead, MaxBodySize)
	}
	return s.body.Seal(nil, nil, bodyPlaintext(txs), bodyAD(chainID, height, prev)), nil
}

// bodyPlaintext encodes a body's transactions: a count, then each encoded
// transaction with a length prefix.
func bodyPlaintext(txs []*Tx) []byte {
	size := 4
	for _, t := range txs {
		size += 4 + txFixedLen + len(t.ChainID) + len(t.Payload)
	}
	e := wire.NewEncoder(size)
	e.U32(uint32(len(txs)))
	for _, t := range txs {
		e.Var(t.Encode())
	}
	return e.Bytes()
}

// OpenBody decrypts and decodes a block body sealed by SealBody for the
// same chain id, height and prev.
func OpenBody(key LedgerKey, chainID string, height uint64, prev Hash, body []byte) ([]*Tx, error) {
	s, err := newSuite(key)
	if err != nil {
		return nil, fmt.Errorf("open block %d body: %w", height, err)
	}
	return s.openBody(chainID, height, prev, body)
}

func (s *suite) openBody(chainID string, height uint64, prev Hash, body []byte) ([]*Tx, error) {
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("open block %d body: %d bytes, more than %d", height, len(body), MaxBodySize)
	}
	if len(body) < gcmOverhead {
		return nil, fmt.Errorf("open block %d body: %d bytes, too short to be sealed", height, len(body))
	}
	plain, err := s.body.Open(nil, nil, body, bodyAD(chainID, height, prev))
	if err != nil {
		return nil, fmt.Errorf("open block %d body: %w", height, err)
	}
	d := wire.NewDecoder("block body", plain)
	n := d.Count("tx count", d.Remaining()/(4+txFixedLen))
	txs := make([]*Tx, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		raw := d.Var("tx", maxTxLen)
		if d.Err() != nil {
			break
		}
		t, err := DecodeTx(raw)
		if err != nil {
			return nil, fmt.Errorf("open block %d body: tx %d: %w", height, i, err)
		}
		txs = append(txs, t)
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("open block %d body: %w", height, err)
	}
	return txs, nil
}

// SealEntry encodes and encrypts a command for the raft log of the chain.
func SealEntry(key LedgerKey, chainID string, c *Command) ([]byte, error) {
	s, err := newSuite(key)
	if err != nil {
		return nil, fmt.Errorf("seal entry: %w", err)
	}
	return s.sealEntry(chainID, c)
}

func (s *suite) sealEntry(chainID string, c *Command) ([]byte, error) {
	plain, err := EncodeCommand(c)
	if err != nil {
		return nil, fmt.Errorf("seal entry: %w", err)
	}
	return s.entry.Seal(nil, nil, plain, entryAD(chainID)), nil
}

// OpenEntry decrypts and decodes a raft entry sealed by SealEntry for the
// same chain.
func OpenEntry(key LedgerKey, chainID string, data []byte) (*Command, error) {
	s, err := newSuite(key)
	if err != nil {
		return nil, fmt.Errorf("open entry: %w", err)
	}
	return s.openEntry(chainID, data)
}

func (s *suite) openEntry(chainID string, data []byte) (*Command, error) {
	if len(data) < gcmOverhead {
		return nil, fmt.Errorf("open entry: %d bytes, too short to be sealed", len(data))
	}
	if len(data) > gcmOverhead+1+4+maxBlockLen {
		return nil, fmt.Errorf("open entry: %d bytes, larger than any command", len(data))
	}
	plain, err := s.entry.Open(nil, nil, data, entryAD(chainID))
	if err != nil {
		return nil, fmt.Errorf("open entry: %w", err)
	}
	c, err := DecodeCommand(plain)
	if err != nil {
		return nil, fmt.Errorf("open entry: %w", err)
	}
	return c, nil
}
