package node

import (
	"context"
	"maps"
	"slices"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/teeup/teeup/ledger"
)

// followMembership keeps the node in line with the members on chain:
// the transport's peers are the active members (a removed node's
// connections are dropped and refused), and the leader proposes the raft
// configuration changes that make the voters the active members, one at a
// time. A node that finds itself removed stops serving.
func (n *Node) followMembership(ctx context.Context) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	var peers map[uint64]string
	var keys map[uint64]ledger.Address
	var lastProposal time.Time
	removedLogged := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		members, err := n.store.Members()
		if err != nil {
			n.log.Error("read members", "err", err)
			continue
		}
		addrs := map[uint64]string{}
		active := map[uint64]bool{}
		for _, m := range members {
			if m.Active() {
				active[m.ID] = true
				if m.ID != n.cfg.NodeID {
					addrs[m.ID] = m.PeerAddr
				}
			} else if m.ID == n.cfg.NodeID && !removedLogged {
				n.log.Error("this node was removed from the network by governance: it serves nothing any more", "height", m.RemovedAt)
				n.sync.markRemoved(m.RemovedAt)
				removedLogged = true
			}
		}
		registered := map[uint64]ledger.Address{}
		if nodes, err := n.store.Nodes(); err == nil {
			for _, rec := range nodes {
				registered[rec.ID] = rec.Key
			}
		}
		changed := !maps.Equal(addrs, peers) || !maps.Equal(registered, keys)
		if !maps.Equal(addrs, peers) {
			n.tr.SetPeers(addrs)
			peers = addrs
		}
		if changed {
			// A member removed or re-keyed loses its established
			// connections now, not at its next hello.
			n.tr.Reauthorize()
			keys = registered
		}
		if !n.raft.IsLeader() || time.Since(lastProposal) < 2*time.Second {
			continue
		}
		if cc := nextConfChange(n.raft.ConfState(), active); cc != nil {
			lastProposal = time.Now()
			ch := cc.GetChanges()[0]
			n.log.Info("proposing a raft configuration change to follow the members on chain", "change", ch.GetType().String(), "node", ch.GetNodeId())
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := n.raft.ProposeConfChange(pctx, cc); err != nil {
				n.log.Warn("propose configuration change", "err", err)
			}
			cancel()
		}
	}
}

// nextConfChange returns the single configuration change that brings the
// raft voters closer to the active members (additions first, so that a
// replacement never shrinks the quorum), or nil when they agree.
func nextConfChange(cs *pb.ConfState, active map[uint64]bool) *pb.ConfChangeV2 {
	if cs == nil {
		return nil
	}
	inConf := map[uint64]bool{}
	for _, id := range slices.Concat(cs.GetVoters(), cs.GetLearners()) {
		inConf[id] = true
	}
	change := func(t pb.ConfChangeType, id uint64) *pb.ConfChangeV2 {
		return &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: t.Enum(), NodeId: new(id)}}}
	}
	for _, id := range slices.Sorted(maps.Keys(active)) {
		if !inConf[id] {
			return change(pb.ConfChangeType_ConfChangeAddNode, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(inConf)) {
		if !active[id] {
			return change(pb.ConfChangeType_ConfChangeRemoveNode, id)
		}
	}
	return nil
}
