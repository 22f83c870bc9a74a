package node

import (
	"testing"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/remoteadmin"
)

// TestChainPolicy is the table of who may use node 1's remote admin API
// given its configuration and the chain.
func TestChainPolicy(t *testing.T) {
	configured, op1, op2, removedOp, nog, stranger := remoteadmin.Key{1}, remoteadmin.Key{2}, remoteadmin.Key{3}, remoteadmin.Key{4}, remoteadmin.Key{5}, remoteadmin.Key{6}
	member := func(id uint64, op remoteadmin.Key, removedAt uint64) ledger.Member {
		return ledger.Member{MemberSpec: ledger.MemberSpec{ID: id, Operator: ledger.Address(op)}, RemovedAt: removedAt}
	}
	members := []ledger.Member{member(1, op1, 0), member(2, op2, 0), member(3, removedOp, 9), member(4, remoteadmin.Key{}, 0)}
	p, err := chainPolicy(remoteadmin.Policy{Own: []remoteadmin.Key{configured}}, 1, members, release.Group{Keys: []string{nog.String()}, Threshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		key  remoteadmin.Key
		want remoteadmin.Access
	}{
		{"configured operator writes", configured, remoteadmin.AccessWrite},
		{"the chain's operator of this node writes", op1, remoteadmin.AccessWrite},
		{"another member's operator reads", op2, remoteadmin.AccessRead},
		{"a NOG member reads", nog, remoteadmin.AccessRead},
		{"a removed member's operator: nothing", removedOp, remoteadmin.AccessNone},
		{"a stranger: nothing", stranger, remoteadmin.AccessNone},
		{"the zero key (a member without operator): nothing", remoteadmin.Key{}, remoteadmin.AccessNone},
	} {
		if got := p.AccessOf(tt.key); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	// Node 1 removed: its recorded operator no longer writes.
	members[0].RemovedAt = 12
	p, err = chainPolicy(remoteadmin.Policy{}, 1, members, release.Group{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.AccessOf(op1); got != remoteadmin.AccessNone {
		t.Errorf("operator of a removed node 1: %s", got)
	}
	if _, err := chainPolicy(remoteadmin.Policy{}, 1, nil, release.Group{Keys: []string{"zz"}}); err == nil {
		t.Error("a malformed NOG key was accepted")
	}
}

// TestRemotePolicyBeforeTheLedger: until the ledger is open only the
// configured operators are known; afterwards the chain's view is added.
func TestRemotePolicyBeforeTheLedger(t *testing.T) {
	self := nodeMR("1.0.0")
	l := openGovLedger(t, self)
	n := testNode(t, l, self)
	n.cfg.NodeID = 1
	configured := remoteadmin.Key{9}
	nogKey := remoteadmin.Key(govAddr(govNOG[0]))
	p, err := n.remotePolicy([]remoteadmin.Key{configured})
	if err != nil {
		t.Fatal(err)
	}
	if p.AccessOf(configured) != remoteadmin.AccessWrite || p.AccessOf(nogKey) != remoteadmin.AccessNone {
		t.Fatalf("before the ledger: %+v", p)
	}
	n.storeRef.Store(l.s)
	if p, err = n.remotePolicy([]remoteadmin.Key{configured}); err != nil {
		t.Fatal(err)
	}
	if p.AccessOf(configured) != remoteadmin.AccessWrite || p.AccessOf(nogKey) != remoteadmin.AccessRead {
		t.Fatalf("with the ledger: %+v", p)
	}
}
