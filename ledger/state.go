package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ErrHalted is returned by BuildBlock when the next block would pass the
// halt height.
var ErrHalted = errors.New("ledger halted")

// ErrProposerNotRegistered is wrapped by BuildBlock's error when the
// proposer has no key registered on chain (yet).
var ErrProposerNotRegistered = errors.New("is not registered")

// Apply executes the raft entry at index, whose payload is cmd. It is
// deterministic, and every write of the entry, with the new applied index,
// commits in one batch: after a crash the state and the applied index agree.
//
// The batch is not synced on its own. The raft log lives in the same Pebble
// database and every raft write is synced; Pebble's write-ahead log is one
// sequence, so a synced raft write makes every apply committed before it
// durable too, and an apply lost to a power failure is one whose entry is
// still in the synced raft log (the log is compacted only below the
// applied index, by a synced write that follows the applies it covers): on
// restart raft replays it from the applied index that survived, and the
// deterministic apply produces the same state. A process crash (kill -9)
// loses nothing either way: committed batches are in the OS page cache.
//
//   - index ≤ AppliedIndex: nothing happens; the result is marked Duplicate.
//   - cmd nil: only the applied index moves (raft's empty and configuration
//     entries).
//
// Deterministic rejections (bad transaction, invalid block, …) are results
// with Accepted false and a Reason; an error means I/O failure or
// corruption, and then nothing was written.
func (s *Store) Apply(index uint64, cmd *Command) (Result, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	st := s.state()
	if index <= st.applied {
		return duplicateResult(cmd), nil
	}
	if s.crypto == nil {
		return Result{}, fmt.Errorf("apply entry %d: %w", index, ErrNoLedgerKey)
	}
	a := &applier{
		s:        s,
		batch:    s.db.NewBatch(),
		st:       st,
		accounts: make(map[Address]*Account),
	}
	defer a.batch.Close()
	res, err := a.apply(cmd)
	if err != nil {
		return Result{}, fmt.Errorf("apply entry %d: %w", index, err)
	}
	if cmd != nil && cmd.Kind == CmdBlock && !res.Accepted {
		// A refused block is refused as a whole: whatever its earlier
		// transactions wrote before a later one failed is discarded, and
		// only the applied index moves. (The first batch is closed by the
		// deferred call above.)
		a = &applier{s: s, batch: s.db.NewBatch(), st: st, accounts: make(map[Address]*Account)}
		defer a.batch.Close()
	}
	if res.Accepted {
		res.Code = CodeOK
	}
	a.st.applied = index
	if err := a.finish(); err != nil {
		return Result{}, fmt.Errorf("apply entry %d: %w", index, err)
	}
	if err := a.batch.Commit(pebble.NoSync); err != nil {
		return Result{}, fmt.Errorf("apply entry %d: commit: %w", index, err)
	}
	s.mu.Lock()
	s.st = a.st
	s.mu.Unlock()
	return res, nil
}

func duplicateResult(cmd *Command) Result {
	r := Result{Duplicate: true}
	if cmd == nil {
		return r
	}
	r.Kind = cmd.Kind
	switch {
	case cmd.Kind == CmdSubmitTx && cmd.Tx != nil:
		r.TxID = cmd.Tx.ID()
	case cmd.Kind == CmdBlock && cmd.Block != nil:
		r.Height = cmd.Block.Header.Height
	}
	return r
}

// applier accumulates the writes of one entry. Reads go to the committed
// database, except accounts and governance records, which it caches so that
// a command touching them twice sees its own change.
type applier struct {
	s        *Store
	batch    *pebble.Batch
	st       chainState
	accounts map[Address]*Account
	// gov is the governance state, loaded on first use; govCache holds the
	// governance records this entry wrote (see governance_apply.go).
	gov      *govState
	govCache map[string][]byte
	// ms is the membership state and memberCache the members, loaded on
	// first use (see membership.go).
	ms          *membershipState
	memberCache []Member
}

