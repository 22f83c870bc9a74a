package ledger

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

func TestGovernanceLifecycle(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(govGenesis())
	o.SelfMeasurement = nodeMeasurement("1.0.0")
	c := openChainAt(t, dir, o)
	c.mustAccept(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1))}})

	if v := mustGovernance(t, c.s); len(v.Releases) != 0 || v.Schedule != nil || v.Quorum != 2 || v.Operators != 3 {
		t.Fatalf("fresh governance %+v", v)
	}

	// Proposal: the proposer's approval counts, 1 of 2.
	v2 := testRelease(t, "2.0.0", func(m *release.Manifest) { m.SchemaVersion = 2 })
	propose := c.gov(op1, TxProposeRelease, proposalPayload(t, v2))
	if _, ok, err := c.s.Release("2.0.0"); err != nil || ok {
		t.Fatalf("release visible before its block: %v %v", ok, err)
	}
	res := c.commit()
	if st, _, _ := c.s.TxStatus(propose.ID()); st != (TxStatus{State: StateCommitted, Height: res.Height, Code: CodeOK}) {
		t.Fatalf("proposal status %+v", st)
	}
	rec, ok, err := c.s.Release("2.0.0")
	if err != nil || !ok {
		t.Fatalf("Release: %v %v", ok, err)
	}
	wantHash, _ := ManifestHash(v2)
	if rec.ProposedAt != res.Height || rec.Approved() || rec.ManifestHash != wantHash || rec.Proposer != addrOf(op1) ||
		!slices.Equal(rec.Approvers, []Address{addrOf(op1)}) || rec.NodeMREnclave() != nodeMeasurement("2.0.0") ||
		!bytes.Equal(rec.Raw, proposalPayload(t, v2)) || rec.Release.Manifest.SchemaVersion != 2 {
		t.Fatalf("record after proposal %+v", rec)
	}
	if a, _ := c.s.ApprovedReleases(); len(a) != 0 {
		t.Fatalf("approved before the quorum: %d", len(a))
	}
	// The proposer needs no balance, and its nonce advanced.
	if a := c.account(op1); a != (Account{Nonce: 1}) {
		t.Fatalf("proposer account %+v", a)
	}

	// Second approval reaches the quorum.
	c.gov(op2, TxApproveRelease, approvalPayload(t, v2))
	approvedAt := c.commit().Height
	rec, _, _ = c.s.Release("2.0.0")
	if rec.ApprovedAt != approvedAt || !slices.Equal(rec.Approvers, []Address{addrOf(op1), addrOf(op2)}) {
		t.Fatalf("record after approval %+v", rec)
	}
	// A third member's approval is recorded but changes nothing else.
	c.gov(op3, TxApproveRelease, approvalPayload(t, v2))
	c.commit()
	rec, _, _ = c.s.Release("2.0.0")
	if rec.ApprovedAt != approvedAt || len(rec.Approvers) != 3 {
		t.Fatalf("record after a third approval %+v", rec)
	}
	approved, err := c.s.ApprovedReleases()
	if err != nil || len(approved) != 1 || approved[0].Version != "2.0.0" || approved[0].ApprovedAt != approvedAt {
		t.Fatalf("ApprovedReleases: %+v %v", approved, err)
	}

	// Schedule: one vote is pending, the second puts it in force.
	h := c.head() + MinScheduleLead + 5
	c.gov(op1, TxScheduleUpgrade, schedulePayload("2.0.0", h))
	c.commit()
	if _, ok, _ := c.s.ActiveSchedule(); ok {
		t.Fatal("schedule in force after one vote")
	}
	if v := mustGovernance(t, c.s); !slices.Equal(v.ScheduleVotes, []ScheduleVote{{Member: addrOf(op1), Version: "2.0.0", ActivationHeight: h}}) {
		t.Fatalf("pending schedule votes %+v", v.ScheduleVotes)
	}
	c.gov(op3, TxScheduleUpgrade, schedulePayload("2.0.0", h))
	scheduledAt := c.commit().Height
	sched, ok, err := c.s.ActiveSchedule()
	if err != nil || !ok {
		t.Fatalf("ActiveSchedule: %v %v", ok, err)
	}
	want := Schedule{Version: "2.0.0", NodeMREnclave: nodeMeasurement("2.0.0"), ActivationHeight: h, ScheduledAt: scheduledAt, Approvers: []Address{addrOf(op1), addrOf(op3)}}
	if !schedulesEqual(sched, want) {
		t.Fatalf("schedule %+v, want %+v", sched, want)
	}
	if hh, ok, _ := c.s.UpgradeHaltHeight(); !ok || hh != h {
		t.Fatalf("UpgradeHaltHeight = %d %v, want %d (this store runs 1.0.0)", hh, ok, h)
	}
	if v := mustGovernance(t, c.s); len(v.ScheduleVotes) != 0 {
		t.Fatalf("votes left after the schedule came into force: %+v", v.ScheduleVotes)
	}

	// Abort: it takes effect when the quorum's vote is admitted, before any
	// block, since halted old nodes build none.
	c.gov(op2, TxAbortUpgrade, abortPayload("2.0.0", "node 2 fails to attest"))
	if _, ok, _ := c.s.ActiveSchedule(); !ok {
		t.Fatal("schedule cleared by one abort vote")
	}
	c.gov(op3, TxAbortUpgrade, abortPayload("2.0.0", "agreed"))
	abortHead := c.head()
	if _, ok, _ := c.s.ActiveSchedule(); ok {
		t.Fatal("schedule still in force after the abort quorum was admitted")
	}
	if _, ok, _ := c.s.UpgradeHaltHeight(); ok {
		t.Fatal("halt height after the abort")
	}
	aborts, err := c.s.Aborts()
	if err != nil || len(aborts) != 1 {
		t.Fatalf("Aborts: %+v %v", aborts, err)
	}
	if a := aborts[0]; a.Version != "2.0.0" || a.ActivationHeight != h || a.ScheduledAt != scheduledAt || a.Height != abortHead ||
		a.Reason != "node 2 fails to attest" || a.NodeMREnclave != nodeMeasurement("2.0.0") || !slices.Equal(a.Approvers, []Address{addrOf(op2), addrOf(op3)}) {
		t.Fatalf("abort record %+v", a)
	}
	c.commit() // the abort votes commit like any transaction
	if a := c.account(op3); a.Nonce != 3 || a.Pending != 0 {
		t.Fatalf("op3 account %+v", a)
	}

	// A newer release; then a rollback from it to 2.0.0.
	v3 := testRelease(t, "3.0.0", func(m *release.Manifest) { m.SchemaVersion = 3 })
	c.approveRelease(v3)
	c.gov(op1, TxApproveRollback, rollbackPayload("3.0.0", "2.0.0"))
	c.commit()
	if rbs, _ := c.s.Rollbacks(); len(rbs) != 0 {
		t.Fatal("rollback recorded after one vote")
	}
	c.gov(op2, TxApproveRollback, rollbackPayload("3.0.0", "2.0.0"))
	rbAt := c.commit().Height
	rbs, err := c.s.Rollbacks()
	if err != nil || len(rbs) != 1 || rbs[0].From != "3.0.0" || rbs[0].To != "2.0.0" || rbs[0].Height != rbAt ||
		!slices.Equal(rbs[0].Approvers, []Address{addrOf(op1), addrOf(op2)}) {
		t.Fatalf("Rollbacks: %+v %v", rbs, err)
	}
	// The rollback lets the older release be scheduled.
	h2 := c.head() + MinScheduleLead
	c.scheduleUpgrade("2.0.0", h2)
	if s, ok, _ := c.s.ActiveSchedule(); !ok || s.Version != "2.0.0" || s.ActivationHeight != h2 {
		t.Fatalf("schedule of the rollback target: %+v %v", s, ok)
	}

	// Everything survives a restart, and reads agree with the view.
	view := mustGovernance(t, c.s)
	digest := govDigest(t, c.s)
	if err := c.s.Close(); err != nil {
		t.Fatal(err)
	}
	r := openChainAt(t, dir, o)
	if govDigest(t, r.s) != digest {
		t.Fatal("governance changed across a restart")
	}
	again := mustGovernance(t, r.s)
	if len(again.Releases) != 2 || !slices.Equal(again.Approved, []string{"2.0.0", "3.0.0"}) || again.Schedule == nil ||
		!schedulesEqual(*again.Schedule, *view.Schedule) || len(again.Aborts) != 1 || len(again.Rollbacks) != 1 || again.Height != view.Height {
		t.Fatalf("view after restart %+v", again)
	}
	if again.Releases[0].Version != "2.0.0" || again.Releases[1].Version != "3.0.0" {
		t.Fatal("releases are not in proposal order")
	}
}

