package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teeup/teeup/ledger"
)

// producer builds blocks while this node leads: whenever transactions
// wait in the pool, and an empty block every few intervals so that heights
// advance (an operator watching a live period sees progress). Only one
// block is in flight at a time: the next one is built on the applied head.
type producer struct {
	n          *Node
	interval   time.Duration
	emptyEvery time.Duration

	inflight   uint64
	inflightAt time.Time
	lastBlock  time.Time

	// failures counts this leader's blocks in a row that were rejected,
	// could not be built, or never got applied; at maxLeaderFailures it
	// hands leadership away rather than stall the network.
	failures atomic.Int32
	started  time.Time
	// mu guards lastTransfer: stepDown runs on the producer's goroutine
	// and, through applied, on raft's.
	mu           sync.Mutex
	lastTransfer time.Time
	lead         leadership // nil: the node's raft
}

// maxLeaderFailures is how many failed blocks in a row make a leader step
// down.
const maxLeaderFailures = 3

// registrationGrace is how long after start a leader waits for its own
// registration before counting "not registered" as a failure.
const registrationGrace = 15 * time.Second

func newProducer(n *Node) *producer {
	iv := time.Duration(n.store.Params().BlockInterval)
	if iv <= 0 {
		iv = 500 * time.Millisecond
	}
	return &producer{n: n, interval: iv, emptyEvery: 2 * iv, started: time.Now()}
}

func (p *producer) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := p.tick(ctx); err != nil && ctx.Err() == nil {
			p.n.log.Debug("block production", "err", err)
		}
	}
}

func (p *producer) tick(ctx context.Context) error {
	n := p.n
	if !n.raft.IsLeader() {
		p.inflight = 0
		p.failures.Store(0)
		// The mempool is the leader's: a follower's is empty. Payments
		// that waited in it are lost with the leadership; their submitters
		// hand them to the new leader (submitPayment).
		n.mempool.mu.Lock()
		lost := n.mempool.clear()
		n.mempool.mu.Unlock()
		if len(lost) > 0 {
			n.log.Info("leadership lost: mempool payments dropped (their submitters re-submit them to the new leader)", "payments", len(lost))
		}
		return nil
	}
	if v := n.sync.current(); !v.serving() {
		// A leader that is not current would build on a stale head: every
		// block it proposed would be rejected and the network would stall.
		p.stepDown(ctx, "this node is not current: "+v.Reason)
		return nil
	}
	if n.raft.AppliedIndex() < n.raft.CommitIndex() {
		return nil // build on the newest committed head only
	}
	head, _ := n.store.Head()
	if p.inflight > head {
		if time.Since(p.inflightAt) < 10*p.interval {
			return nil // the previous block is not applied yet
		}
		why := fmt.Sprintf("block %d was proposed %s ago and never applied", p.inflight, time.Since(p.inflightAt).Round(time.Millisecond))
		p.inflight = 0
		p.failed(ctx, why)
	}
	// One read of the governance state per tick serves both checks.
	upgradeHeight, upgrading := n.upgradeHaltHeight()
	if n.haltedBy(head, upgradeHeight, upgrading) {
		return nil
	}
	// Empty blocks come at a slower pace, except on the way to a scheduled
	// upgrade's activation height: ingress is closed then, and every block
	// interval spent short of H is client downtime.
	n.mempool.mu.Lock()
	payments := n.mempool.candidates(n.store.Params().MaxBlockTxs)
	n.mempool.mu.Unlock()
	if n.store.PoolSize() == 0 && len(payments) == 0 && !upgrading && time.Since(p.lastBlock) < p.emptyEvery {
		return nil
	}
	payments, injected := withInjectedPayment(n.faults, payments)
	if injected != nil {
		n.log.Warn("FAULT INJECTION: proposing a payment whose signature does not verify", "tx", injected.ID().String())
	}
	k := n.keys.Load()
	blk, dropped, err := n.store.BuildBlockWith(n.cfg.NodeID, k.NodeKey, time.Now(), 0, payments)
	if len(dropped) > 0 {
		p.drop(dropped)
	}
	if errors.Is(err, ledger.ErrHalted) {
		return nil
	}
	if errors.Is(err, ledger.ErrProposerNotRegistered) && time.Since(p.started) < registrationGrace {
		return nil // its registration is on its way (a fresh network, a re-keyed node)
	}
	if err != nil {
		p.failed(ctx, "cannot build a block: "+err.Error())
		return err
	}
	data, err := ledger.SealEntry(k.LedgerKey, n.genesis.ChainID, &ledger.Command{Kind: ledger.CmdBlock, Block: blk})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, p.interval)
	defer cancel()
	if err := n.raft.Propose(pctx, data); err != nil {
		return err
	}
	p.inflight, p.inflightAt, p.lastBlock = blk.Header.Height, time.Now(), time.Now()
	return nil
}

