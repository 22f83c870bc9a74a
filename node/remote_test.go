package node

import (
	"testing"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/remoteadmin"
)

// TestChainPolicy: the node turns the chain's members into remoteadmin's
// chain policy — removed members are left out, so the operator of a
// removed node 1 no longer writes. (The access table itself is
// remoteadmin's TestPolicyWithChain.)
func TestChainPolicy(t *testing.T) {
	op1, op2 := remoteadmin.Key{2}, remoteadmin.Key{3}
	members := []ledger.Member{
		{MemberSpec: ledger.MemberSpec{ID: 1, Operator: ledger.Address(op1)}},
		{MemberSpec: ledger.MemberSpec{ID: 2, Operator: ledger.Address(op2)}, RemovedAt: 9},
	}
	p, err := chainPolicy(remoteadmin.Policy{}, 1, members, release.Group{})
	if err != nil {
		t.Fatal(err)
	}
	if p.AccessOf(op1) != remoteadmin.AccessWrite || p.AccessOf(op2) != remoteadmin.AccessNone {
		t.Errorf("policy %+v: own operator writes, removed member's operator nothing", p)
	}
	members[0].RemovedAt = 12
	if p, err = chainPolicy(remoteadmin.Policy{}, 1, members, release.Group{}); err != nil || p.AccessOf(op1) != remoteadmin.AccessNone {
		t.Errorf("operator of a removed node 1: %s (%v)", p.AccessOf(op1), err)
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
