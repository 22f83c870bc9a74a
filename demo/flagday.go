package demo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// Vote is one Node Operators Group member's committed governance vote.
type Vote struct {
	// Key is the member's devnet key name (nog-1); Host the host whose
	// admin socket it went through.
	Key  string `json:"key"`
	Host uint64 `json:"host"`
	// TxID and Height are the committed transaction and its block.
	TxID   string `json:"tx_id"`
	Height uint64 `json:"height"`
	// Result says what the vote did ("1 of quorum 2 votes", "scheduled").
	Result string `json:"result"`
}

// castVote signs a governance transaction of kind with the devnet key
// name, submits it through admin and waits for its block: what 'teeup
// release propose|approve|schedule --admin' does for one operator. A vote
// whose wait for its block timed out may still be committed, so it is
// looked up before failing; one committed without effect is a failure
// (nodeapi.ErrNoEffect).
func castVote(ctx context.Context, net *devnet.Network, admin *nodeapi.AdminClient, name string, kind ledger.TxKind, payload []byte) (*nodeapi.Receipt, error) {
	key, err := keyfile.ReadPrivate(net.KeyPath(name))
	if err != nil {
		return nil, err
	}
	addr, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	acct, err := admin.Account(ctx, addr.String())
	if err != nil {
		return nil, fmt.Errorf("%s by %s: read its account: %w", kind, name, err)
	}
	tx, err := ledger.NewGovernanceTx(net.ChainID, kind, payload, acct.Nonce+1, key)
	if err != nil {
		return nil, err
	}
	rec, err := nodeapi.SubmitAndConfirm(ctx, admin, tx.Encode(), tx.ID().String(), 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s by %s: %w", kind, name, err)
	}
	if ledger.Code(rec.Code) == ledger.CodeNoEffect {
		return nil, fmt.Errorf("%s by %s: tx %s at height %d: %w", kind, name, rec.TxID, rec.Height, nodeapi.ErrNoEffect)
	}
	return rec, nil
}

// ScheduleVotes has the Node Operators Group schedule the flag day to the
// approved version at lead blocks above node 1's head, as separate
// operators would: nog-1 votes through host 1's admin socket, waits for
// its vote's block, then nog-2 through host 2's, until the quorum voted.
// It returns the activation height and the votes cast (also those before
// a failure).
func ScheduleVotes(ctx context.Context, net *devnet.Network, version string, lead uint64) (uint64, []Vote, error) {
	first := nodeapi.NewAdminClient(net.Hosts[0].AdminSocket)
	defer first.Close()
	head, err := first.Head(ctx)
	if err != nil {
		return 0, nil, err
	}
	gov, err := first.Releases(ctx)
	if err != nil {
		return 0, nil, err
	}
	h := head.Height + lead
	payload := ledger.EncodeUpgradeSchedule(ledger.UpgradeSchedule{Version: version, ActivationHeight: h})
	var votes []Vote
	for i := 1; i <= gov.Quorum; i++ {
		host := net.Hosts[(i-1)%len(net.Hosts)]
		admin := nodeapi.NewAdminClient(host.AdminSocket)
		name := fmt.Sprintf("nog-%d", i)
		rec, err := castVote(ctx, net, admin, name, ledger.TxScheduleUpgrade, payload)
		if err != nil {
			admin.Close()
			return h, votes, err
		}
		v := Vote{Key: name, Host: host.ID, TxID: rec.TxID, Height: rec.Height}
		g, err := admin.Releases(ctx)
		admin.Close()
		if err != nil {
			return h, votes, err
		}
		v.Result = scheduleResult(g, version, h)
		votes = append(votes, v)
	}
	return h, votes, nil
}