func (a *applier) apply(cmd *Command) (Result, error) {
	if cmd == nil {
		return Result{Accepted: true}, nil
	}
	switch cmd.Kind {
	case CmdSubmitTx:
		return a.submitTx(cmd.Tx)
	case CmdBlock:
		return a.block(cmd.Block)
	case CmdRegisterNode:
		return a.registerNode(cmd.Node)
	case CmdHalt:
		a.st.halt = cmd.HaltHeight
		a.s.log.Info("halt height set", "halt", cmd.HaltHeight)
		return Result{Kind: CmdHalt, Accepted: true, Height: cmd.HaltHeight}, nil
	case CmdCompact:
		// Raft log bookkeeping: the node compacts its raft storage; the
		// ledger only records the applied index.
		return Result{Kind: CmdCompact, Accepted: true, Height: cmd.CompactIndex}, nil
	default:
		return Result{Kind: cmd.Kind, Code: CodeMalformed, Reason: fmt.Sprintf("unknown %s", cmd.Kind)}, nil
	}
}

// finish writes the accounts and meta records into the batch.
func (a *applier) finish() error {
	for addr, acct := range a.accounts {
		if err := a.s.rest.put(a.batch, a.s.rest.accountKey(addr), encodeAccount(*acct)); err != nil {
			return err
		}
	}
	for _, kv := range []struct{ k, v []byte }{
		{keyHead, a.st.head.encode()},
		{keyApplied, u64(a.st.applied)},
		{keyHalt, u64(a.st.halt)},
		{keyPool, a.st.pool.encode()},
	} {
		if err := a.batch.Set(kv.k, kv.v, nil); err != nil {
			return err
		}
	}
	return nil
}

// account returns the cached account, reading it on first use.
func (a *applier) account(addr Address) (*Account, error) {
	if acct, ok := a.accounts[addr]; ok {
		return acct, nil
	}
	acct, err := a.s.Account(addr)
	if err != nil {
		return nil, err
	}
	a.accounts[addr] = &acct
	return &acct, nil
}

func (a *applier) setStatus(id Hash, st TxStatus) error {
	v, err := encodeStatus(st)
	if err != nil {
		return err
	}
	return a.s.rest.put(a.batch, a.s.rest.statusKey(id), v)
}

// submitTx admits a transaction to the pool or rejects it.
func (a *applier) submitTx(t *Tx) (Result, error) {
	res := Result{Kind: CmdSubmitTx}
	if t == nil {
		res.Code, res.Reason = CodeMalformed, "missing tx"
		return res, nil
	}
	id := t.ID()
	res.TxID = id
	prev, seen, err := a.s.TxStatus(id)
	if err != nil {
		return Result{}, err
	}
	if seen {
		switch prev.State {
		case StatePending:
			res.Code, res.Reason = CodeAlreadyPending, "duplicate: already pending"
			return res, nil
		case StateCommitted:
			res.Code, res.Reason = CodeAlreadyCommitted, fmt.Sprintf("duplicate: already committed at height %d", prev.Height)
			res.Height = prev.Height
			return res, nil
		}
	}
	v, payment, err := a.admit(t)
	if err != nil {
		return Result{}, err
	}
	if v.failed() {
		res.Code, res.Reason = v.code, v.reason
		// Neither the sender nor the reason (amounts, balances) is logged:
		// the logs are the host's to read. The code says what kind.
		a.s.log.Debug("tx rejected", "tx", id, "code", v.code)
		return res, a.setStatus(id, TxStatus{State: StateRejected, Code: v.code, Reason: v.reason})
	}
	acct, err := a.account(t.From)
	if err != nil {
		return Result{}, err
	}
	acct.Pending++
	acct.PendingDebit += payment.Amount
	if err := a.s.rest.put(a.batch, poolKey(a.st.pool.Next), t.Encode()); err != nil {
		return Result{}, err
	}
	if err := a.governanceAdmitted(t); err != nil {
		return Result{}, err
	}
	a.st.pool.Next++
	a.st.pool.Size++
	if err := a.setStatus(id, TxStatus{State: StatePending, Code: CodeOK}); err != nil {
		return Result{}, err
	}
	res.Accepted = true
	return res, nil
}