func schedulesEqual(a, b Schedule) bool {
	return a.Version == b.Version && a.NodeMREnclave == b.NodeMREnclave && a.ActivationHeight == b.ActivationHeight &&
		a.ScheduledAt == b.ScheduledAt && slices.Equal(a.Approvers, b.Approvers)
}

func TestGovernanceQuorumOfOneApprovesAtProposal(t *testing.T) {
	g := govGenesis()
	g.NOG.Threshold = 1
	c := openChain(t, g)
	sr := testRelease(t, "2.0.0", nil)
	c.gov(op3, TxProposeRelease, proposalPayload(t, sr))
	at := c.commit().Height
	rec, ok, err := c.s.Release("2.0.0")
	if err != nil || !ok || rec.ApprovedAt != at {
		t.Fatalf("release %+v %v %v", rec, ok, err)
	}
	c.gov(op3, TxScheduleUpgrade, schedulePayload("2.0.0", c.head()+MinScheduleLead))
	c.commit()
	if _, ok, _ := c.s.ActiveSchedule(); !ok {
		t.Fatal("a single vote of a quorum of one did not schedule")
	}
}

// govCase is a governance transaction that must be rejected.
type govCase struct {
	name    string
	genesis func(*Genesis)
	setup   func(c *chain)
	tx      func(c *chain) *Tx
	code    Code
}

