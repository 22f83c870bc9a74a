package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/teeup/teeup/tee"
)

// Options configures Open.
type Options struct {
	// Genesis is the network's genesis (required). A new database is
	// initialised from it; an existing one must have been made from it.
	Genesis *Genesis
	// LedgerKey is required by Apply, BuildBlock and BlockTxs; the other
	// reads work without it.
	LedgerKey LedgerKey
	// SelfMeasurement is this node's MRENCLAVE: a node whose MRENCLAVE is not
	// the one an active upgrade schedule names applies no block past its
	// activation height.
	SelfMeasurement tee.Measurement
	// TargetSchema is the schema version this binary requires; 0 means the
	// newest in DefaultMigrations. A new database is created at it; an
	// existing one at another version is refused (see Migrate).
	TargetSchema int
	// Logger receives the ledger's and Pebble's logs; nil discards them.
	Logger *slog.Logger
	// Verified, if set, holds ids of transactions whose signatures this
	// process verified (at admission); a block's apply does not verify
	// them again.
	Verified *VerifiedSigs

	// fs replaces the real file system in tests (crash simulation).
	fs vfs.FS
}

// Store is a node's ledger: its Pebble database and the state machine over
// it. Its methods are safe for concurrent use; Apply and BuildBlock are
// serialised. A Store must not be used after Close.
type Store struct {
	db          *pebble.DB
	dir         string
	genesis     *Genesis
	genesisHash Hash
	params      Params
	crypto      *suite // nil without a ledger key
	self        tee.Measurement
	schema      int
	log         *slog.Logger
	verified    *VerifiedSigs

	// rest seals the records that reveal users or amounts; nil below
	// schemaAtRest (see atrest.go). restLocked says that the schema
	// seals them and the store has no ledger key to open them.
	rest       *atRest
	restLocked bool

	// applyMu serialises Apply and BuildBlock, so that a block is built on
	// a consistent head and pool.
	applyMu sync.Mutex

	mu       sync.RWMutex // guards st, raftConf and closed
	st       chainState
	raftConf []byte
	closed   bool
}

// chainState is the in-memory copy of the meta records, updated only after
// the batch that wrote them committed.
type chainState struct {
	head    headRecord
	applied uint64
	halt    uint64
	pool    poolRecord
}

// Open opens the ledger database in dir, creating and initialising it from
// the genesis if dir holds none. An existing database must belong to the
// same chain and genesis and be at the target schema version.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Genesis == nil {
		return nil, fmt.Errorf("open ledger %s: no genesis", dir)
	}
	if err := opts.Genesis.Validate(); err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", dir, err)
	}
	gh, err := opts.Genesis.Hash()
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", dir, err)
	}
	newest := NewestSchema(DefaultMigrations())
	target := opts.TargetSchema
	if target == 0 {
		target = newest
	}
	if target < 1 || target > newest {
		return nil, fmt.Errorf("open ledger %s: target schema %d is not one this binary knows (1 to %d)", dir, target, newest)
	}
	var cs *suite
	var rest *atRest
	if !opts.LedgerKey.IsZero() {
		if cs, err = newSuite(opts.LedgerKey); err != nil {
			return nil, fmt.Errorf("open ledger %s: %w", dir, err)
		}
		if rest, err = newAtRest(opts.LedgerKey); err != nil {
			return nil, fmt.Errorf("open ledger %s: %w", dir, err)
		}
	}
	base := discardIfNil(opts.Logger)
	log := base.With("component", "ledger")
	db, err := pebble.Open(dir, pebbleOptions(opts.fs, base, false))
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", dir, err)
	}
	g := *opts.Genesis
	s := &Store{
		db:          db,
		dir:         dir,
		genesis:     &g,
		genesisHash: gh,
		params:      opts.Genesis.Params.WithDefaults(),
		crypto:      cs,
		rest:        rest,
		self:        opts.SelfMeasurement,
		log:         log,
		verified:    opts.Verified,
	}
	if err := s.load(target, newest); err != nil {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("open ledger %s: %w", dir, err)
	}
	log.Info("ledger opened", "dir", dir, "chain", g.ChainID, "schema", s.schema,
		"height", s.st.head.Height, "applied", s.st.applied, "pool", s.st.pool.Size)
	return s, nil
}