// admit checks a transaction against the state: it returns a rejection,
// or the zero verdict and the decoded payment.
func (a *applier) admit(t *Tx) (v verdict, p Payment, err error) {
	if t.ChainID != a.s.genesis.ChainID {
		return reject(CodeWrongChain, "wrong chain id: got %q, want %q", t.ChainID, a.s.genesis.ChainID), p, nil
	}
	if err := t.checkLimits(); err != nil {
		return reject(CodeMalformed, "oversize: %v", err), p, nil
	}
	if !t.Kind.Known() {
		return reject(CodeMalformed, "unknown tx kind %d", uint8(t.Kind)), p, nil
	}
	if t.VerifySignature() != nil {
		return reject(CodeBadSignature, "bad signature"), p, nil
	}
	switch t.Kind {
	case TxPayment:
		p, err = DecodePayment(t.Payload)
		if errors.Is(err, ErrZeroAmount) {
			return reject(CodeMalformed, "zero amount"), p, nil
		}
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), p, nil
		}
	default: // a governance kind: Known passed
		v, err := a.checkGovernance(t)
		if err != nil || v.failed() {
			return v, p, err
		}
	}
	acct, err := a.account(t.From)
	if err != nil {
		return verdict{}, p, err
	}
	if want := acct.Nonce + acct.Pending + 1; t.Nonce != want {
		return reject(CodeBadNonce, "bad nonce: got %d, want %d", t.Nonce, want), p, nil
	}
	if acct.PendingDebit > acct.Balance {
		return verdict{}, p, fmt.Errorf("corrupt account %s: pending debits %d exceed the balance %d", t.From, acct.PendingDebit, acct.Balance)
	}
	if avail := acct.Balance - acct.PendingDebit; p.Amount > avail {
		return reject(CodeInsufficientFunds, "insufficient funds: amount %d, balance %d, pending debits %d", p.Amount, acct.Balance, acct.PendingDebit), p, nil
	}
	if a.st.pool.Size >= uint64(a.s.params.MaxPool) {
		return reject(CodePoolFull, "pool full: %d transactions", a.st.pool.Size), p, nil
	}
	return verdict{}, p, nil
}

// block appends a block or rejects it.
func (a *applier) block(blk *Block) (Result, error) {
	res := Result{Kind: CmdBlock}
	if blk == nil {
		res.Code, res.Reason = CodeMalformed, "missing block"
		return res, nil
	}
	h := &blk.Header
	res.Height = h.Height
	v, entries, direct, sigOK, err := a.checkBlock(blk)
	if err != nil {
		return Result{}, err
	}
	if v.failed() {
		res.Code, res.Reason = v.code, v.reason
		a.s.log.Warn("block rejected", "height", h.Height, "proposer", h.Proposer, "code", v.code, "reason", v.reason)
		return res, nil
	}
	if err := a.upgradeTakesEffect(h.Height); err != nil {
		return Result{}, fmt.Errorf("block %d: %w", h.Height, err)
	}
	res.TxIDs = make([]Hash, 0, len(entries)+len(direct))
	for i, e := range entries {
		id, err := a.commitTx(h.Height, uint32(i), e)
		if err != nil {
			return Result{}, fmt.Errorf("block %d tx %d: %w", h.Height, i, err)
		}
		res.TxIDs = append(res.TxIDs, id)
	}
	a.st.pool.Size -= uint64(len(entries))
	// The payments the block carries itself (admitted by the leader's
	// mempool, never replicated on their own) are checked again here,
	// deterministically, on the state they meet: one that does not fit
	// refuses the whole block (Apply discards what was written).
	for j, t := range direct {
		i := len(entries) + j
		v, p, err := a.checkDirect(t, sigOK[j])
		if err != nil {
			return Result{}, fmt.Errorf("block %d tx %d: %w", h.Height, i, err)
		}
		if v.failed() {
			res.TxIDs = nil
			res.Code, res.Reason = CodeBadBlock, fmt.Sprintf("tx %d (%s): %s: %s", i, t.ID(), v.code, v.reason)
			a.s.log.Warn("block rejected", "height", h.Height, "proposer", h.Proposer, "code", res.Code, "tx_code", v.code)
			return res, nil
		}
		id, err := a.commitDirect(h.Height, uint32(i), t, p)
		if err != nil {
			return Result{}, fmt.Errorf("block %d tx %d: %w", h.Height, i, err)
		}
		res.TxIDs = append(res.TxIDs, id)
	}
	if err := a.readinessAfterBlock(h.Height); err != nil {
		return Result{}, err
	}
	if err := a.batch.Set(blockKey(h.Height), blk.Encode(), nil); err != nil {
		return Result{}, err
	}
	a.st.head = headRecord{Height: h.Height, Hash: blk.Hash(), Time: h.Time}
	res.Accepted = true
	a.s.log.Debug("block applied", "height", h.Height, "hash", a.st.head.Hash, "txs", len(entries))
	return res, nil
}

