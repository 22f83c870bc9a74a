package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/teeup/teeup/consensus"
	"github.com/teeup/teeup/nodeapi"
)

// Thresholds of "current": a node may trail the network by a block in
// flight, and its applied index its commit index by a few entries.
const (
	maxBehindBlocks  = 2
	maxApplyBacklog  = 64
	peerStatusMaxAge = 3 * time.Second
	syncInterval     = 200 * time.Millisecond
)

// syncView is a node's position relative to the network.
type syncView struct{ nodeapi.Sync }

// serving reports whether the node may serve clients, propose blocks and
// lead: it is current.
func (v syncView) serving() bool { return v.State == nodeapi.SyncCurrent }

// syncTracker decides, from raft, the ledger and the peers' status
// records, whether this node is current, catching up or diverged. A node
// that is not current keeps client ingress closed ("node is catching up:
// height X of Y"), proposes no block and hands leadership away.
type syncTracker struct {
	n *Node

	mu         sync.Mutex
	view       syncView
	divergedAt uint64
	divergedBy uint64
	removedAt  uint64
	checked    map[uint64]time.Time // peer → status time already checked for a fork
	at         time.Time            // when view was computed
	updating   sync.Mutex           // one update at a time
}

func newSyncTracker(n *Node) *syncTracker {
	t := &syncTracker{n: n, checked: map[uint64]time.Time{}}
	t.view = syncView{nodeapi.Sync{State: nodeapi.SyncCatchingUp, CatchingUp: true, Reason: "starting"}}
	return t
}

// current returns the node's view, recomputed if it is older than
// freshView: a decision to serve is never taken on a stale view.
func (t *syncTracker) current() syncView {
	t.mu.Lock()
	fresh := time.Since(t.at) < freshView
	v := t.view
	t.mu.Unlock()
	if fresh {
		return v
	}
	t.update()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.view
}

// freshView is how long a computed view is reused.
const freshView = 25 * time.Millisecond

