package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/teeup/teeup/consensus"
	"github.com/teeup/teeup/ledger"
)

// genesisMembers are the genesis voters: a genesis node with an empty
// raft log bootstraps them.
func (n *Node) genesisMembers() []uint64 {
	ids := make([]uint64, 0, len(n.genesis.Nodes))
	for _, gn := range n.genesis.Nodes {
		ids = append(ids, gn.ID)
	}
	return ids
}

// isMember reports whether node id is an active member of the network:
// on chain once the ledger is open, the genesis nodes before.
func (n *Node) isMember(id uint64) bool {
	if st := n.storeRef.Load(); st != nil {
		m, ok, err := st.Member(id)
		return err == nil && ok && m.Active()
	}
	_, ok := n.genesis.Node(id)
	return ok
}

// peerAddrs returns the other active members' peer addresses: on chain
// once the ledger is open; before, the configured peers, or the genesis
// nodes.
func (n *Node) peerAddrs() map[uint64]string {
	out := map[uint64]string{}
	if st := n.storeRef.Load(); st != nil {
		if ms, err := st.Members(); err == nil {
			for _, m := range ms {
				if m.Active() && m.ID != n.cfg.NodeID {
					out[m.ID] = m.PeerAddr
				}
			}
			return out
		}
	}
	if len(n.cfg.Peers) > 0 {
		for id, addr := range n.cfg.Peers {
			if id != n.cfg.NodeID {
				out[id] = addr
			}
		}
		return out
	}
	for _, gn := range n.genesis.Nodes {
		if gn.ID != n.cfg.NodeID {
			out[gn.ID] = gn.PeerAddr
		}
	}
	return out
}

// authorizePeer is the transport's Authorizer: a peer may act as node id
// only if id is a member and key is the identity key registered for it on
// chain (or, for a member not registered yet, a key no other node holds).
// This is what stops a node that lost its keys, or any enclave of the
// same MRENCLAVE claiming another operator's node id, from joining with an
// identity its operator did not register; and a node whose key was
// replaced from rejoining with the old one. The ledger key is served only
// to peers it authorizes (PurposeLedgerKey), so a joining node gets it
// once it is a member on chain. Refusals are peerRefusals (memberDecision).
func (n *Node) authorizePeer(id uint64, key ed25519.PublicKey, purpose consensus.Purpose) error {
	st := n.storeRef.Load()
	if st == nil {
		// This node has no ledger open yet (it is fetching the ledger key):
		// it can check nothing but attestation and the id.
		if _, ok := n.genesis.Node(id); !ok {
			return refusePeer(errPeerNotMember, "node %d is not a member of %s", id, n.genesis.ChainID)
		}
		return nil
	}
	addr, err := ledger.AddressOf(key)
	if err != nil {
		return fmt.Errorf("%w: %v", consensus.ErrNotAuthorized, err)
	}
	m, isMember, err := st.Member(id)
	if err != nil {
		return fmt.Errorf("%w: read member %d: %v", consensus.ErrNotAuthorized, id, err)
	}
	rec, registered, err := st.Node(id)
	if err != nil {
		return fmt.Errorf("%w: read node %d: %v", consensus.ErrNotAuthorized, id, err)
	}
	var nodes []ledger.NodeRecord
	if isMember && m.Active() && !registered {
		if nodes, err = st.Nodes(); err != nil {
			return fmt.Errorf("%w: read nodes: %v", consensus.ErrNotAuthorized, err)
		}
	}
	in := peerFacts{chain: n.genesis.ChainID, id: id, key: addr, nodes: nodes}
	if isMember {
		in.member = &m
	}
	if registered {
		in.registered = &rec
	}
	return memberDecision(in)
}

// Typed reasons of a peer's refusal (errors.Is on authorizePeer's error,
// which also wraps consensus.ErrNotAuthorized).
var (
	// errPeerNotMember: the id is not (yet) a member on chain.
	errPeerNotMember = errors.New("not a member")
	// errPeerRemoved: the member was removed by governance.
	errPeerRemoved = errors.New("removed from the network")
	// errPeerKeyMismatch: another identity key is registered for the id
	// (its operator re-keyed it; or an impostor).
	errPeerKeyMismatch = errors.New("not the registered identity key")
	// errPeerKeyTaken: the key is registered for another node.
	errPeerKeyTaken = errors.New("identity key registered for another node")
)

// peerRefusal is a refusal of a peer by authorizePeer: its message, its
// typed reason and consensus.ErrNotAuthorized.
type peerRefusal struct {
	reason error
	msg    string
}

func refusePeer(reason error, format string, args ...any) error {
	return &peerRefusal{reason: reason, msg: fmt.Sprintf(format, args...)}
}

func (e *peerRefusal) Error() string   { return consensus.ErrNotAuthorized.Error() + ": " + e.msg }
func (e *peerRefusal) Unwrap() []error { return []error{consensus.ErrNotAuthorized, e.reason} }

// RefusalCode is the reason's code, logged by the transport with the
// refusal.
func (e *peerRefusal) RefusalCode() string {
	switch e.reason {
	case errPeerNotMember:
		return "not_member"
	case errPeerRemoved:
		return "removed"
	case errPeerKeyMismatch:
		return "key_mismatch"
	case errPeerKeyTaken:
		return "key_taken"
	}
	return ""
}

// peerFacts are what the chain says about a peer claiming node id with
// identity key key.
type peerFacts struct {
	chain      string
	id         uint64
	key        ledger.Address
	member     *ledger.Member     // nil: no member record
	registered *ledger.NodeRecord // nil: no identity registered for id
	nodes      []ledger.NodeRecord
	// nodes are all registrations (read only for an active member not
	// registered yet)
}