// load initialises an empty database or checks and loads an existing one.
func (s *Store) load(target, newest int) error {
	raw, ok, err := s.get(keySchema)
	if err != nil {
		return err
	}
	if !ok {
		empty, err := s.isEmpty()
		if err != nil {
			return err
		}
		if !empty {
			return errors.New("database holds data but no ledger schema version: not a teeup ledger, or damaged")
		}
		return s.initialise(target)
	}
	v, err := decodeU64("schema version", raw)
	if err != nil {
		return err
	}
	if v > uint64(newest) {
		return fmt.Errorf("database schema %d is newer than this binary supports (%d)", v, newest)
	}
	chain, _, err := s.get(keyChainID)
	if err != nil {
		return err
	}
	if string(chain) != s.genesis.ChainID {
		return fmt.Errorf("database belongs to chain %q, the genesis is for chain %q", chain, s.genesis.ChainID)
	}
	gh, _, err := s.get(keyGenesisHash)
	if err != nil {
		return err
	}
	if !bytes.Equal(gh, s.genesisHash[:]) {
		return fmt.Errorf("database was made from genesis %x, this genesis hashes to %s: wrong genesis file", gh, s.genesisHash)
	}
	if int(v) != target {
		return fmt.Errorf("schema is %d, this binary needs %d: run 'teeup-node migrate'", v, target)
	}
	s.schema = int(v)
	s.rest, s.restLocked = s.rest.forSchema(s.schema)
	st, err := s.readState()
	if err != nil {
		return err
	}
	s.st = st
	conf, _, err := s.get(keyRaftConf)
	if err != nil {
		return err
	}
	s.raftConf = conf
	return nil
}

func (s *Store) isEmpty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, err
	}
	empty := !it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return false, err
	}
	return empty, nil
}

// initialise writes a new ledger at schema version target: meta, block 0
// and the genesis balances, in one synced batch (a crash leaves an empty
// database, initialised again on the next Open).
func (s *Store) initialise(target int) error {
	g := s.genesis
	b0, err := GenesisBlock(g)
	if err != nil {
		return err
	}
	st := chainState{head: headRecord{Height: 0, Hash: b0.Hash(), Time: b0.Header.Time}}
	var locked bool
	if s.rest, locked = s.rest.forSchema(target); locked {
		return fmt.Errorf("initialise ledger at schema %d: %w (it seals the genesis balances)", target, ErrNoLedgerKey)
	}
	b := s.db.NewBatch()
	defer b.Close()
	sets := []struct{ k, v []byte }{
		{keySchema, u64(uint64(target))},
		{keyChainID, []byte(g.ChainID)},
		{keyGenesisHash, s.genesisHash[:]},
		{blockKey(0), b0.Encode()},
		{keyHead, st.head.encode()},
		{keyApplied, u64(0)},
		{keyHalt, u64(0)},
		{keyPool, st.pool.encode()},
	}
	for _, a := range g.Accounts {
		k := s.rest.accountKey(a.Address)
		sets = append(sets, struct{ k, v []byte }{k, s.rest.seal(k, encodeAccount(Account{Balance: a.Balance}))})
	}
	for _, kv := range sets {
		if err := b.Set(kv.k, kv.v, nil); err != nil {
			return fmt.Errorf("initialise ledger: %w", err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("initialise ledger: %w", err)
	}
	s.schema = target
	s.st = st
	s.log.Info("ledger initialised from genesis", "chain", g.ChainID, "genesis", s.genesisHash, "schema", target, "accounts", len(g.Accounts))
	return nil
}

func (s *Store) readState() (chainState, error) {
	var st chainState
	for _, r := range []struct {
		key  []byte
		read func([]byte) error
	}{
		{keyHead, func(b []byte) (err error) { st.head, err = decodeHead(b); return }},
		{keyApplied, func(b []byte) (err error) { st.applied, err = decodeU64("applied index", b); return }},
		{keyHalt, func(b []byte) (err error) { st.halt, err = decodeU64("halt height", b); return }},
		{keyPool, func(b []byte) (err error) { st.pool, err = decodePool(b); return }},
	} {
		v, ok, err := s.get(r.key)
		if err != nil {
			return st, err
		}
		if !ok {
			return st, fmt.Errorf("corrupt ledger: meta record %s is missing", r.key)
		}
		if err := r.read(v); err != nil {
			return st, fmt.Errorf("corrupt ledger: %s: %w", r.key, err)
		}
	}
	return st, nil
}

// get returns a copy of the value of key, or ok=false if it is absent.
func (s *Store) get(key []byte) ([]byte, bool, error) {
	return getFrom(s.db, key)
}

// reader is what get needs: a DB, a snapshot or an indexed batch.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func getFrom(r reader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %q: %w", key, err)
	}
	out := append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("read %q: %w", key, err)
	}
	return out, true, nil
}

