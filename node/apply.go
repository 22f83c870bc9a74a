package node

import (
	"context"
	"fmt"
	"sync"

	"github.com/teeup/teeup/ledger"
)

// apply is the consensus Applier: it decrypts a committed entry, applies
// it to the ledger and wakes whoever waits on its outcome.
func (n *Node) apply(index uint64, data []byte) error {
	k := n.keys.Load()
	cmd, err := ledger.OpenEntry(k.LedgerKey, n.genesis.ChainID, data)
	if err != nil {
		// Every node holds the same key, so an entry that does not open
		// here opens nowhere: skip it deterministically.
		n.log.Warn("skipping an undecryptable raft entry", "index", index, "err", err)
		if _, err := n.store.Apply(index, nil); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		n.applied.broadcast()
		return nil
	}
	// The mempool's admissions read the state and the waiting payments
	// under its lock: a block's commit and the removal of its payments
	// from the mempool are one step for them.
	n.mempool.mu.Lock()
	res, err := n.store.Apply(index, cmd)
	if err == nil && res.Kind == ledger.CmdBlock && res.Accepted {
		n.mempool.remove(res.TxIDs)
	}
	n.mempool.mu.Unlock()
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if cmd.Kind == ledger.CmdBlock && cmd.Block != nil && !res.Duplicate {
		if !res.Accepted {
			// Every node refuses the same block (apply is deterministic):
			// its proposer is faulty, or lost the race for the height.
			n.refusedBlocks.Add(1)
			n.log.Warn("block refused", "index", index, "height", cmd.Block.Header.Height,
				"proposer", cmd.Block.Header.Proposer, "code", string(res.Code), "reason", res.Reason)
		}
		if n.producer != nil {
			n.producer.applied(context.Background(), cmd.Block.Header.Proposer, res.Accepted, cmd.Block.Header.Height, res.Reason)
		}
	}
	// CmdCompact entries of older logs are no-ops: each node compacts its
	// own raft log, and peers too far behind receive a state snapshot.
	n.waiters.notify(res)
	n.applied.broadcast()
	n.afterApply(res)
	return nil
}

// afterApply reacts to applied state: the upgrade schedule may close
// ingress, and the flag-day rule reopen it (a readiness quorum commits in
// a block, an abort takes effect at admission).
func (n *Node) afterApply(res ledger.Result) {
	if res.Kind == ledger.CmdBlock && res.Accepted {
		n.checkUpgradeIngress()
	}
	if res.Accepted && (res.Kind == ledger.CmdBlock || res.Kind == ledger.CmdSubmitTx) {
		n.checkFlagDayIngress()
	}
}

// notifier wakes goroutines whenever an entry is applied.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (nt *notifier) broadcast() {
	nt.mu.Lock()
	close(nt.ch)
	nt.ch = make(chan struct{})
	nt.mu.Unlock()
}

func (nt *notifier) wait() <-chan struct{} {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	return nt.ch
}

// waitUntil blocks until cond holds (checked after every applied entry)
// or ctx ends.
func (n *Node) waitUntil(ctx context.Context, cond func() bool) error {
	for {
		ch := n.applied.wait()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// txOutcome is what a submitter learns about its transaction: committed
// at height, or rejected with code and reason.
type txOutcome struct {
	committed bool
	height    uint64
	code      ledger.Code
	reason    string
}

// waiters routes transaction outcomes to the requests waiting for them.
type waiters struct {
	mu sync.Mutex
	m  map[ledger.Hash][]chan txOutcome
}

func newWaiters() *waiters { return &waiters{m: map[ledger.Hash][]chan txOutcome{}} }

func (w *waiters) add(id ledger.Hash) chan txOutcome {
	ch := make(chan txOutcome, 1)
	w.mu.Lock()
	w.m[id] = append(w.m[id], ch)
	w.mu.Unlock()
	return ch
}

func (w *waiters) remove(id ledger.Hash, ch chan txOutcome) {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.m[id]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(w.m, id)
	} else {
		w.m[id] = list
	}
}

func (w *waiters) deliver(id ledger.Hash, o txOutcome) {
	w.mu.Lock()
	list := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	for _, ch := range list {
		ch <- o
	}
}

func (w *waiters) notify(res ledger.Result) {
	switch res.Kind {
	case ledger.CmdSubmitTx:
		if res.Accepted || res.Duplicate {
			return // admitted: wait for its block
		}
		switch res.Code {
		case ledger.CodeAlreadyPending:
			return // a re-proposal of an admitted transaction
		case ledger.CodeAlreadyCommitted:
			w.deliver(res.TxID, txOutcome{committed: true, height: res.Height})
			return
		}
		w.deliver(res.TxID, txOutcome{code: res.Code, reason: res.Reason})
	case ledger.CmdBlock:
		if !res.Accepted {
			return
		}
		for _, id := range res.TxIDs {
			w.deliver(id, txOutcome{committed: true, height: res.Height})
		}
	}
}
