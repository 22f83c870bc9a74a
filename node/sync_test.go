package node

import (
	"testing"

	"github.com/teeup/teeup/nodeapi"
)

// TestFindFork: a follower that disagrees with the leader at height H has
// diverged at H; a leader has when more of its peers disagree than agree
// and they are a majority with it; agreeing reports never diverge.
func TestFindFork(t *testing.T) {
	a, b := [32]byte{1}, [32]byte{2}
	same := func(peer, h uint64) forkReport { return forkReport{Peer: peer, Height: h, Theirs: a, Ours: a} }
	differ := func(peer, h uint64) forkReport { return forkReport{Peer: peer, Height: h, Theirs: b, Ours: a} }
	for _, tc := range []struct {
		name          string
		self, leader  uint64
		peers         int
		reports       []forkReport
		diverged      bool
		wantAt, wantB uint64
	}{
		{"follower, same hashes", 3, 1, 4, []forkReport{same(1, 10), same(2, 10)}, false, 0, 0},
		{"follower, no reports", 3, 1, 4, nil, false, 0, 0},
		{"follower differs from the leader at H", 3, 1, 4, []forkReport{same(2, 10), differ(1, 12)}, true, 12, 1},
		{"follower differs from a non-leader only", 3, 1, 4, []forkReport{same(1, 10), differ(2, 11)}, false, 0, 0},
		{"follower without a leader", 3, 0, 4, []forkReport{differ(1, 10), differ(2, 10)}, false, 0, 0},
		{"leader, same hashes", 1, 1, 4, []forkReport{same(2, 9), same(3, 9), same(4, 9)}, false, 0, 0},
		{"leader outvoted: diverged at the lowest differing height", 1, 1, 4, []forkReport{differ(2, 9), differ(3, 7), same(4, 9)}, true, 7, 3},
		{"leader, one of four differs", 1, 1, 4, []forkReport{differ(2, 9), same(3, 9), same(4, 9)}, false, 0, 0},
		{"leader, as many agree as differ", 1, 1, 4, []forkReport{differ(2, 9), differ(3, 9), same(4, 9), same(5, 9)}, false, 0, 0},
		{"leader, the only report differs but is no majority", 1, 1, 4, []forkReport{differ(2, 9)}, false, 0, 0},
		{"leader of three, its one peer differs", 1, 1, 2, []forkReport{differ(2, 9)}, true, 9, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, by, ok := findFork(tc.self, tc.leader, tc.peers, tc.reports)
			if ok != tc.diverged || at != tc.wantAt || by != tc.wantB {
				t.Fatalf("findFork = (%d, %d, %v), want (%d, %d, %v)", at, by, ok, tc.wantAt, tc.wantB, tc.diverged)
			}
		})
	}
}

// TestMarkDivergedKeepsTheLowestHeight: a node diverged at H stays
// diverged at H when a later fork is found above, and moves to a lower one.
func TestMarkDivergedKeepsTheLowestHeight(t *testing.T) {
	tr := newSyncTracker(&Node{})
	tr.markDiverged(12, 1)
	tr.markDiverged(15, 2)
	if tr.divergedAt != 12 || tr.divergedBy != 1 {
		t.Fatalf("diverged at %d by %d, want 12 by 1", tr.divergedAt, tr.divergedBy)
	}
	tr.markDiverged(8, 4)
	if tr.divergedAt != 8 || tr.divergedBy != 4 {
		t.Fatalf("diverged at %d by %d, want 8 by 4", tr.divergedAt, tr.divergedBy)
	}
}

// TestClassifySync: the sync state, reason and distance a node reports.
func TestClassifySync(t *testing.T) {
	net := func(h, commit uint64) nodeapi.Sync { return nodeapi.Sync{NetworkHeight: h, CommitIndex: commit} }
	for _, tc := range []struct {
		name     string
		v        nodeapi.Sync
		f        syncFacts
		want     string
		behindBy uint64
		at       uint64
		reason   string
	}{
		{"current", net(10, 20), syncFacts{height: 10, applied: 20, leader: 1}, nodeapi.SyncCurrent, 0, 0, ""},
		{"a block in flight is current", net(12, 20), syncFacts{height: 10, applied: 20, leader: 1}, nodeapi.SyncCurrent, 2, 0, ""},
		{"behind", net(10, 20), syncFacts{height: 5, applied: 20, leader: 1}, nodeapi.SyncCatchingUp, 5, 0,
			"node is catching up: height 5 of 10"},
		{"applying a backlog", net(10, 200), syncFacts{height: 10, applied: 20, leader: 1}, nodeapi.SyncCatchingUp, 0, 0,
			"node is catching up: height 10 of 10 (applying raft entries: 20 of 200)"},
		{"no leader", net(10, 20), syncFacts{height: 10, applied: 20}, nodeapi.SyncCatchingUp, 0, 0,
			"node is catching up: no leader known (not connected to a quorum of members)"},
		{"receiving a state transfer", nodeapi.Sync{NetworkHeight: 10, Transfer: &nodeapi.StateTransfer{From: 2, DoneBytes: 5, TotalBytes: 9}},
			syncFacts{height: 0, leader: 1}, nodeapi.SyncCatchingUp, 10, 0,
			"node is catching up: receiving the ledger state from node 2 (5 of 9 bytes)"},
		{"diverged at H, even if current", net(10, 20), syncFacts{height: 10, applied: 20, leader: 1, divergedAt: 7, divergedBy: 2}, nodeapi.SyncDiverged, 0, 7,
			"diverged at height 7: this node's block differs from node 2's; it serves nothing and must be re-synced (wipe its data dir and let it rejoin)"},
		{"diverged and behind", net(10, 20), syncFacts{height: 4, applied: 20, leader: 1, divergedAt: 3, divergedBy: 2}, nodeapi.SyncDiverged, 6, 3, ""},
		{"removed wins", net(10, 20), syncFacts{height: 10, applied: 20, leader: 1, removedAt: 9, divergedAt: 7}, nodeapi.SyncRemoved, 0, 0,
			"this node was removed from the network at height 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classifySync(tc.v, tc.f)
			if got.State != tc.want || got.BehindBy != tc.behindBy || got.DivergedAt != tc.at {
				t.Fatalf("state %s behind_by %d diverged_at %d, want %s %d %d (%s)", got.State, got.BehindBy, got.DivergedAt, tc.want, tc.behindBy, tc.at, got.Reason)
			}
			if got.CatchingUp != (tc.want == nodeapi.SyncCatchingUp) {
				t.Fatalf("catching_up %v in state %s", got.CatchingUp, got.State)
			}
			if (syncView{got}).serving() != (tc.want == nodeapi.SyncCurrent) {
				t.Fatalf("serving %v in state %s", !got.CatchingUp, got.State)
			}
			if tc.reason != "" && got.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", got.Reason, tc.reason)
			}
		})
	}
}