// scheduleResult says where the schedule (version, h) stands in g, as
// 'teeup release schedule' prints it.
func scheduleResult(g *nodeapi.Governance, version string, h uint64) string {
	if s := g.Schedule; s != nil && s.Version == version && s.ActivationHeight == h {
		return fmt.Sprintf("SCHEDULED (%d of quorum %d votes, in force since height %d)", len(s.Approvers), g.Quorum, s.ScheduledAt)
	}
	votes := 0
	for _, v := range g.PendingSchedules {
		if v.Version == version && v.ActivationHeight == h {
			votes++
		}
	}
	return fmt.Sprintf("%d of quorum %d votes", votes, g.Quorum)
}

// ingressClosesAt is the height at which the old nodes close client
// ingress for the schedule in force, as node 1 reports it once it has
// applied the schedule (the last vote may have gone through another host);
// 0 if it does not say within a few seconds.
func ingressClosesAt(ctx context.Context, net *devnet.Network) uint64 {
	a := nodeapi.NewAdminClient(net.Hosts[0].AdminSocket)
	defer a.Close()
	for range 50 {
		if st, err := a.Status(ctx); err == nil && st.Upgrade != nil {
			return st.Upgrade.IngressCloses
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0
}

// milestones reads the flag day's moments: block times from a node of the
// new release (its chain holds blocks H+1 and the ready block, and H's),
// the hosts' states from the observation and their upgrade records from
// the agents.
func milestones(ctx context.Context, net *devnet.Network, obs *flagday.Observation, h, closes uint64) Milestones {
	m := Milestones{Quorum: len(net.Hosts)/2 + 1}
	ready := uint64(0)
	if obs != nil && obs.Readiness != nil {
		ready = obs.Readiness.ReadyAt
	}
	a := nodeapi.NewAdminClient(net.Hosts[0].AdminSocket)
	defer a.Close()
	blockTime := func(ht uint64) time.Time {
		if ht == 0 {
			return time.Time{}
		}
		b, err := a.Block(ctx, ht)
		if err != nil {
			return time.Time{}
		}
		return b.Time
	}
	m.IngressClosed, m.Halt, m.FirstNew, m.Ready = blockTime(closes), blockTime(h), blockTime(h+1), blockTime(ready)
	for i, host := range net.Hosts {
		hm := HostMilestones{ID: host.ID}
		if obs != nil && i < len(obs.Hosts) {
			hm.State = obs.Hosts[i].Agent
		}
		c := agentapi.NewClient(host.AgentSocket)
		if st, err := c.Status(ctx); err == nil {
			hm.Upgrade = st.Upgrade
		}
		m.Hosts = append(m.Hosts, hm)
	}
	return m
}

// settledReady checks that the observer saw every host settle the flag day
// (version, h) ready.
func settledReady(o *flagday.Observation, version string, h uint64) error {
	switch {
	case o == nil:
		return errors.New("no observation")
	case o.Version != version || o.ActivationHeight != h:
		return fmt.Errorf("observed the flag day to %s at %d, want %s at %d", o.Version, o.ActivationHeight, version, h)
	case !o.Settled:
		return errors.New("not every host settled the flag day")
	case o.Outcome != decide.OutcomeReady:
		return fmt.Errorf("outcome %q, want %q", o.Outcome, decide.OutcomeReady)
	case o.Readiness == nil || len(o.Readiness.Records) < o.Readiness.Quorum:
		return errors.New("the chain holds no readiness quorum")
	}
	return nil
}

// readinessOf summarises the chain's readiness records.
func readinessOf(o *flagday.Observation) string {
	if o == nil || o.Readiness == nil {
		return "-"
	}
	r := o.Readiness
	return fmt.Sprintf("%d of %d (quorum %d), ready at block %d", len(r.Records), len(r.Members), r.Quorum, r.ReadyAt)
}

// servedAgain checks that the clients' downtime ended: payments were
// acknowledged on both sides of it.
func servedAgain(d *Downtime) error {
	if d == nil || d.Client == 0 || d.GapEnd.IsZero() {
		return errors.New("no acknowledged payment on both sides of the flag day")
	}
	return nil
}

// shortID is the first 12 characters of a transaction id.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