func (t *syncTracker) run(ctx context.Context) {
	tick := time.NewTicker(syncInterval)
	defer tick.Stop()
	for {
		t.update()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// update recomputes the view and logs changes of state.
func (t *syncTracker) update() {
	t.updating.Lock()
	defer t.updating.Unlock()
	n := t.n
	st, r := n.store, n.raft
	height, _ := st.Head()
	applied := st.AppliedIndex()
	v := nodeapi.Sync{
		NetworkHeight: height, CommitIndex: r.CommitIndex(), LastIndex: r.LastIndex(), FirstIndex: r.FirstIndex(),
	}
	if cur, ok, last := n.snaps.Receiving(); ok || last.From != 0 {
		if ok {
			v.Transfer = toTransfer(cur)
		}
		if last.From != 0 {
			v.LastTransfer = toTransfer(last)
		}
	}
	leader := r.Leader()
	t.checkForks(height, leader)
	for _, p := range n.tr.Peers() {
		if time.Since(p.StatusAt) > peerStatusMaxAge || p.Status.CatchingUp {
			continue
		}
		if p.Status.Height > v.NetworkHeight {
			v.NetworkHeight = p.Status.Height
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	v = classifySync(v, syncFacts{height: height, applied: applied, leader: leader,
		removedAt: t.removedAt, divergedAt: t.divergedAt, divergedBy: t.divergedBy})
	if v.State != t.view.State {
		switch v.State {
		case nodeapi.SyncDiverged:
			n.log.Error("node diverged from the network", "height", v.DivergedAt, "reason", v.Reason)
		case nodeapi.SyncRemoved:
		case nodeapi.SyncCatchingUp:
			n.log.Warn("node is not current", "reason", v.Reason, "height", height, "network_height", v.NetworkHeight)
		default:
			n.log.Info("node is current", "height", height)
		}
	}
	t.view, t.at = syncView{v}, time.Now()
}

// checkForks compares this node's blocks with the heights and hashes its
// peers report (each status once) and marks the node diverged if
// findFork says so.
func (t *syncTracker) checkForks(height, leader uint64) {
	n := t.n
	peers := n.tr.Peers()
	var reports []forkReport
	for _, p := range peers {
		if time.Since(p.StatusAt) > peerStatusMaxAge || p.Status.Height == 0 || p.Status.Height > height {
			continue
		}
		t.mu.Lock()
		seen := t.checked[p.ID].Equal(p.StatusAt)
		t.checked[p.ID] = p.StatusAt
		t.mu.Unlock()
		if seen {
			continue
		}
		blk, err := n.store.Block(p.Status.Height)
		if err != nil {
			continue
		}
		reports = append(reports, forkReport{Peer: p.ID, Height: p.Status.Height, Theirs: p.Status.Hash, Ours: blk.Hash()})
	}
	if at, by, ok := findFork(n.cfg.NodeID, leader, len(peers), reports); ok {
		t.markDiverged(at, by)
	}
}

// forkReport is a peer's block hash at a height this node has, beside
// this node's.
type forkReport struct {
	Peer, Height uint64
	Theirs, Ours [32]byte
}

// findFork decides whether this node (self) has diverged, from reports of
// its peers (of peers in all): a follower whose block at some height
// differs from the leader's, or a leader whose blocks differ from those of
// more peers than agree and of a majority with it, is the odd one out. It
// returns the height of the fork and the peer whose block differs there
// (the lowest such height).
func findFork(self, leader uint64, peers int, reports []forkReport) (at, by uint64, diverged bool) {
	disagree, agree := 0, 0
	for _, r := range reports {
		if r.Theirs == r.Ours {
			agree++
			continue
		}
		disagree++
		if at == 0 || r.Height < at {
			at, by = r.Height, r.Peer
		}
		if r.Peer == leader && leader != self {
			return r.Height, r.Peer, true
		}
	}
	if leader == self && disagree > 0 && disagree > agree && disagree+1 > peers/2 {
		return at, by, true
	}
	return 0, 0, false
}

func (t *syncTracker) markRemoved(height uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removedAt = max(height, 1)
}

func (t *syncTracker) markDiverged(height, peer uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.divergedAt == 0 || height < t.divergedAt {
		t.divergedAt, t.divergedBy = height, peer
	}
}

// syncFacts are what, besides the network's height, raft's commit index
// and a state transfer under way, decides a node's sync state.
type syncFacts struct {
	height, applied, leader           uint64 // this node's head and applied index, the leader known
	removedAt, divergedAt, divergedBy uint64 // markRemoved's and markDiverged's findings
}

// classifySync completes v (NetworkHeight, CommitIndex and Transfer set)
// with the state, the reason and how far behind the node is: removed,
// diverged, catching up (receiving a state transfer, no leader, applying a
// backlog, or more than maxBehindBlocks behind), or current.
func classifySync(v nodeapi.Sync, f syncFacts) nodeapi.Sync {
	height := f.height
	v.BehindBy = v.NetworkHeight - height
	switch {
	case f.removedAt > 0:
		v.State = nodeapi.SyncRemoved
		v.Reason = fmt.Sprintf("this node was removed from the network at height %d", f.removedAt)
	case f.divergedAt > 0:
		v.State, v.DivergedAt = nodeapi.SyncDiverged, f.divergedAt
		v.Reason = fmt.Sprintf("diverged at height %d: this node's block differs from node %d's; it serves nothing and must be re-synced (wipe its data dir and let it rejoin)", f.divergedAt, f.divergedBy)
	case v.Transfer != nil:
		v.State = nodeapi.SyncCatchingUp
		v.Reason = fmt.Sprintf("node is catching up: receiving the ledger state from node %d (%d of %d bytes)", v.Transfer.From, v.Transfer.DoneBytes, v.Transfer.TotalBytes)
	case f.leader == 0:
		v.State = nodeapi.SyncCatchingUp
		v.Reason = "node is catching up: no leader known (not connected to a quorum of members)"
	case v.CommitIndex > f.applied+maxApplyBacklog:
		v.State = nodeapi.SyncCatchingUp
		v.Reason = fmt.Sprintf("node is catching up: height %d of %d (applying raft entries: %d of %d)", height, v.NetworkHeight, f.applied, v.CommitIndex)
	case v.BehindBy > maxBehindBlocks:
		v.State = nodeapi.SyncCatchingUp
		v.Reason = fmt.Sprintf("node is catching up: height %d of %d", height, v.NetworkHeight)
	default:
		v.State = nodeapi.SyncCurrent
	}
	v.CatchingUp = v.State == nodeapi.SyncCatchingUp
	return v
}

func toTransfer(r consensus.Receiving) *nodeapi.StateTransfer {
	return &nodeapi.StateTransfer{From: r.From, Index: r.Index, DoneBytes: r.Done, TotalBytes: r.Total,
		Started: r.Started, Result: r.Result, Error: r.Error}
}
