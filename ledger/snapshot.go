package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// keyRaftConf holds the raft membership (an encoded raft ConfState, opaque
// to the ledger) as of the applied index: written in the same batch as the
// applied index, so that a checkpoint's membership and applied index
// always agree.
var keyRaftConf = []byte(prefixMeta + "raftconf")

// SaveRaftConf records the raft membership conf as of raft index, with the
// applied index, in one synced batch. An index at or below the applied one
// is ignored.
func (s *Store) SaveRaftConf(index uint64, conf []byte) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	st := s.state()
	if index <= st.applied {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(keyRaftConf, conf, nil); err != nil {
		return fmt.Errorf("save raft membership: %w", err)
	}
	if err := b.Set(keyApplied, u64(index), nil); err != nil {
		return fmt.Errorf("save raft membership: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("save raft membership at %d: %w", index, err)
	}
	s.mu.Lock()
	s.st.applied = index
	s.raftConf = append([]byte(nil), conf...)
	s.mu.Unlock()
	return nil
}

// InitRaftConf records conf as the raft membership if none is recorded
// (ledgers written before the membership was kept with the applied index),
// without moving the applied index.
func (s *Store) InitRaftConf(conf []byte) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if len(s.RaftConf()) > 0 {
		return nil
	}
	if err := s.db.Set(keyRaftConf, conf, pebble.Sync); err != nil {
		return fmt.Errorf("record raft membership: %w", err)
	}
	s.mu.Lock()
	s.raftConf = append([]byte(nil), conf...)
	s.mu.Unlock()
	return nil
}

// OpenRaw opens the Pebble database of a ledger directory as is, with the
// ledger's options, for code that prepares a staged copy (the raft state of
// an installed snapshot).
func OpenRaw(dir string) (*pebble.DB, error) {
	db, err := pebble.Open(dir, pebbleOptions(nil, discardIfNil(nil), true))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return db, nil
}

// RaftConf returns the raft membership recorded with the applied index (nil
// for a ledger that never recorded one).
func (s *Store) RaftConf() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]byte(nil), s.raftConf...)
}

// CheckpointState writes a consistent checkpoint of the database to dir, as
// Checkpoint, and returns the applied index and the raft membership it
// holds: no entry is applied while it is taken.
func (s *Store) CheckpointState(dir string) (applied uint64, raftConf []byte, err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if err := s.Checkpoint(dir); err != nil {
		return 0, nil, err
	}
	return s.AppliedIndex(), s.RaftConf(), nil
}

// ErrSnapshotInvalid is wrapped by VerifyCheckpoint's refusals.
var ErrSnapshotInvalid = errors.New("state snapshot does not verify")

// VerifyOptions says what a received checkpoint must be.
type VerifyOptions struct {
	Genesis   *Genesis
	LedgerKey LedgerKey
	// TargetSchema is the schema this binary runs (0: the newest).
	TargetSchema int
	// Applied is the applied index the raft snapshot metadata names;
	// CheckRaftConf checks the checkpoint's raft membership against it.
	Applied       uint64
	CheckRaftConf func(raw []byte) error
	// Bodies also checks every block body against its header's body hash
	// (SHA-256 of the whole history). Without it the bodies are still
	// covered: by Pebble's block checksums against disk corruption, by the
	// transport's TLS in transit, and by their own AEAD, which every read
	// of a body checks.
	Bodies bool
	Logger *slog.Logger
}

// SnapshotSummary describes a verified checkpoint.
type SnapshotSummary struct {
	Height uint64
	Head   Hash
	Blocks uint64
}

