package ledger

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// At-rest encryption of the records that reveal users or amounts (schema
// ≥ schemaAtRest): account records, pool entries, transaction statuses and
// the account history.
//
// Values are sealed with a deterministic SIV construction after RFC 5297
// (AES-SIV), built from HMAC-SHA256 and AES-256-CTR, as the "encrypt then
// derive the IV from a PRF over header and plaintext" scheme that RFC 5297
// §2.6 proposes and Rogaway and Shrimpton proved secure as a deterministic
// AEAD ("Deterministic Authenticated-Encryption", EUROCRYPT 2006):
//
//	iv         = HMAC-SHA256(macKey, len(key)‖key‖plaintext)[:16]
//	ciphertext = AES-256-CTR(encKey, iv, plaintext)
//	stored     = iv ‖ ciphertext
//
// where key, the record's storage key, is the associated data: a value
// moved to another key does not open. Opening recomputes the IV over the
// decrypted plaintext and compares it in constant time. Determinism is
// needed: every node applying the same commands must end with identical
// bytes (checkpoints, state transfer and the tests compare them), so a
// random nonce is not an option; SIV is safe with deterministic input, and
// reveals only whether the same key is written twice with the same value.
//
// Storage keys that would reveal an address or a transaction id carry
// HMAC-SHA256(indexKey, domain‖id) instead. The three keys are derived
// from the ledger key with HKDF-SHA256 under their own labels, once per
// Store.
const (
	atRestEncInfo   = "teeup at-rest record enc v1"
	atRestMACInfo   = "teeup at-rest record siv v1"
	atRestIndexInfo = "teeup at-rest index v1"
)

// sivLen is the synthetic IV's length, what sealing adds to a value.
const sivLen = 16

// Domains of the keyed index hashes.
const (
	indexAccount byte = 1
	indexStatus  byte = 2
	indexHistory byte = 3
)

// ErrRecordTampered is wrapped by the errors of records that do not open:
// a wrong ledger key, a value moved to another key or modified bytes.
var ErrRecordTampered = errors.New("record does not authenticate")

// atRest holds the derived keys of one ledger key. A nil *atRest is the
// plaintext layout of schemas before schemaAtRest: keys are raw and
// values are stored as they are.
type atRest struct {
	enc cipher.Block
	// macs and indexes are pools of keyed HMACs (Reset before use), so
	// that sealing allocates no hash state per record.
	macs    sync.Pool
	indexes sync.Pool
}

// newAtRest derives the at-rest keys from the ledger key.
func newAtRest(key LedgerKey) (*atRest, error) {
	if key.IsZero() {
		return nil, ErrNoLedgerKey
	}
	sub := func(info string) ([]byte, error) {
		k, err := hkdf.Key(sha256.New, key[:], nil, info, 32)
		if err != nil {
			return nil, fmt.Errorf("derive %q key: %w", info, err)
		}
		return k, nil
	}
	encKey, err := sub(atRestEncInfo)
	if err != nil {
		return nil, err
	}
	macKey, err := sub(atRestMACInfo)
	if err != nil {
		return nil, err
	}
	indexKey, err := sub(atRestIndexInfo)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("at-rest cipher: %w", err)
	}
	r := &atRest{enc: block}
	r.macs.New = func() any { return hmac.New(sha256.New, macKey) }
	r.indexes.New = func() any { return hmac.New(sha256.New, indexKey) }
	return r, nil
}

// forSchema returns r for a schema that encrypts at rest and nil for an
// older one; locked reports a schema that encrypts at rest without keys (a
// store opened without the ledger key).
func (r *atRest) forSchema(schema int) (rest *atRest, locked bool) {
	if schema < schemaAtRest {
		return nil, false
	}
	return r, r == nil
}

func (r *atRest) index(domain byte, id []byte) [32]byte {
	m := r.indexes.Get().(hash.Hash)
	defer r.indexes.Put(m)
	m.Reset()
	m.Write([]byte{domain})
	m.Write(id)
	var out [32]byte
	m.Sum(out[:0])
	return out
}

func (r *atRest) siv(key, plain []byte) [sha256.Size]byte {
	m := r.macs.Get().(hash.Hash)
	defer r.macs.Put(m)
	m.Reset()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(key)))
	m.Write(n[:])
	m.Write(key)
	m.Write(plain)
	var out [sha256.Size]byte
	m.Sum(out[:0])
	return out
}

// seal returns the stored form of the value plain under the storage key
// key (plain itself for a nil r).
func (r *atRest) seal(key, plain []byte) []byte {
	if r == nil {
		return plain
	}
	mac := r.siv(key, plain)
	out := make([]byte, sivLen+len(plain))
	copy(out, mac[:sivLen])
	cipher.NewCTR(r.enc, out[:sivLen]).XORKeyStream(out[sivLen:], plain)
	return out
}

// open returns the value stored as sealed under key (sealed itself for a
// nil r). The result does not alias sealed for a non-nil r.
func (r *atRest) open(key, sealed []byte) ([]byte, error) {
	if r == nil {
		return sealed, nil
	}
	if len(sealed) < sivLen {
		return nil, fmt.Errorf("record %x: %d bytes, too short to be sealed: %w", key, len(sealed), ErrRecordTampered)
	}
	plain := make([]byte, len(sealed)-sivLen)
	cipher.NewCTR(r.enc, sealed[:sivLen]).XORKeyStream(plain, sealed[sivLen:])
	mac := r.siv(key, plain)
	if subtle.ConstantTimeCompare(mac[:sivLen], sealed[:sivLen]) != 1 {
		return nil, fmt.Errorf("record %x: %w", key, ErrRecordTampered)
	}
	return plain, nil
}

// put seals v under k into b.
func (r *atRest) put(b *pebble.Batch, k, v []byte) error {
	return b.Set(k, r.seal(k, v), nil)
}

// accountKey is a/ + address, or a/ + its keyed hash.
func (r *atRest) accountKey(a Address) []byte {
	if r == nil {
		return accountKey(a)
	}
	h := r.index(indexAccount, a[:])
	return append([]byte(prefixAccount), h[:]...)
}

// statusKey is t/ + transaction id, or t/ + its keyed hash.
func (r *atRest) statusKey(id Hash) []byte {
	if r == nil {
		return statusKey(id)
	}
	h := r.index(indexStatus, id[:])
	return append([]byte(prefixStatus), h[:]...)
}

// historyPrefix is x/ + address, or x/ + its keyed hash: an account's
// history entries follow in height and index order either way.
func (r *atRest) historyPrefix(a Address) []byte {
	if r == nil {
		return append([]byte(prefixHistory), a[:]...)
	}
	h := r.index(indexHistory, a[:])
	return append([]byte(prefixHistory), h[:]...)
}

// historyKey is historyPrefix(a) + height + index within the block.
func (r *atRest) historyKey(a Address, height uint64, index uint32) []byte {
	if r == nil {
		return historyKey(a, height, index)
	}
	k := r.historyPrefix(a)
	k = binary.BigEndian.AppendUint64(k, height)
	return binary.BigEndian.AppendUint32(k, index)
}

// sealedReadable refuses reads of sealed records by a store without the
// ledger key.
func (s *Store) sealedReadable() error {
	if s.restLocked {
		return fmt.Errorf("schema %d encrypts it at rest: %w", s.schema, ErrNoLedgerKey)
	}
	return nil
}