// checkBlock validates a block against the head, the registered nodes and
// the pool. It returns a rejection, or the zero verdict, the pool entries
// the block commits (its leading transactions that are the pool's head, in
// order) and the payments it carries after them, with whether each one's
// signature verifies (checked in parallel here; the payments themselves
// are checked in order, on the state they meet, by block).
func (a *applier) checkBlock(blk *Block) (verdict, []poolEntry, []*Tx, []bool, error) {
	h := &blk.Header
	head := a.st.head
	switch {
	case h.ChainID != a.s.genesis.ChainID:
		return reject(CodeWrongChain, "wrong chain id: got %q, want %q", h.ChainID, a.s.genesis.ChainID), nil, nil, nil, nil
	case h.Height != head.Height+1:
		return reject(CodeBadBlock, "wrong height: got %d, want %d", h.Height, head.Height+1), nil, nil, nil, nil
	case h.PrevHash != head.Hash:
		return reject(CodeBadBlock, "wrong previous hash: got %s, want %s", h.PrevHash, head.Hash), nil, nil, nil, nil
	case a.st.halt != 0 && h.Height > a.st.halt:
		return reject(CodeHalted, "past halt height: block %d, halt at %d", h.Height, a.st.halt), nil, nil, nil, nil
	case h.Time < head.Time:
		return reject(CodeBadBlock, "time goes backwards: %d, previous block %d", h.Time, head.Time), nil, nil, nil, nil
	case int(h.TxCount) > a.s.params.MaxBlockTxs:
		return reject(CodeBadBlock, "%d transactions, more than max_block_txs %d", h.TxCount, a.s.params.MaxBlockTxs), nil, nil, nil, nil
	}
	if reason, err := a.upgradeHaltReason(h.Height); err != nil || reason != "" {
		return verdict{code: CodeHalted, reason: reason}, nil, nil, nil, err
	}
	node, ok, err := a.s.Node(h.Proposer)
	if err != nil {
		return verdict{}, nil, nil, nil, err
	}
	if !ok {
		return reject(CodeBadBlock, "unregistered proposer %d", h.Proposer), nil, nil, nil, nil
	}
	if node.Key != h.ProposerKey {
		return reject(CodeBadBlock, "proposer %d key mismatch: block has %s, registered %s", h.Proposer, h.ProposerKey, node.Key), nil, nil, nil, nil
	}
	if blk.VerifySignature() != nil {
		return reject(CodeBadBlock, "bad proposer signature"), nil, nil, nil, nil
	}
	if sha256.Sum256(blk.Body) != h.BodyHash {
		return reject(CodeBadBlock, "body hash mismatch"), nil, nil, nil, nil
	}
	txs, err := a.s.crypto.openBody(h.ChainID, h.Height, h.PrevHash, blk.Body)
	if err != nil {
		return reject(CodeBadBlock, "body does not open: %v", err), nil, nil, nil, nil
	}
	if len(txs) != int(h.TxCount) {
		return reject(CodeBadBlock, "tx count mismatch: header says %d, body holds %d", h.TxCount, len(txs)), nil, nil, nil, nil
	}
	if len(txs) == 0 {
		return verdict{}, nil, nil, nil, nil
	}
	var entries []poolEntry
	if a.st.pool.Size > 0 {
		if entries, err = a.s.poolHead(a.s.db, len(txs)); err != nil {
			return verdict{}, nil, nil, nil, err
		}
	}
	k := 0
	for k < len(entries) && bytes.Equal(txs[k].Encode(), entries[k].raw) {
		k++
	}
	direct := txs[k:]
	return verdict{}, entries[:k], direct, verifyAll(direct, a.s.verified), nil
}