// drop forgets mempool payments that are no longer valid on the state the
// next block applies to (an earlier payment of the sender was dropped, a
// governance transaction used the nonce, …) and tells their submitters.
func (p *producer) drop(dropped []ledger.Dropped) {
	n := p.n
	ids := make([]ledger.Hash, len(dropped))
	for i, d := range dropped {
		ids[i] = d.ID
	}
	n.mempool.mu.Lock()
	n.mempool.remove(ids)
	n.mempool.mu.Unlock()
	for _, d := range dropped {
		n.recent.put(d.ID, ledger.TxStatus{State: ledger.StateRejected, Code: d.Code, Reason: d.Reason})
		n.waiters.deliver(d.ID, txOutcome{code: d.Code, reason: d.Reason})
	}
	n.log.Debug("mempool payments dropped: no longer valid", "payments", len(dropped))
}

// applied is told the outcome of every block applied: a rejected block
// this node proposed counts as a failure of its leadership.
func (p *producer) applied(ctx context.Context, proposer uint64, accepted bool, height uint64, reason string) {
	if proposer != p.n.cfg.NodeID {
		return
	}
	if accepted {
		p.failures.Store(0)
		return
	}
	p.failed(ctx, fmt.Sprintf("the network rejected this node's block %d: %s", height, reason))
}

// failed counts a failure; at maxLeaderFailures in a row the leader steps
// down.
func (p *producer) failed(ctx context.Context, why string) {
	if !p.countFailure() {
		p.n.log.Warn("block production failed", "reason", why)
		return
	}
	p.stepDown(ctx, fmt.Sprintf("%d blocks in a row failed, the last: %s", maxLeaderFailures, why))
}

// countFailure counts one failed block and reports whether it is the
// maxLeaderFailures-th in a row: then the count starts over and the leader
// must step down.
func (p *producer) countFailure() bool {
	if p.failures.Add(1) < maxLeaderFailures {
		return false
	}
	p.failures.Store(0)
	return true
}

// leadership is what stepDown needs of raft; nil in a producer means the
// node's raft (tests set a fake).
type leadership interface {
	IsLeader() bool
	TransferLeadership(ctx context.Context, reason string, exclude ...uint64) (uint64, error)
}

func (p *producer) leadership() leadership {
	if p.lead != nil {
		return p.lead
	}
	return p.n.raft
}

// transferInterval is the least time between two leadership transfers of
// one leader: about an election timeout.
const transferInterval = 2 * time.Second

// stepDown hands leadership to the most up-to-date other voter, at most
// once per election timeout.
func (p *producer) stepDown(ctx context.Context, why string) {
	n, lead := p.n, p.leadership()
	p.mu.Lock()
	if !lead.IsLeader() || time.Since(p.lastTransfer) < transferInterval {
		p.mu.Unlock()
		return
	}
	p.lastTransfer = time.Now()
	p.mu.Unlock()
	n.log.Error("leader stepping down", "reason", why)
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := lead.TransferLeadership(tctx, why); err != nil {
		n.log.Error("leader cannot step down", "err", err)
	}
}

// haltedAt reports whether no block may follow head: an operator halt at
// head, or a scheduled upgrade this binary does not run (see governance.go).
func (n *Node) haltedAt(head uint64) bool {
	h, ok := n.upgradeHaltHeight()
	return n.haltedBy(head, h, ok)
}

// haltedBy is haltedAt with the upgrade halt height already read.
func (n *Node) haltedBy(head, upgradeHeight uint64, upgrading bool) bool {
	if h := n.store.HaltHeight(); h > 0 && head >= h {
		return true
	}
	return upgrading && head >= upgradeHeight
}

// ensureRegistered records this node's identity key and MRENCLAVE on chain
// (blocks are accepted only from registered proposers) and re-registers
// after an upgrade changed the MRENCLAVE.
func (n *Node) ensureRegistered(ctx context.Context) {
	k := n.keys.Load()
	addr, err := ledger.AddressOf(k.NodeKey.Public().(ed25519.PublicKey))
	if err != nil {
		n.log.Error("register node", "err", err)
		return
	}
	want := ledger.NodeRecord{ID: n.cfg.NodeID, Key: addr, Measurement: n.identity.UniqueID}
	registered := func() bool {
		rec, ok, err := n.store.Node(n.cfg.NodeID)
		return err == nil && ok && rec.Key == want.Key && rec.Measurement == want.Measurement
	}
	for !registered() {
		data, err := ledger.SealEntry(k.LedgerKey, n.genesis.ChainID, &ledger.Command{Kind: ledger.CmdRegisterNode, Node: &want})
		if err != nil {
			n.log.Error("register node", "err", err)
			return
		}
		if n.raft.Leader() != 0 {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := n.raft.Propose(pctx, data); err != nil {
				n.log.Debug("register node", "err", err)
			}
			cancel()
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = n.waitUntil(wctx, registered)
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
	n.log.Info("node registered on chain", "key", want.Key.String()[:12], "mrenclave", want.Measurement.Short())
}