func TestGovernanceRejections(t *testing.T) {
	v2 := testRelease(t, "2.0.0", func(m *release.Manifest) { m.SchemaVersion = 2 })
	v3 := testRelease(t, "3.0.0", nil)
	approved2 := func(c *chain) { c.approveRelease(v2) }
	scheduled2 := func(c *chain) { c.approveRelease(v2); c.scheduleUpgrade("2.0.0", c.head()+MinScheduleLead+10) }
	raw := func(kind TxKind, key ed25519.PrivateKey, payload []byte) func(c *chain) *Tx {
		return func(c *chain) *Tx { return c.govTx(key, kind, payload) }
	}
	cases := []govCase{
		// Membership, for every kind.
		{name: "propose by a non-member", tx: raw(TxProposeRelease, alice, proposalPayload(t, v2)), code: CodeNotMember},
		{name: "approve by a non-member", setup: func(c *chain) { c.gov(op1, TxProposeRelease, proposalPayload(t, v2)); c.commit() },
			tx: raw(TxApproveRelease, alice, approvalPayload(t, v2)), code: CodeNotMember},
		{name: "schedule by a non-member", setup: approved2, tx: func(c *chain) *Tx {
			return c.govTx(carol, TxScheduleUpgrade, schedulePayload("2.0.0", c.head()+50))
		}, code: CodeNotMember},
		{name: "abort by a non-member", setup: scheduled2, tx: raw(TxAbortUpgrade, dave, abortPayload("2.0.0", "x")), code: CodeNotMember},
		{name: "rollback by a non-member", setup: func(c *chain) { c.approveRelease(v2); c.approveRelease(v3) },
			tx: raw(TxApproveRollback, bob, rollbackPayload("3.0.0", "2.0.0")), code: CodeNotMember},
		{name: "a KMG member is not an operator", tx: raw(TxProposeRelease, kmg1, proposalPayload(t, v2)), code: CodeNotMember},

		// Proposals.
		{name: "KMG threshold not met", tx: raw(TxProposeRelease, op1, proposalPayload(t, testRelease(t, "2.0.0", nil, kmg1))),
			code: CodeBadRelease},
		{name: "unsigned release", tx: func(c *chain) *Tx {
			sr := testRelease(t, "2.0.0", nil)
			sr.Signatures, sr.NodeID.Signatures, sr.AgentID.Signatures = nil, nil, nil
			return c.govTx(op1, TxProposeRelease, proposalPayload(t, sr))
		}, code: CodeBadRelease},
		{name: "signature outside the KMG", tx: raw(TxProposeRelease, op1, proposalPayload(t, testRelease(t, "2.0.0", nil, kmg1, kmg2, kmgOutsider))),
			code: CodeBadRelease},
		{name: "enclave id not signed by the threshold", tx: func(c *chain) *Tx {
			sr := testRelease(t, "2.0.0", nil)
			sr.NodeID.Signatures = sr.NodeID.Signatures[:1]
			return c.govTx(op1, TxProposeRelease, proposalPayload(t, sr))
		}, code: CodeBadRelease},
		{name: "manifest changed after signing", tx: func(c *chain) *Tx {
			sr := testRelease(t, "2.0.0", nil)
			sr.Manifest.Notes = "changed"
			return c.govTx(op1, TxProposeRelease, proposalPayload(t, sr))
		}, code: CodeBadRelease},
		{name: "wrong network", tx: raw(TxProposeRelease, op1, proposalPayload(t, testRelease(t, "2.0.0", func(m *release.Manifest) { m.NetworkID = "other-chain" }))),
			code: CodeWrongChain},
		{name: "duplicate proposal", setup: func(c *chain) { c.gov(op1, TxProposeRelease, proposalPayload(t, v2)); c.commit() },
			tx: raw(TxProposeRelease, op2, proposalPayload(t, v2)), code: CodeDuplicate},
		{name: "duplicate proposal with other content", setup: func(c *chain) { c.gov(op1, TxProposeRelease, proposalPayload(t, v2)); c.commit() },
			tx: raw(TxProposeRelease, op2, proposalPayload(t, testRelease(t, "2.0.0", func(m *release.Manifest) { m.Notes = "other" }))), code: CodeDuplicate},
		{name: "downgrade", setup: approved2, tx: raw(TxProposeRelease, op1, proposalPayload(t, testRelease(t, "1.9.9", nil))),
			code: CodeDowngrade},
		{name: "pre-release of an approved version", setup: approved2, tx: raw(TxProposeRelease, op1, proposalPayload(t, testRelease(t, "2.0.0-rc.1", nil))),
			code: CodeDowngrade},
		{name: "schema regression", setup: approved2, tx: raw(TxProposeRelease, op1, proposalPayload(t, testRelease(t, "2.1.0", func(m *release.Manifest) { m.SchemaVersion = 1 }))),
			code: CodeDowngrade},
		{name: "schema too high", tx: raw(TxProposeRelease, op1, proposalPayload(t, testRelease(t, "2.0.0", func(m *release.Manifest) { m.SchemaVersion = MaxReleaseSchema + 1 }))),
			code: CodeBadRelease},
		{name: "proposal not JSON", tx: raw(TxProposeRelease, op1, []byte("not json")), code: CodeMalformed},
		{name: "proposal with an unknown field", tx: raw(TxProposeRelease, op1, []byte(`{"manifest":{},"extra":1}`)), code: CodeMalformed},
		{name: "proposal with an invalid manifest", tx: func(c *chain) *Tx {
			sr := testRelease(t, "2.0.0", nil)
			sr.Manifest.Node.URL = "ftp://x"
			return c.govTx(op1, TxProposeRelease, proposalPayload(t, sr))
		}, code: CodeMalformed},
		{name: "proposal with an enclave id of another measurement", tx: func(c *chain) *Tx {
			sr := testRelease(t, "2.0.0", nil)
			sr.NodeID.MREnclave = tee.Measurement{9}
			return c.govTx(op1, TxProposeRelease, proposalPayload(t, sr))
		}, code: CodeMalformed},
		{name: "oversize proposal", tx: func(c *chain) *Tx {
			tx := &Tx{ChainID: testChain, Kind: TxProposeRelease, Nonce: 1, Payload: make([]byte, MaxGovernancePayloadSize+1)}
			if err := tx.Sign(op1); err != nil {
				t.Fatal(err)
			}
			return tx
		}, code: CodeMalformed},

		// Approvals.
		{name: "approval of an unknown version", tx: raw(TxApproveRelease, op1, approvalPayload(t, v2)), code: CodeUnknownRelease},
		{name: "approval of another manifest", setup: func(c *chain) { c.gov(op1, TxProposeRelease, proposalPayload(t, v2)); c.commit() },
			tx:   raw(TxApproveRelease, op2, approvalPayload(t, testRelease(t, "2.0.0", func(m *release.Manifest) { m.Notes = "other" }))),
			code: CodeBadRelease},
		{name: "double approval by the proposer", setup: func(c *chain) { c.gov(op1, TxProposeRelease, proposalPayload(t, v2)); c.commit() },
			tx: raw(TxApproveRelease, op1, approvalPayload(t, v2)), code: CodeDuplicate},
		{name: "double approval after the quorum", setup: approved2, tx: raw(TxApproveRelease, op2, approvalPayload(t, v2)), code: CodeDuplicate},
		{name: "approval of a release older than an approved one", setup: func(c *chain) {
			c.gov(op1, TxProposeRelease, proposalPayload(t, v2))
			c.commit()
			c.approveRelease(v3)
		}, tx: raw(TxApproveRelease, op2, approvalPayload(t, v2)), code: CodeDowngrade},
		{name: "approval with a bad version", tx: raw(TxApproveRelease, op1, EncodeReleaseApproval(ReleaseApproval{Version: "v2"})), code: CodeMalformed},
		{name: "approval truncated", tx: raw(TxApproveRelease, op1, approvalPayload(t, v2)[:20]), code: CodeMalformed},

		// Schedules.
		{name: "schedule of an unknown release", tx: func(c *chain) *Tx { return c.govTx(op1, TxScheduleUpgrade, schedulePayload("2.0.0", 100)) },
			code: CodeUnknownRelease},
		{name: "schedule of an unapproved release", setup: func(c *chain) { c.gov(op1, TxProposeRelease, proposalPayload(t, v2)); c.commit() },
			tx: raw(TxScheduleUpgrade, op1, schedulePayload("2.0.0", 100)), code: CodeNotApproved},
		{name: "schedule at a past height", setup: func(c *chain) { approved2(c); c.commit(); c.commit() },
			tx: raw(TxScheduleUpgrade, op1, schedulePayload("2.0.0", 1)), code: CodeTooSoon},
		{name: "schedule just too soon", setup: approved2, tx: func(c *chain) *Tx {
			return c.govTx(op1, TxScheduleUpgrade, schedulePayload("2.0.0", c.head()+MinScheduleLead-1))
		}, code: CodeTooSoon},
		{name: "schedule while another is in force", setup: func(c *chain) { scheduled2(c); c.approveRelease(v3) }, tx: func(c *chain) *Tx {
			return c.govTx(op3, TxScheduleUpgrade, schedulePayload("3.0.0", c.head()+MinScheduleLead+20))
		}, code: CodeConflict},
		{name: "schedule of the schedule in force", setup: scheduled2, tx: func(c *chain) *Tx {
			s, _, _ := c.s.ActiveSchedule()
			return c.govTx(op3, TxScheduleUpgrade, schedulePayload("2.0.0", s.ActivationHeight))
		}, code: CodeDuplicate},
		{name: "schedule of an older release without a rollback", setup: func(c *chain) { c.approveRelease(v2); c.approveRelease(v3) }, tx: func(c *chain) *Tx {
			return c.govTx(op1, TxScheduleUpgrade, schedulePayload("2.0.0", c.head()+MinScheduleLead))
		}, code: CodeDowngrade},
		{name: "duplicate schedule vote", setup: func(c *chain) {
			approved2(c)
			c.gov(op1, TxScheduleUpgrade, schedulePayload("2.0.0", 40))
			c.commit()
		}, tx: raw(TxScheduleUpgrade, op1, schedulePayload("2.0.0", 40)), code: CodeDuplicate},
		{name: "schedule at height zero", tx: raw(TxScheduleUpgrade, op1, schedulePayload("2.0.0", 0)), code: CodeMalformed},
		{name: "schedule with trailing bytes", tx: raw(TxScheduleUpgrade, op1, append(schedulePayload("2.0.0", 50), 0)), code: CodeMalformed},

		// Aborts.
		{name: "abort with nothing scheduled", setup: approved2, tx: raw(TxAbortUpgrade, op1, abortPayload("2.0.0", "x")), code: CodeConflict},
		{name: "abort of another version", setup: scheduled2, tx: raw(TxAbortUpgrade, op1, abortPayload("3.0.0", "x")), code: CodeConflict},
		{name: "duplicate abort vote", setup: func(c *chain) { scheduled2(c); c.gov(op1, TxAbortUpgrade, abortPayload("2.0.0", "first")) },
			tx: raw(TxAbortUpgrade, op1, abortPayload("2.0.0", "second")), code: CodeDuplicate},
		{name: "abort after the abort", setup: func(c *chain) {
			scheduled2(c)
			c.gov(op1, TxAbortUpgrade, abortPayload("2.0.0", "a"))
			c.gov(op2, TxAbortUpgrade, abortPayload("2.0.0", "b"))
		}, tx: raw(TxAbortUpgrade, op3, abortPayload("2.0.0", "c")), code: CodeConflict},
		{name: "abort without a reason", tx: raw(TxAbortUpgrade, op1, abortPayload("2.0.0", "")), code: CodeMalformed},
		{name: "abort with a reason that is not UTF-8", tx: raw(TxAbortUpgrade, op1, abortPayload("2.0.0", "\xff")), code: CodeMalformed},
		{name: "abort with an oversize reason", tx: raw(TxAbortUpgrade, op1, abortPayload("2.0.0", strings.Repeat("r", MaxAbortReasonLen+1))), code: CodeMalformed},

		// Rollbacks.
		{name: "rollback to an unapproved release", setup: func(c *chain) {
			c.gov(op1, TxProposeRelease, proposalPayload(t, v2))
			c.commit()
			c.approveRelease(v3)
		}, tx: raw(TxApproveRollback, op1, rollbackPayload("3.0.0", "2.0.0")), code: CodeNotApproved},
		{name: "rollback from an unknown release", setup: approved2, tx: raw(TxApproveRollback, op1, rollbackPayload("3.0.0", "2.0.0")), code: CodeNotApproved},
		{name: "rollback to a newer release", tx: raw(TxApproveRollback, op1, rollbackPayload("2.0.0", "3.0.0")),
			code: CodeMalformed},
		{name: "rollback to the same release", tx: raw(TxApproveRollback, op1, rollbackPayload("2.0.0", "2.0.0")), code: CodeMalformed},
		{name: "duplicate rollback vote", setup: func(c *chain) {
			c.approveRelease(v2)
			c.approveRelease(v3)
			c.gov(op1, TxApproveRollback, rollbackPayload("3.0.0", "2.0.0"))
			c.commit()
		}, tx: raw(TxApproveRollback, op1, rollbackPayload("3.0.0", "2.0.0")), code: CodeDuplicate},
		{name: "rollback already recorded", setup: func(c *chain) {
			c.approveRelease(v2)
			c.approveRelease(v3)
			c.gov(op1, TxApproveRollback, rollbackPayload("3.0.0", "2.0.0"))
			c.gov(op2, TxApproveRollback, rollbackPayload("3.0.0", "2.0.0"))
			c.commit()
		}, tx: raw(TxApproveRollback, op3, rollbackPayload("3.0.0", "2.0.0")), code: CodeDuplicate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := govGenesis()
			if tc.genesis != nil {
				tc.genesis(g)
			}
			c := openChain(t, g)
			if tc.setup != nil {
				tc.setup(c)
			}
			tx := tc.tx(c)
			before, err := c.s.Account(tx.From)
			if err != nil {
				t.Fatal(err)
			}
			pool := c.s.PoolSize()
			digest := govDigest(t, c.s)

			res := c.submit(tx)
			if res.Accepted || res.Kind != CmdSubmitTx || res.TxID != tx.ID() {
				t.Fatalf("result %+v, want a rejection", res)
			}
			if res.Code != tc.code || res.Reason == "" {
				t.Fatalf("code %q (reason %q), want %q with a reason", res.Code, res.Reason, tc.code)
			}
			if st, ok, err := c.s.TxStatus(tx.ID()); err != nil || !ok || st.State != StateRejected || st.Code != tc.code || st.Reason != res.Reason {
				t.Fatalf("status %+v %v %v, want rejected with the code and reason", st, ok, err)
			}
			if a, _ := c.s.Account(tx.From); a != before {
				t.Fatalf("sender changed: %+v -> %+v", before, a)
			}
			if c.s.PoolSize() != pool {
				t.Fatalf("pool size changed: %d -> %d", pool, c.s.PoolSize())
			}
			if govDigest(t, c.s) != digest {
				t.Fatal("governance state changed")
			}
		})
	}
}