// verifyAll verifies the signatures of txs, in parallel; those whose ids
// are in verified (this process verified exactly these bytes before) are
// not verified again.
func verifyAll(txs []*Tx, verified *VerifiedSigs) []bool {
	ok := make([]bool, len(txs))
	check := func(i int) {
		ok[i] = (verified != nil && verified.Has(txs[i].ID())) || txs[i].VerifySignature() == nil
	}
	workers := min(runtime.GOMAXPROCS(0), len(txs))
	if workers <= 1 {
		for i := range txs {
			check(i)
		}
		return ok
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(txs); i += workers {
				check(i)
			}
		}()
	}
	wg.Wait()
	return ok
}

// checkDirect checks a payment a block carries (not a pool entry) on the
// state it meets: what the leader's mempool checked at admission, again,
// deterministically. sigOK says whether its signature verified.
func (a *applier) checkDirect(t *Tx, sigOK bool) (verdict, Payment, error) {
	var p Payment
	switch {
	case t.Kind != TxPayment:
		return reject(CodeMalformed, "a %s that is not the pool's next entry (only payments travel in blocks alone)", t.Kind), p, nil
	case t.ChainID != a.s.genesis.ChainID:
		return reject(CodeWrongChain, "wrong chain id %q", t.ChainID), p, nil
	}
	if err := t.checkLimits(); err != nil {
		return reject(CodeMalformed, "oversize: %v", err), p, nil
	}
	if !sigOK {
		return reject(CodeBadSignature, "bad signature"), p, nil
	}
	p, err := DecodePayment(t.Payload)
	if err != nil {
		return reject(CodeMalformed, "bad payload: %v", err), p, nil
	}
	from, err := a.account(t.From)
	if err != nil {
		return verdict{}, p, err
	}
	if from.Pending != 0 {
		return reject(CodeBadNonce, "the sender has %d transactions pending in the pool", from.Pending), p, nil
	}
	if t.Nonce != from.Nonce+1 {
		return reject(CodeBadNonce, "bad nonce: got %d, want %d", t.Nonce, from.Nonce+1), p, nil
	}
	if from.PendingDebit > from.Balance {
		return verdict{}, p, fmt.Errorf("corrupt account %s: pending debits %d exceed the balance %d", t.From, from.PendingDebit, from.Balance)
	}
	if p.Amount > from.Balance-from.PendingDebit {
		return reject(CodeInsufficientFunds, "insufficient funds: amount %d, balance %d", p.Amount, from.Balance-from.PendingDebit), p, nil
	}
	if p.To != t.From {
		to, err := a.account(p.To)
		if err != nil {
			return verdict{}, p, err
		}
		if _, carry := bits.Add64(to.Balance, p.Amount, 0); carry != 0 {
			return reject(CodeMalformed, "the recipient's balance would overflow"), p, nil
		}
	}
	return verdict{}, p, nil
}