// DB returns the underlying database. The consensus package keeps raft's
// durable state in it under RaftPrefix; nothing else may write to it.
func (s *Store) DB() *pebble.DB { return s.db }

// Dir returns the database directory.
func (s *Store) Dir() string { return s.dir }

// Close closes the database. Writes are synced as they commit, so Close
// loses nothing.
func (s *Store) Close() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("close ledger %s: already closed", s.dir)
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close ledger %s: %w", s.dir, err)
	}
	return nil
}

// Checkpoint writes a consistent copy of the whole database (ledger and
// raft state) to dir, which must not exist. Sstables are hard-linked, so the
// cost is proportional to the number of files, not their size; dir must be
// on the same file system.
func (s *Store) Checkpoint(dir string) error {
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("checkpoint ledger %s to %s: %w", s.dir, dir, err)
	}
	return nil
}

// Genesis returns the genesis the store was opened with.
func (s *Store) Genesis() *Genesis { return s.genesis }

// GenesisHash returns the genesis hash.
func (s *Store) GenesisHash() Hash { return s.genesisHash }

// ChainID returns the chain id.
func (s *Store) ChainID() string { return s.genesis.ChainID }

// Params returns the consensus parameters, defaults filled in.
func (s *Store) Params() Params { return s.params }

// Schema returns the database's schema version.
func (s *Store) Schema() int { return s.schema }

// SelfMeasurement returns the measurement given in Options.
func (s *Store) SelfMeasurement() tee.Measurement { return s.self }

func (s *Store) state() chainState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st
}

// Head returns the height and hash of the newest block.
func (s *Store) Head() (height uint64, hash Hash) {
	st := s.state()
	return st.head.Height, st.head.Hash
}

// AppliedIndex returns the index of the last raft entry applied.
func (s *Store) AppliedIndex() uint64 { return s.state().applied }

// HaltHeight returns the halt height, 0 if none is set.
func (s *Store) HaltHeight() uint64 { return s.state().halt }

// PoolSize returns the number of transactions waiting in the pool.
func (s *Store) PoolSize() int { return int(s.state().pool.Size) }

// Account returns an account's state; an unknown account is all zeros.
func (s *Store) Account(a Address) (Account, error) {
	if err := s.sealedReadable(); err != nil {
		return Account{}, fmt.Errorf("account %s: %w", a, err)
	}
	k := s.rest.accountKey(a)
	v, ok, err := s.get(k)
	if err != nil || !ok {
		return Account{}, err
	}
	if v, err = s.rest.open(k, v); err != nil {
		return Account{}, fmt.Errorf("account %s: %w", a, err)
	}
	acct, err := decodeAccount(v)
	if err != nil {
		return Account{}, fmt.Errorf("corrupt account %s: %w", a, err)
	}
	return acct, nil
}

// TxStatus returns what the ledger knows of a transaction id; ok is false
// if it never saw it.
func (s *Store) TxStatus(id Hash) (status TxStatus, ok bool, err error) {
	if err := s.sealedReadable(); err != nil {
		return TxStatus{}, false, fmt.Errorf("status of tx %s: %w", id, err)
	}
	k := s.rest.statusKey(id)
	v, ok, err := s.get(k)
	if err != nil || !ok {
		return TxStatus{}, false, err
	}
	if v, err = s.rest.open(k, v); err != nil {
		return TxStatus{}, false, fmt.Errorf("status of tx %s: %w", id, err)
	}
	st, err := decodeStatus(v)
	if err != nil {
		return TxStatus{}, false, fmt.Errorf("corrupt status of tx %s: %w", id, err)
	}
	return st, true, nil
}

// Block returns the block at height. Its error wraps ErrNotFound above the
// head.
func (s *Store) Block(height uint64) (*Block, error) {
	v, ok, err := s.get(blockKey(height))
	if err != nil {
		return nil, err
	}
	if !ok {
		head, _ := s.Head()
		return nil, fmt.Errorf("read block %d: %w (head is %d)", height, ErrNotFound, head)
	}
	b, err := DecodeBlock(v)
	if err != nil {
		return nil, fmt.Errorf("corrupt block %d: %w", height, err)
	}
	return b, nil
}

