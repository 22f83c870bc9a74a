package node

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/teeup/teeup/consensus"
	"github.com/teeup/teeup/ledger"
)

// TestMemberDecision: who may act as a node (and so receive the ledger
// key): an active member presenting its registered key, or a member not
// registered yet with a key no other node holds. Every refusal wraps
// consensus.ErrNotAuthorized and its typed reason.
func TestMemberDecision(t *testing.T) {
	k2, k3, kOld := govAddr(govKey(2)), govAddr(govKey(3)), govAddr(govKey(9))
	active := &ledger.Member{MemberSpec: ledger.MemberSpec{ID: 2}}
	removed := &ledger.Member{MemberSpec: ledger.MemberSpec{ID: 2}, AddedAt: 3, RemovedAt: 40}
	reg := func(id uint64, key ledger.Address) *ledger.NodeRecord { return &ledger.NodeRecord{ID: id, Key: key} }
	for _, tc := range []struct {
		name string
		f    peerFacts
		want error // nil: allowed
	}{
		{"member with its registered key", peerFacts{id: 2, key: k2, member: active, registered: reg(2, k2)}, nil},
		{"member not registered yet, fresh key", peerFacts{id: 2, key: k2, member: active, nodes: []ledger.NodeRecord{*reg(3, k3)}}, nil},
		{"not yet a member", peerFacts{id: 2, key: k2, registered: reg(2, k2)}, errPeerNotMember},
		{"not a member, not registered", peerFacts{id: 7, key: k2}, errPeerNotMember},
		{"removed", peerFacts{id: 2, key: k2, member: removed, registered: reg(2, k2)}, errPeerRemoved},
		{"re-keyed: presents its old key", peerFacts{id: 2, key: kOld, member: active, registered: reg(2, k2)}, errPeerKeyMismatch},
		{"another node's key", peerFacts{id: 2, key: k3, member: active, nodes: []ledger.NodeRecord{*reg(3, k3)}}, errPeerKeyTaken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := memberDecision(tc.f)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, consensus.ErrNotAuthorized) {
				t.Fatalf("err %v, want %v wrapping %v", err, tc.want, consensus.ErrNotAuthorized)
			}
			wantCode := map[error]string{errPeerNotMember: "not_member", errPeerRemoved: "removed", errPeerKeyMismatch: "key_mismatch", errPeerKeyTaken: "key_taken"}[tc.want]
			if code := consensus.RefusalCode(err); code == "" || code != wantCode {
				t.Fatalf("refusal code %q, want %q", code, wantCode)
			}
			for _, other := range []error{errPeerNotMember, errPeerRemoved, errPeerKeyMismatch, errPeerKeyTaken} {
				if other != tc.want && errors.Is(err, other) {
					t.Fatalf("err %v is also %v", err, other)
				}
			}
		})
	}
}

// TestAuthorizePeerReadsTheChain runs authorizePeer on a ledger where
// node 1 is a member registered with govNodeK, and before a ledger is
// open (only the genesis nodes are members).
func TestAuthorizePeerReadsTheChain(t *testing.T) {
	self := nodeMR("1.0.0")
	l := openGovLedger(t, self)
	n := testNode(t, l, self)
	pub := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	check := func(what string, id uint64, key ed25519.PublicKey, want error) {
		t.Helper()
		for _, purpose := range []consensus.Purpose{consensus.PurposeRaft, consensus.PurposeLedgerKey} {
			err := n.authorizePeer(id, key, purpose)
			if (want == nil) != (err == nil) || (want != nil && !errors.Is(err, want)) {
				t.Fatalf("%s (%s): %v, want %v", what, purpose, err, want)
			}
		}
	}
	check("no ledger, genesis node", 1, pub(govKey(5)), nil)
	check("no ledger, not a genesis node", 2, pub(govKey(5)), errPeerNotMember)
	n.storeRef.Store(l.s)
	check("member with its registered key", 1, pub(govNodeK), nil)
	check("member with another key", 1, pub(govKey(5)), errPeerKeyMismatch)
	check("not a member", 2, pub(govKey(5)), errPeerNotMember)
	check("not a member, holding a member's key", 2, pub(govNodeK), errPeerNotMember)
}