// commitDirect executes a payment checkDirect passed.
func (a *applier) commitDirect(height uint64, index uint32, t *Tx, p Payment) (Hash, error) {
	id := t.ID()
	from, err := a.account(t.From)
	if err != nil {
		return id, err
	}
	from.Balance -= p.Amount
	from.Nonce++
	to, err := a.account(p.To)
	if err != nil {
		return id, err
	}
	to.Balance += p.Amount
	if a.s.schema >= schemaAccountHistory {
		if err := a.indexPayment(height, index, id, t.From, p); err != nil {
			return id, err
		}
	}
	return id, a.setStatus(id, TxStatus{State: StateCommitted, Height: height, Code: CodeOK})
}

// commitTx executes a pool transaction included in the block at height.
// Admission guaranteed that it is valid on the state it meets (its nonce is
// next, its amount was reserved), so any failure here is corruption.
func (a *applier) commitTx(height uint64, index uint32, e poolEntry) (Hash, error) {
	t := e.tx
	id := t.ID()
	status := TxStatus{State: StateCommitted, Height: height, Code: CodeOK}
	switch t.Kind {
	case TxPayment:
		p, err := DecodePayment(t.Payload)
		if err != nil {
			return id, fmt.Errorf("corrupt pool entry %x: %w", e.key, err)
		}
		from, err := a.account(t.From)
		if err != nil {
			return id, err
		}
		if from.Nonce+1 != t.Nonce || from.Pending == 0 || from.PendingDebit < p.Amount || from.Balance < p.Amount {
			return id, fmt.Errorf("corrupt ledger: pool tx %s (nonce %d, amount %d) does not fit account %s %+v", id, t.Nonce, p.Amount, t.From, *from)
		}
		from.Balance -= p.Amount
		from.PendingDebit -= p.Amount
		from.Pending--
		from.Nonce++
		to, err := a.account(p.To)
		if err != nil {
			return id, err
		}
		var carry uint64
		if to.Balance, carry = bits.Add64(to.Balance, p.Amount, 0); carry != 0 {
			return id, fmt.Errorf("corrupt ledger: balance of %s overflows", p.To)
		}
		if a.s.schema >= schemaAccountHistory {
			if err := a.indexPayment(height, index, id, t.From, p); err != nil {
				return id, err
			}
		}
	case TxProposeRelease, TxApproveRelease, TxScheduleUpgrade, TxAbortUpgrade, TxApproveRollback,
		TxAddNode, TxRemoveNode, TxRekeyNode, TxChangeGroup, TxReadiness, TxUpgradeFailure:
		// A governance transaction that lost a race since its admission is
		// committed without effect; its status says why.
		note, err := a.commitGovernance(height, t)
		if err != nil {
			return id, err
		}
		if note != "" {
			status.Code, status.Reason = CodeNoEffect, note
		}
	default:
		return id, fmt.Errorf("corrupt pool entry %x: %s", e.key, t.Kind)
	}
	if err := a.setStatus(id, status); err != nil {
		return id, err
	}
	return id, a.batch.Delete(e.key, nil)
}

// indexPayment adds a payment to the account history of both parties.
func (a *applier) indexPayment(height uint64, index uint32, id Hash, from Address, p Payment) error {
	return writeHistory(a.s.rest, a.batch, HistoryEntry{Height: height, Index: index, TxID: id, From: from, To: p.To, Amount: p.Amount})
}

