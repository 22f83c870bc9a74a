package node

import (
	"context"
	"crypto/ed25519"
	"errors"
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
}

func newProducer(n *Node) *producer {
	iv := time.Duration(n.store.Params().BlockInterval)
	if iv <= 0 {
		iv = 500 * time.Millisecond
	}
	return &producer{n: n, interval: iv, emptyEvery: 2 * iv}
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
		return nil
	}
	head, _ := n.store.Head()
	if p.inflight > head && time.Since(p.inflightAt) < 10*p.interval {
		return nil // the previous block is not applied yet
	}
	// One read of the governance state per tick serves both checks.
	upgradeHeight, upgrading := n.upgradeHaltHeight()
	if n.haltedBy(head, upgradeHeight, upgrading) {
		return nil
	}
	// Empty blocks come at a slower pace, except on the way to a scheduled
	// upgrade's activation height: ingress is closed then, and every block
	// interval spent short of H is client downtime.
	if n.store.PoolSize() == 0 && !upgrading && time.Since(p.lastBlock) < p.emptyEvery {
		return nil
	}
	k := n.keys.Load()
	blk, err := n.store.BuildBlock(n.cfg.NodeID, k.NodeKey, time.Now(), 0)
	if errors.Is(err, ledger.ErrHalted) {
		return nil
	}
	if err != nil {
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

// compactor, on the leader, proposes compacting the raft log up to the
// highest index every node has stored. Raft thus never needs to send a
// snapshot to a follower, and the log kept in memory and on disk stays
// bounded — unless a node stays down, which holds compaction back until it
// returns and catches up from the log.
func (n *Node) compactor(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		min, ok := n.raft.MinMatch()
		if !ok || min < n.raft.FirstIndex()+n.cfg.RaftCompactEvery {
			continue
		}
		k := n.keys.Load()
		data, err := ledger.SealEntry(k.LedgerKey, n.genesis.ChainID, &ledger.Command{Kind: ledger.CmdCompact, CompactIndex: min})
		if err != nil {
			n.log.Error("compact", "err", err)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := n.raft.Propose(pctx, data); err != nil {
			n.log.Debug("propose compaction", "err", err)
		}
		cancel()
	}
}