// TestGovernanceCommitWithoutEffect: transactions admitted on the same
// state can conflict; the later ones commit (their nonce is spent) without
// effect, and their status says why.
func TestGovernanceCommitWithoutEffect(t *testing.T) {
	c := openChain(t, govGenesis())
	v2 := testRelease(t, "2.0.0", nil)
	first := c.gov(op1, TxProposeRelease, proposalPayload(t, v2))
	second := c.gov(op2, TxProposeRelease, proposalPayload(t, testRelease(t, "2.0.0", func(m *release.Manifest) { m.Notes = "rival" })))
	// op3 approves twice before either approval is committed.
	res := c.commit()
	c.gov(op3, TxApproveRelease, approvalPayload(t, v2))
	again := c.gov(op3, TxApproveRelease, approvalPayload(t, v2))
	res2 := c.commit()

	if st, _, _ := c.s.TxStatus(first.ID()); st != (TxStatus{State: StateCommitted, Height: res.Height, Code: CodeOK}) {
		t.Fatalf("first proposal %+v", st)
	}
	st, _, _ := c.s.TxStatus(second.ID())
	if st.State != StateCommitted || st.Height != res.Height || st.Code != CodeNoEffect || st.Reason == "" || !st.Code.Committed() {
		t.Fatalf("second proposal %+v", st)
	}
	st, _, _ = c.s.TxStatus(again.ID())
	if st.State != StateCommitted || st.Height != res2.Height || st.Code != CodeNoEffect || st.Reason == "" {
		t.Fatalf("second approval %+v", st)
	}
	rec, _, _ := c.s.Release("2.0.0")
	if !bytes.Equal(rec.Raw, proposalPayload(t, v2)) || !slices.Equal(rec.Approvers, []Address{addrOf(op1), addrOf(op3)}) || rec.ApprovedAt != res2.Height {
		t.Fatalf("record %+v", rec)
	}
	for _, k := range []ed25519.PrivateKey{op1, op2} {
		if a := c.account(k); a != (Account{Nonce: 1}) {
			t.Fatalf("account %+v: the nonce must be spent", a)
		}
	}
	if a := c.account(op3); a != (Account{Nonce: 2}) {
		t.Fatalf("op3 %+v", a)
	}
	if v := mustGovernance(t, c.s); len(v.Releases) != 1 {
		t.Fatalf("%d releases", len(v.Releases))
	}
}