// registerNode records a node's key and measurement.
func (a *applier) registerNode(n *NodeRecord) (Result, error) {
	res := Result{Kind: CmdRegisterNode}
	refuse := func(c Code, format string, args ...any) (Result, error) {
		res.Code, res.Reason = c, fmt.Sprintf(format, args...)
		a.s.log.Warn("node registration rejected", "code", c, "reason", res.Reason)
		return res, nil
	}
	switch {
	case n == nil:
		return refuse(CodeMalformed, "missing node")
	case n.Key.IsZero():
		return refuse(CodeMalformed, "node %d: zero key", n.ID)
	}
	m, ok, err := a.member(n.ID)
	if err != nil {
		return Result{}, err
	}
	if !ok || !m.Active() {
		return refuse(CodeNotMember, "node %d is not a member", n.ID)
	}
	nodes, err := a.s.Nodes()
	if err != nil {
		return Result{}, err
	}
	for _, o := range nodes {
		if o.ID == n.ID && o.Key != n.Key {
			return refuse(CodeKeyConflict, "node %d is registered with another key (%s); a new key takes its operator's re-key", n.ID, o.Key)
		}
		if o.ID != n.ID && o.Key == n.Key {
			return refuse(CodeKeyConflict, "key %s is already registered for node %d", n.Key, o.ID)
		}
	}
	if !m.NodeKey.IsZero() && m.NodeKey != n.Key {
		return refuse(CodeKeyConflict, "node %d must register with key %s, not %s", n.ID, m.NodeKey, n.Key)
	}
	if err := a.batch.Set(nodeKey(n.ID), encodeNode(*n), nil); err != nil {
		return Result{}, err
	}
	if err := a.batch.Set(nodeKeyHistoryKey(n.ID, n.Key), u64(a.st.head.Height), nil); err != nil {
		return Result{}, err
	}
	a.s.log.Info("node registered", "id", n.ID, "key", n.Key, "measurement", n.Measurement)
	res.Accepted = true
	return res, nil
}

// fitBody returns the longest prefix of entries whose sealed body fits in
// MaxBodySize (governance transactions are large enough that
// max_block_txs of them would not).
func fitBody(entries []poolEntry) []poolEntry {
	size := 4 + gcmOverhead
	for i, e := range entries {
		size += 4 + len(e.raw)
		if size > MaxBodySize {
			return entries[:i]
		}
	}
	return entries
}

// Dropped is a payment BuildBlockWith left out of its block because it
// is not valid on the state the block applies to: the leader's mempool
// forgets it and tells its submitter why.
type Dropped struct {
	ID     Hash
	Code   Code
	Reason string
}

// BuildBlock builds the next block on the current head from the pool
// alone: BuildBlockWith without payments.
func (s *Store) BuildBlock(proposer uint64, key ed25519.PrivateKey, now time.Time, maxTxs int) (*Block, error) {
	blk, _, err := s.BuildBlockWith(proposer, key, now, maxTxs, nil)
	return blk, err
}