// VerifyCheckpoint checks a ledger database received from a peer before
// it replaces this node's: the same chain and genesis, this binary's
// schema, the applied index and raft membership that the raft snapshot
// names, and the whole block history — block 0 is this genesis's, every
// block links to the previous one's hash, its proposer signature verifies
// with a key that was registered for that proposer, and (with Bodies) its
// body hashes to its header's body hash.
func VerifyCheckpoint(ctx context.Context, dir string, opts VerifyOptions) (SnapshotSummary, error) {
	var sum SnapshotSummary
	bad := func(format string, args ...any) (SnapshotSummary, error) {
		return sum, fmt.Errorf("%w: %s", ErrSnapshotInvalid, fmt.Sprintf(format, args...))
	}
	if opts.Genesis == nil {
		return sum, errors.New("verify snapshot: no genesis")
	}
	gh, err := opts.Genesis.Hash()
	if err != nil {
		return sum, fmt.Errorf("verify snapshot: %w", err)
	}
	po := pebbleOptions(nil, discardIfNil(opts.Logger), true)
	po.ReadOnly = true
	db, err := pebble.Open(dir, po)
	if err != nil {
		return bad("open: %v", err)
	}
	defer db.Close()
	get := func(k []byte) ([]byte, bool, error) { return getFrom(db, k) }
	chain, _, err := get(keyChainID)
	if err != nil {
		return sum, err
	}
	if string(chain) != opts.Genesis.ChainID {
		return bad("chain id %q, this node's is %q", chain, opts.Genesis.ChainID)
	}
	g, _, err := get(keyGenesisHash)
	if err != nil {
		return sum, err
	}
	if !bytes.Equal(g, gh[:]) {
		return bad("genesis hash %x, this node's is %s", g, gh)
	}
	rawSchema, ok, err := get(keySchema)
	if err != nil {
		return sum, err
	}
	target := opts.TargetSchema
	if target == 0 {
		target = NewestSchema(DefaultMigrations())
	}
	if schema, derr := decodeU64("schema", rawSchema); !ok || derr != nil || schema != uint64(target) {
		return bad("schema %x, this binary runs %d", rawSchema, target)
	}
	rawApplied, _, err := get(keyApplied)
	if err != nil {
		return sum, err
	}
	if applied, derr := decodeU64("applied index", rawApplied); derr != nil || applied != opts.Applied {
		return bad("applied index %x, the raft snapshot says %d", rawApplied, opts.Applied)
	}
	conf, _, err := get(keyRaftConf)
	if err != nil {
		return sum, err
	}
	if opts.CheckRaftConf == nil {
		return sum, errors.New("verify snapshot: no membership check")
	}
	if err := opts.CheckRaftConf(conf); err != nil {
		return bad("raft membership: %v", err)
	}
	rawHead, ok, err := get(keyHead)
	if err != nil {
		return sum, err
	}
	if !ok {
		return bad("no head record")
	}
	head, err := decodeHead(rawHead)
	if err != nil {
		return bad("head: %v", err)
	}
	keys, err := proposerKeys(db)
	if err != nil {
		return bad("%v", err)
	}
	b0, err := GenesisBlock(opts.Genesis)
	if err != nil {
		return sum, fmt.Errorf("verify snapshot: %w", err)
	}
	raw0, ok, err := get(blockKey(0))
	if err != nil {
		return sum, err
	}
	if blk0, derr := DecodeBlock(raw0); !ok || derr != nil || blk0.Hash() != b0.Hash() {
		return bad("block 0 is not this genesis's")
	}
	// The history is checked in ranges on every core; each range reports
	// the hash its first block links to and its last block's hash, and the
	// ranges must chain.
	workers := max(1, min(runtime.GOMAXPROCS(0), int(head.Height/16)))
	per := (head.Height + uint64(workers) - 1) / uint64(workers)
	type span struct {
		from, to    uint64
		first, last Hash
		err         error
	}
	spans := make([]span, 0, workers)
	for from := uint64(1); from <= head.Height; from += per {
		spans = append(spans, span{from: from, to: min(from+per-1, head.Height)})
	}
	var wg sync.WaitGroup
	for i := range spans {
		wg.Add(1)
		go func(sp *span) {
			defer wg.Done()
			sp.first, sp.last, sp.err = verifyBlockRange(ctx, db, opts.Genesis.ChainID, keys, sp.from, sp.to, opts.Bodies)
		}(&spans[i])
	}
	wg.Wait()
	prev := b0.Hash()
	for _, sp := range spans {
		if sp.err != nil {
			if errors.Is(sp.err, ErrSnapshotInvalid) {
				return sum, sp.err
			}
			return sum, fmt.Errorf("verify snapshot: %w", sp.err)
		}
		if sp.first != prev {
			return bad("block %d does not link to block %d (hash chain broken)", sp.from, sp.from-1)
		}
		prev = sp.last
	}
	if prev != head.Hash {
		return bad("the head record names %s, the last block hashes to %s", head.Hash, prev)
	}
	sum = SnapshotSummary{Height: head.Height, Head: head.Hash, Blocks: head.Height + 1}
	return sum, nil
}