// TestScheduleVotesReplaceAndActivationLead: a member's new vote replaces
// its previous one, and a quorum reached too close to the activation
// height has no effect.
func TestScheduleVotesReplaceAndActivationLead(t *testing.T) {
	c := openChain(t, govGenesis())
	c.approveRelease(testRelease(t, "2.0.0", nil))
	h := c.head() + MinScheduleLead
	c.gov(op1, TxScheduleUpgrade, schedulePayload("2.0.0", h+100))
	c.commit()
	h++
	c.gov(op1, TxScheduleUpgrade, schedulePayload("2.0.0", h))
	c.commit()
	if v := mustGovernance(t, c.s); !slices.Equal(v.ScheduleVotes, []ScheduleVote{{Member: addrOf(op1), Version: "2.0.0", ActivationHeight: h}}) {
		t.Fatalf("votes %+v", v.ScheduleVotes)
	}
	// op3 and op2 vote for another height. op2's vote is admitted in time
	// (H = head + MinScheduleLead), but payments ahead of it in the pool,
	// one per block, delay its block to H - MinActivationLead.
	hLate := c.head() + MinScheduleLead + 1
	c.gov(op3, TxScheduleUpgrade, schedulePayload("2.0.0", hLate))
	c.commit()
	for range MinScheduleLead - MinActivationLead {
		c.pay(alice, bob, 1)
	}
	if hLate != c.head()+MinScheduleLead {
		t.Fatalf("setup: head %d, hLate %d", c.head(), hLate)
	}
	late := c.gov(op2, TxScheduleUpgrade, schedulePayload("2.0.0", hLate))
	for c.s.PoolSize() > 0 {
		c.mustAccept(&Command{Kind: CmdBlock, Block: c.build(1)})
	}
	st, _, _ := c.s.TxStatus(late.ID())
	if st.State != StateCommitted || st.Code != CodeNoEffect || st.Reason == "" {
		t.Fatalf("late vote %+v", st)
	}
	if _, ok, _ := c.s.ActiveSchedule(); ok {
		t.Fatal("a schedule came into force too close to its activation height")
	}
}