// BuildBlockWith builds the next block on the current head: the first maxTxs
// pool transactions (maxTxs ≤ 0 or above the genesis max_block_txs means
// max_block_txs; none in the pool gives an empty heartbeat block), sealed
// and signed by key as proposer. It refuses with ErrHalted when the next
// height passes the halt height, or the activation height of a scheduled
// upgrade to another node MRENCLAVE than this store's SelfMeasurement, and
// refuses a proposer whose key is not the one registered for it, since
// Apply would reject its block. Transactions that would make the body
// exceed MaxBodySize wait for the next block.
//
// After the pool's transactions come payments, in their order, as long as
// the block has room: each is checked (as Apply will check it) on the state
// the block's earlier transactions leave, and one that does not fit is
// left out and returned as Dropped. payments are the leader's mempool's:
// their signatures were verified at admission and are not verified again
// here (Apply does verify them).
func (s *Store) BuildBlockWith(proposer uint64, key ed25519.PrivateKey, now time.Time, maxTxs int, payments []*Tx) (*Block, []Dropped, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	st := s.state()
	next := st.head.Height + 1
	if s.crypto == nil {
		return nil, nil, fmt.Errorf("build block %d: %w", next, ErrNoLedgerKey)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, nil, fmt.Errorf("build block %d: private key has %d bytes, want %d", next, len(key), ed25519.PrivateKeySize)
	}
	if st.halt != 0 && next > st.halt {
		return nil, nil, fmt.Errorf("build block %d: %w at height %d", next, ErrHalted, st.halt)
	}
	gov, err := readGovState(s.db)
	if err != nil {
		return nil, nil, fmt.Errorf("build block %d: %w", next, err)
	}
	if reason := upgradeHaltReason(gov.schedule, s.self, next); reason != "" {
		return nil, nil, fmt.Errorf("build block %d: %w: %s", next, ErrHalted, reason)
	}
	pub, err := AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, nil, fmt.Errorf("build block %d: %w", next, err)
	}
	node, ok, err := s.Node(proposer)
	if err != nil {
		return nil, nil, fmt.Errorf("build block %d: %w", next, err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("build block %d: proposer %d %w", next, proposer, ErrProposerNotRegistered)
	}
	if node.Key != pub {
		return nil, nil, fmt.Errorf("build block %d: proposer %d is registered with key %s, not %s", next, proposer, node.Key, pub)
	}
	if maxTxs <= 0 || maxTxs > s.params.MaxBlockTxs {
		maxTxs = s.params.MaxBlockTxs
	}
	entries, err := s.poolHead(s.db, maxTxs)
	if err != nil {
		return nil, nil, fmt.Errorf("build block %d: %w", next, err)
	}
	entries = fitBody(entries)
	txs := make([]*Tx, len(entries), len(entries)+min(len(payments), maxTxs-len(entries)))
	for i, e := range entries {
		txs[i] = e.tx
	}
	var dropped []Dropped
	if len(payments) > 0 && len(txs) < maxTxs {
		if txs, dropped, err = s.addPayments(st, entries, txs, payments, maxTxs); err != nil {
			return nil, nil, fmt.Errorf("build block %d: %w", next, err)
		}
	}
	body, err := s.crypto.sealBody(s.genesis.ChainID, next, st.head.Hash, txs)
	if err != nil {
		return nil, nil, fmt.Errorf("build block %d: %w", next, err)
	}
	blk := &Block{
		Header: BlockHeader{
			ChainID:     s.genesis.ChainID,
			Height:      next,
			PrevHash:    st.head.Hash,
			Time:        max(now.UnixNano(), st.head.Time),
			BodyHash:    sha256.Sum256(body),
			TxCount:     uint32(len(txs)),
			Proposer:    proposer,
			ProposerKey: pub,
		},
		Body: body,
	}
	copy(blk.Sig[:], ed25519.Sign(key, blk.Header.SigningBytes()))
	return blk, dropped, nil
}

// addPayments appends to txs (the block's pool entries) the payments that
// are valid, in order, on the state the entries leave, while the block has
// room; it returns the payments it found invalid.
func (s *Store) addPayments(st chainState, entries []poolEntry, txs, payments []*Tx, maxTxs int) ([]*Tx, []Dropped, error) {
	a := &applier{s: s, st: st, accounts: make(map[Address]*Account)}
	// The pool entries' effect on accounts, as commitTx and
	// commitGovernance will have it.
	for _, e := range entries {
		from, err := a.account(e.tx.From)
		if err != nil {
			return nil, nil, err
		}
		from.Pending--
		from.Nonce++
		if e.tx.Kind != TxPayment {
			continue
		}
		p, err := DecodePayment(e.tx.Payload)
		if err != nil {
			return nil, nil, fmt.Errorf("corrupt pool entry %x: %w", e.key, err)
		}
		from.Balance -= p.Amount
		from.PendingDebit -= p.Amount
		to, err := a.account(p.To)
		if err != nil {
			return nil, nil, err
		}
		to.Balance += p.Amount
	}
	size := 4 + gcmOverhead
	for _, e := range entries {
		size += 4 + len(e.raw)
	}
	var dropped []Dropped
	for _, t := range payments {
		if len(txs) >= maxTxs {
			break
		}
		raw := t.Encode()
		if size+4+len(raw) > MaxBodySize {
			break
		}
		v, p, err := a.checkDirect(t, true)
		if err != nil {
			return nil, nil, err
		}
		if v.failed() {
			dropped = append(dropped, Dropped{ID: t.ID(), Code: v.code, Reason: v.reason})
			continue
		}
		from, _ := a.account(t.From)
		from.Balance -= p.Amount
		from.Nonce++
		to, err := a.account(p.To)
		if err != nil {
			return nil, nil, err
		}
		to.Balance += p.Amount
		size += 4 + len(raw)
		txs = append(txs, t)
	}
	return txs, dropped, nil
}
