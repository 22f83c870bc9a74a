package agent

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
)

// TestGovernancePolicy: the agent turns its node's view of the chain into
// remoteadmin's chain policy — removed members and members without an
// operator are left out, malformed keys refused. (The access table itself
// is remoteadmin's TestPolicyWithChain.)
func TestGovernancePolicy(t *testing.T) {
	op1, removedOp, nog := remoteadmin.Key{2}, remoteadmin.Key{4}, remoteadmin.Key{5}
	g := &nodeapi.Governance{
		Members: []nodeapi.MemberInfo{{ID: 1, Operator: op1.String()}, {ID: 3, Operator: removedOp.String(), RemovedAt: 7}, {ID: 4}},
		NOG:     &nodeapi.GroupInfo{Keys: []string{nog.String()}, Threshold: 1},
	}
	p, err := governancePolicy(remoteadmin.Policy{}, 1, g)
	if err != nil {
		t.Fatal(err)
	}
	if p.AccessOf(op1) != remoteadmin.AccessWrite || p.AccessOf(nog) != remoteadmin.AccessRead || p.AccessOf(removedOp) != remoteadmin.AccessNone {
		t.Errorf("policy %+v: own operator, NOG member, removed member's operator", p)
	}
	for name, bad := range map[string]*nodeapi.Governance{
		"malformed member operator": {Members: []nodeapi.MemberInfo{{ID: 2, Operator: "zz"}}},
		"malformed NOG key":         {NOG: &nodeapi.GroupInfo{Keys: []string{"zz"}}},
	} {
		if _, err := governancePolicy(remoteadmin.Policy{}, 1, bad); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestChainAuthFallsBack: before the node ever answered only the
// configured operators are known; an answer is used (and kept for a
// while); when the node stops answering, the last answer stands.
func TestChainAuthFallsBack(t *testing.T) {
	configured, nog := remoteadmin.Key{1}, remoteadmin.Key{5}
	var answer *nodeapi.Governance
	calls := 0
	read := func(context.Context) (*nodeapi.Governance, error) {
		calls++
		if answer == nil {
			return nil, errors.New("node down")
		}
		return answer, nil
	}
	c, err := newChainAuth(1, []string{configured.String()}, read, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	p, _ := c.Policy()
	if p.AccessOf(configured) != remoteadmin.AccessWrite || p.AccessOf(nog) != remoteadmin.AccessNone {
		t.Fatalf("node never answered: %+v", p)
	}
	answer = &nodeapi.Governance{NOG: &nodeapi.GroupInfo{Keys: []string{nog.String()}}}
	if p, _ = c.Policy(); p.AccessOf(nog) != remoteadmin.AccessRead {
		t.Fatalf("node answered: %+v", p)
	}
	n := calls
	if p, _ = c.Policy(); calls != n || p.AccessOf(nog) != remoteadmin.AccessRead {
		t.Fatalf("within the refresh period the node was asked again (%d calls)", calls-n)
	}
	answer = nil
	now = now.Add(chainAuthRefresh + time.Second)
	if p, _ = c.Policy(); calls != n+1 || p.AccessOf(nog) != remoteadmin.AccessRead || p.AccessOf(configured) != remoteadmin.AccessWrite {
		t.Fatalf("node down after an answer: %+v (calls %d)", p, calls-n)
	}
	if _, err := newChainAuth(1, []string{"zz"}, read, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a malformed configured key was accepted")
	}
}