// verifyBlockRange checks blocks from..to (each present, at its height, of
// this chain, linked to the one before, its body hashing to its header's
// body hash, signed by a key registered for its proposer) and returns the
// hash block from links to and block to's hash.
func verifyBlockRange(ctx context.Context, db *pebble.DB, chainID string, keys map[uint64]map[Address]bool, from, to uint64, bodies bool) (first, last Hash, err error) {
	bad := func(format string, args ...any) (Hash, Hash, error) {
		return Hash{}, Hash{}, fmt.Errorf("%w: %s", ErrSnapshotInvalid, fmt.Sprintf(format, args...))
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: blockKey(from), UpperBound: blockKey(to + 1)})
	if err != nil {
		return Hash{}, Hash{}, err
	}
	defer it.Close()
	want := from
	var prev Hash
	for ok := it.First(); ok; ok = it.Next() {
		if want%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return Hash{}, Hash{}, err
			}
		}
		h, derr := decodeU64("block height", it.Key()[len(prefixBlock):])
		if derr != nil || h != want {
			return bad("block %d of %d..%d is missing", want, from, to)
		}
		raw, verr := it.ValueAndErr()
		if verr != nil {
			return Hash{}, Hash{}, verr
		}
		blk, derr := DecodeBlock(raw) // the block does not outlive this step
		if derr != nil {
			return bad("block %d: %v", h, derr)
		}
		hd := &blk.Header
		switch {
		case hd.Height != h:
			return bad("block stored at %d says height %d", h, hd.Height)
		case hd.ChainID != chainID:
			return bad("block %d is of chain %q", h, hd.ChainID)
		case h > from && hd.PrevHash != prev:
			return bad("block %d does not link to block %d (hash chain broken)", h, h-1)
		case bodies && sha256.Sum256(blk.Body) != hd.BodyHash:
			return bad("block %d: body hash mismatch", h)
		case !keys[hd.Proposer][hd.ProposerKey]:
			return bad("block %d: proposer %d's key %s was never registered for it", h, hd.Proposer, hd.ProposerKey)
		}
		if err := blk.VerifySignature(); err != nil {
			return bad("block %d: %v", h, err)
		}
		if h == from {
			first = hd.PrevHash
		}
		prev = blk.Hash()
		want++
	}
	if err := it.Error(); err != nil {
		return Hash{}, Hash{}, err
	}
	if want != to+1 {
		return bad("block %d of %d..%d is missing", want, from, to)
	}
	return first, prev, nil
}

// proposerKeys returns, per node id, every key ever registered for it.
func proposerKeys(db *pebble.DB) (map[uint64]map[Address]bool, error) {
	out := map[uint64]map[Address]bool{}
	add := func(id uint64, k Address) {
		if out[id] == nil {
			out[id] = map[Address]bool{}
		}
		out[id][k] = true
	}
	err := scan(db, []byte(prefixNode), false, func(k, v []byte) (bool, error) {
		id, err := decodeU64("node id", k[len(prefixNode):])
		if err != nil {
			return false, fmt.Errorf("corrupt node key %x: %w", k, err)
		}
		n, err := decodeNode(id, v)
		if err != nil {
			return false, fmt.Errorf("corrupt node %d: %w", id, err)
		}
		add(id, n.Key)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	err = scan(db, []byte(prefixNodeKeyHistory), false, func(k, v []byte) (bool, error) {
		id, key, err := decodeNodeKeyHistory(k, v)
		if err != nil {
			return false, err
		}
		add(id, key)
		return true, nil
	})
	return out, err
}