// TestUpgradeHaltByMeasurement feeds the same raft entries to a node of
// the old MRENCLAVE and one of the scheduled MRENCLAVE: the old one commits
// nothing past the activation height, the new one continues; after an
// abort the old one continues too.
func TestUpgradeHaltByMeasurement(t *testing.T) {
	oldM, newM := nodeMeasurement("1.0.0"), nodeMeasurement("2.0.0")
	leader := openChainAt(t, t.TempDir(), Options{Genesis: govGenesis(), LedgerKey: testLedgerKey(), SelfMeasurement: newM})
	var entries [][]byte
	add := func(cmd *Command) Result {
		e, err := SealEntry(testLedgerKey(), testChain, cmd)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
		return leader.apply(cmd)
	}
	govAdd := func(key ed25519.PrivateKey, kind TxKind, payload []byte) {
		if res := add(&Command{Kind: CmdSubmitTx, Tx: leader.govTx(key, kind, payload)}); !res.Accepted {
			t.Fatalf("%s: %s", kind, res.Reason)
		}
	}
	block := func() Result { return add(&Command{Kind: CmdBlock, Block: leader.build(0)}) }
	add(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1))}})
	sr := testRelease(t, "2.0.0", nil)
	govAdd(op1, TxProposeRelease, proposalPayload(t, sr))
	block()
	govAdd(op2, TxApproveRelease, approvalPayload(t, sr))
	block()
	h := leader.head() + MinScheduleLead
	govAdd(op1, TxScheduleUpgrade, schedulePayload("2.0.0", h))
	govAdd(op3, TxScheduleUpgrade, schedulePayload("2.0.0", h))
	block()
	for leader.head() < h+2 {
		if res := block(); !res.Accepted {
			t.Fatalf("the scheduled MRENCLAVE's block rejected: %s", res.Reason)
		}
	}

	open := func(m tee.Measurement) *Store {
		s, err := Open(t.TempDir(), Options{Genesis: govGenesis(), LedgerKey: testLedgerKey(), SelfMeasurement: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	oldNode, newNode, unknown := open(oldM), open(newM), open(tee.Measurement{})
	var rejected []Code
	for i, e := range entries {
		cmd, err := OpenEntry(testLedgerKey(), testChain, e)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []*Store{newNode, unknown} {
			if _, err := s.Apply(uint64(i+1), cmd); err != nil {
				t.Fatal(err)
			}
		}
		res, err := oldNode.Apply(uint64(i+1), cmd)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Kind == CmdBlock && !res.Accepted {
			rejected = append(rejected, res.Code)
		}
	}
	if hh, _ := newNode.Head(); hh != h+2 {
		t.Fatalf("new node head %d, want %d", hh, h+2)
	}
	for name, s := range map[string]*Store{"old": oldNode, "unmeasured": unknown} {
		if hh, _ := s.Head(); hh != h {
			t.Fatalf("%s node head %d, want the activation height %d", name, hh, h)
		}
	}
	if len(rejected) != 2 || rejected[0] != CodeHalted {
		t.Fatalf("old node rejections %q", rejected)
	}
	if hh, ok, _ := oldNode.UpgradeHaltHeight(); !ok || hh != h {
		t.Fatalf("old UpgradeHaltHeight %d %v", hh, ok)
	}
	if _, ok, _ := newNode.UpgradeHaltHeight(); ok {
		t.Fatal("the new node halts")
	}
	if _, err := oldNode.BuildBlock(1, nodeSigner(1), genesisTime.Add(time.Hour), 0); !errors.Is(err, ErrHalted) {
		t.Fatalf("old BuildBlock past H: %v, want ErrHalted", err)
	}
	if _, err := newNode.BuildBlock(1, nodeSigner(1), genesisTime.Add(time.Hour), 0); err != nil {
		t.Fatalf("new BuildBlock: %v", err)
	}

	// The abort is admitted on the halted old node and lets it continue.
	oc := &chain{t: t, s: oldNode, index: oldNode.AppliedIndex(), clock: genesisTime.Add(time.Hour)}
	oc.gov(op1, TxAbortUpgrade, abortPayload("2.0.0", "new nodes do not attest"))
	oc.gov(op2, TxAbortUpgrade, abortPayload("2.0.0", "agreed"))
	if res := oc.commit(); res.Height != h+1 || len(res.TxIDs) != 2 {
		t.Fatalf("old node after the abort: %+v", res)
	}
	if a, _ := oldNode.Aborts(); len(a) != 1 || a[0].Height != h {
		t.Fatalf("aborts %+v", a)
	}
}

// TestGovernanceDeterminism: two stores fed the same governance workload
// end with identical databases.
func TestGovernanceDeterminism(t *testing.T) {
	self := nodeMeasurement("1.0.0")
	leader := openChainAt(t, t.TempDir(), Options{Genesis: govGenesis(), LedgerKey: testLedgerKey(), SelfMeasurement: self})
	var entries [][]byte
	add := func(cmd *Command) {
		e, err := SealEntry(testLedgerKey(), testChain, cmd)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
		leader.apply(cmd)
	}
	gov := func(key ed25519.PrivateKey, kind TxKind, payload []byte) {
		add(&Command{Kind: CmdSubmitTx, Tx: leader.govTx(key, kind, payload)})
	}
	block := func() { add(&Command{Kind: CmdBlock, Block: leader.build(0)}) }
	add(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1))}})
	v2, v3 := testRelease(t, "2.0.0", nil), testRelease(t, "3.0.0", nil)
	gov(op1, TxProposeRelease, proposalPayload(t, v2))
	gov(op2, TxProposeRelease, proposalPayload(t, v2))   // no effect
	gov(alice, TxProposeRelease, proposalPayload(t, v3)) // rejected
	add(&Command{Kind: CmdSubmitTx, Tx: NewPayment(testChain, alice, addrOf(op1), 5, 1)})
	block()
	gov(op3, TxApproveRelease, approvalPayload(t, v2))
	gov(op2, TxProposeRelease, proposalPayload(t, v3))
	block()
	gov(op1, TxApproveRelease, approvalPayload(t, v3))
	block()
	h := leader.head() + MinScheduleLead
	gov(op1, TxScheduleUpgrade, schedulePayload("3.0.0", h))
	gov(op2, TxScheduleUpgrade, schedulePayload("3.0.0", h))
	block()
	gov(op3, TxAbortUpgrade, abortPayload("3.0.0", "x"))
	gov(op1, TxAbortUpgrade, abortPayload("3.0.0", "y"))
	gov(op2, TxApproveRollback, rollbackPayload("3.0.0", "2.0.0"))
	gov(op3, TxApproveRollback, rollbackPayload("3.0.0", "2.0.0"))
	block()
	block()

	want := dbDigest(t, leader.s.DB())
	wantView := mustGovernance(t, leader.s)
	if len(wantView.Releases) != 2 || len(wantView.Approved) != 2 || len(wantView.Aborts) != 1 || len(wantView.Rollbacks) != 1 {
		t.Fatalf("workload did not exercise governance: %+v", wantView)
	}
	for i := range 2 {
		s, err := Open(t.TempDir(), Options{Genesis: govGenesis(), LedgerKey: testLedgerKey(), SelfMeasurement: self})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		feed(t, s, entries)
		if got := dbDigest(t, s.DB()); got != want {
			t.Fatalf("store %d: database differs from the leader's", i)
		}
		if got := govDigest(t, s); got != govDigest(t, leader.s) {
			t.Fatalf("store %d: governance differs", i)
		}
	}
}