// memberDecision decides whether a peer may act as node id: nil, or a
// peerRefusal.
func memberDecision(f peerFacts) error {
	switch {
	case f.member == nil:
		return refusePeer(errPeerNotMember, "node %d is not a member of %s", f.id, f.chain)
	case !f.member.Active():
		return refusePeer(errPeerRemoved, "node %d is not a member of %s: it was removed at height %d", f.id, f.chain, f.member.RemovedAt)
	case f.registered != nil && f.registered.Key != f.key:
		return refusePeer(errPeerKeyMismatch, "node %d's registered identity key is %s, this peer presents %s "+
			"(a node that lost its keys must be re-keyed by its operator: teeup member rekey)", f.id, f.registered.Key, f.key)
	case f.registered != nil:
		return nil
	}
	for _, o := range f.nodes {
		if o.Key == f.key {
			return refusePeer(errPeerKeyTaken, "key %s is registered for node %d, not node %d", f.key, o.ID, f.id)
		}
	}
	return nil
}

// peerStatus is what this node tells its peers about itself.
func (n *Node) peerStatus() consensus.PeerStatus {
	h, hash := n.store.Head()
	return consensus.PeerStatus{
		Height: h, Hash: hash, Applied: n.store.AppliedIndex(), Commit: n.raft.CommitIndex(),
		Term: n.raft.Term(), Leader: n.raft.Leader(), CatchingUp: !n.sync.current().serving(),
	}
}

// raftConf returns the raft membership the ledger recorded with its
// applied index, recording raft storage's for a ledger written before it
// was kept there.
func (n *Node) raftConf() (*pb.ConfState, error) {
	raw := n.store.RaftConf()
	if len(raw) == 0 {
		return nil, nil
	}
	cs := &pb.ConfState{}
	if err := proto.Unmarshal(raw, cs); err != nil {
		return nil, fmt.Errorf("ledger: corrupt raft membership: %w", err)
	}
	return cs, nil
}

// recordInitialConf stores raft's membership in a ledger that has none
// recorded (a ledger from before this was kept with the applied index).
func (n *Node) recordInitialConf() error {
	if len(n.store.RaftConf()) > 0 {
		return nil
	}
	cs := n.raft.ConfState()
	if cs == nil || len(cs.GetVoters()) == 0 {
		return nil
	}
	raw, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	return n.store.InitRaftConf(raw)
}

// checkpointForPeer makes the consistent checkpoint a state transfer sends.
func (n *Node) checkpointForPeer(dir string) (uint64, *pb.ConfState, error) {
	if err := n.recordInitialConf(); err != nil {
		return 0, nil, err
	}
	applied, raw, err := n.store.CheckpointState(dir)
	if err != nil {
		return 0, nil, err
	}
	cs := &pb.ConfState{}
	if err := proto.Unmarshal(raw, cs); err != nil {
		return 0, nil, fmt.Errorf("checkpoint: corrupt raft membership: %w", err)
	}
	return applied, cs, nil
}

// verifySnapshot checks a ledger received from a peer before it is staged.
func (n *Node) verifySnapshot(ctx context.Context, dir string, meta *pb.SnapshotMetadata) error {
	sum, err := ledger.VerifyCheckpoint(ctx, dir, ledger.VerifyOptions{
		Genesis: n.genesis, LedgerKey: n.keys.Load().LedgerKey, TargetSchema: TargetSchema(),
		Applied: meta.GetIndex(),
		CheckRaftConf: func(raw []byte) error {
			cs := &pb.ConfState{}
			if err := proto.Unmarshal(raw, cs); err != nil {
				return err
			}
			if !proto.Equal(cs, meta.GetConfState()) {
				return fmt.Errorf("the checkpoint records voters %v, the raft snapshot %v", cs.GetVoters(), meta.GetConfState().GetVoters())
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	n.log.Info("state snapshot verified", "height", sum.Height, "head", sum.Head.String(), "index", meta.GetIndex())
	return nil
}

// stateMachine is the node as raft's consensus.StateMachine.
type stateMachine Node

func (m *stateMachine) node() *Node { return (*Node)(m) }

// Apply implements consensus.StateMachine.
func (m *stateMachine) Apply(index uint64, data []byte) error { return m.node().apply(index, data) }

// CheckConfChange implements consensus.StateMachine: a voter may be added
// only if it is a member on chain, and removed only if it no longer is.
func (m *stateMachine) CheckConfChange(_ uint64, cc *pb.ConfChangeV2) error {
	n := m.node()
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case pb.ConfChangeType_ConfChangeAddNode, pb.ConfChangeType_ConfChangeAddLearnerNode:
			if !n.isMember(id) {
				return fmt.Errorf("node %d is not a member on chain", id)
			}
		case pb.ConfChangeType_ConfChangeRemoveNode:
			if n.isMember(id) {
				return fmt.Errorf("node %d is still a member on chain", id)
			}
		default:
			return fmt.Errorf("unsupported configuration change %s", ch.GetType())
		}
	}
	return nil
}

// SaveConfState implements consensus.StateMachine.
func (m *stateMachine) SaveConfState(index uint64, cs *pb.ConfState) error {
	n := m.node()
	raw, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	if err := n.store.SaveRaftConf(index, raw); err != nil {
		return err
	}
	n.applied.broadcast()
	return nil
}

// InstallSnapshot implements consensus.StateMachine.
func (m *stateMachine) InstallSnapshot(snap *pb.Snapshot, hs *pb.HardState) error {
	return m.node().snaps.RecordInstall(snap, hs)
}