// BlockTxs returns the transactions of the block at height, decrypted
// (none for block 0). It needs the ledger key.
func (s *Store) BlockTxs(height uint64) ([]*Tx, error) {
	b, err := s.Block(height)
	if err != nil {
		return nil, err
	}
	if height == 0 {
		return nil, nil
	}
	if s.crypto == nil {
		return nil, fmt.Errorf("read block %d transactions: %w", height, ErrNoLedgerKey)
	}
	txs, err := s.crypto.openBody(b.Header.ChainID, height, b.Header.PrevHash, b.Body)
	if err != nil {
		return nil, fmt.Errorf("read block %d transactions: %w", height, err)
	}
	if len(txs) != int(b.Header.TxCount) {
		return nil, fmt.Errorf("corrupt block %d: header counts %d transactions, body holds %d", height, b.Header.TxCount, len(txs))
	}
	return txs, nil
}

// Pool returns up to limit pool transactions in admission order (all of
// them if limit ≤ 0).
func (s *Store) Pool(limit int) ([]*Tx, error) {
	entries, err := s.poolHead(s.db, limit)
	if err != nil {
		return nil, err
	}
	txs := make([]*Tx, len(entries))
	for i, e := range entries {
		txs[i] = e.tx
	}
	return txs, nil
}

// poolEntry is one pool record.
type poolEntry struct {
	key []byte
	raw []byte
	tx  *Tx
}

// iterable is what poolHead needs: a DB or a snapshot.
type iterable interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// poolHead returns the first limit pool entries (all if limit ≤ 0).
func (s *Store) poolHead(r iterable, limit int) ([]poolEntry, error) {
	if err := s.sealedReadable(); err != nil {
		return nil, fmt.Errorf("read pool: %w", err)
	}
	var out []poolEntry
	err := scan(r, []byte(prefixPool), false, func(k, v []byte) (bool, error) {
		raw, err := s.rest.open(k, v) // a copy, or v itself below schema 3
		if s.rest == nil {
			raw = append([]byte(nil), v...)
		}
		if err != nil {
			return false, fmt.Errorf("pool entry %x: %w", k, err)
		}
		t, err := DecodeTx(raw)
		if err != nil {
			return false, fmt.Errorf("corrupt pool entry %x: %w", k, err)
		}
		out = append(out, poolEntry{key: append([]byte(nil), k...), raw: raw, tx: t})
		return limit <= 0 || len(out) < limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pool: %w", err)
	}
	return out, nil
}

// scan calls fn with every key and value under prefix, in key order or in
// reverse, until fn returns false or an error. k and v are valid only
// during the call.
func scan(r iterable, prefix []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	first, next := it.First, it.Next
	if reverse {
		first, next = it.Last, it.Prev
	}
	for ok := first(); ok; ok = next() {
		v, err := it.ValueAndErr()
		if err != nil {
			break // it.Error reports it
		}
		more, err := fn(it.Key(), v)
		if err != nil {
			_ = it.Close()
			return err
		}
		if !more {
			break
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// Node returns a registered node; ok is false if the id is not registered.
func (s *Store) Node(id uint64) (NodeRecord, bool, error) {
	v, ok, err := s.get(nodeKey(id))
	if err != nil || !ok {
		return NodeRecord{}, false, err
	}
	n, err := decodeNode(id, v)
	if err != nil {
		return NodeRecord{}, false, fmt.Errorf("corrupt node %d: %w", id, err)
	}
	return n, true, nil
}

// Nodes returns the registered nodes by id.
func (s *Store) Nodes() ([]NodeRecord, error) {
	var out []NodeRecord
	err := scan(s.db, []byte(prefixNode), false, func(k, v []byte) (bool, error) {
		id, err := decodeU64("node id", k[len(prefixNode):])
		if err != nil {
			return false, fmt.Errorf("corrupt node key %x: %w", k, err)
		}
		n, err := decodeNode(id, v)
		if err != nil {
			return false, fmt.Errorf("corrupt node %d: %w", id, err)
		}
		out = append(out, n)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	return out, nil
}