func TestFitBody(t *testing.T) {
	big := &Tx{ChainID: testChain, Kind: TxProposeRelease, Nonce: 1, Payload: bytes.Repeat([]byte{'x'}, MaxGovernancePayloadSize)}
	if err := big.Sign(op1); err != nil {
		t.Fatal(err)
	}
	raw := big.Encode()
	n := MaxBodySize/len(raw) + 5
	entries := make([]poolEntry, n)
	for i := range entries {
		entries[i] = poolEntry{raw: raw, tx: big}
	}
	fit := fitBody(entries)
	if len(fit) == 0 || len(fit) >= n {
		t.Fatalf("fitBody kept %d of %d", len(fit), n)
	}
	txs := func(es []poolEntry) []*Tx {
		out := make([]*Tx, len(es))
		for i, e := range es {
			out[i] = e.tx
		}
		return out
	}
	if _, err := SealBody(testLedgerKey(), testChain, 1, Hash{}, txs(fit)); err != nil {
		t.Fatalf("the kept prefix does not seal: %v", err)
	}
	if _, err := SealBody(testLedgerKey(), testChain, 1, Hash{}, txs(entries[:len(fit)+1])); err == nil {
		t.Fatal("one more transaction also fits: fitBody is not the longest prefix")
	}
	small := entries[:3]
	if got := fitBody(small); len(got) != 3 {
		t.Fatalf("fitBody dropped entries that fit: %d", len(got))
	}
}

// BenchmarkAdmitProposal measures what admission of a proposal costs:
// strict JSON parsing and the KMG threshold verification of the manifest
// and both enclave IDs.
func BenchmarkAdmitProposal(b *testing.B) {
	payload := proposalPayload(b, testRelease(b, "2.0.0", nil))
	kmg := govGenesis().KMG
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for b.Loop() {
		sr, err := DecodeReleaseProposal(payload)
		if err != nil {
			b.Fatal(err)
		}
		if err := sr.Verify(kmg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGovernanceView reads the whole governance state of a chain with
// 20 approved releases, as GET /v1/releases does.
func BenchmarkGovernanceView(b *testing.B) {
	g := govGenesis()
	g.NOG.Threshold = 1
	c := openChain(b, g)
	for i := range 20 {
		c.gov(op1, TxProposeRelease, proposalPayload(b, testRelease(b, fmt.Sprintf("1.%d.0", i+1), nil)))
		c.commit()
	}
	b.ResetTimer()
	for b.Loop() {
		v, err := c.s.Governance()
		if err != nil || len(v.Approved) != 20 {
			b.Fatalf("%v %v", v, err)
		}
	}
}
