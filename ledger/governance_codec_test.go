package ledger

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

func TestTxKinds(t *testing.T) {
	cases := []struct {
		kind       TxKind
		name       string
		governance bool
		known      bool
		max        int
	}{
		{0, "tx kind 0", false, false, MaxPayloadSize},
		{TxPayment, "payment", false, true, MaxPayloadSize},
		{TxProposeRelease, "propose-release", true, true, MaxGovernancePayloadSize},
		{TxApproveRelease, "approve-release", true, true, MaxGovernancePayloadSize},
		{TxScheduleUpgrade, "schedule-upgrade", true, true, MaxGovernancePayloadSize},
		{TxAbortUpgrade, "abort-upgrade", true, true, MaxGovernancePayloadSize},
		{TxApproveRollback, "approve-rollback", true, true, MaxGovernancePayloadSize},
		{TxAddNode, "add-node", true, true, MaxGovernancePayloadSize},
		{TxRemoveNode, "remove-node", true, true, MaxGovernancePayloadSize},
		{TxRekeyNode, "rekey-node", true, true, MaxGovernancePayloadSize},
		{TxChangeGroup, "change-group", true, true, MaxGovernancePayloadSize},
		{TxReadiness, "readiness", true, true, MaxGovernancePayloadSize},
		{TxUpgradeFailure, "upgrade-failure", true, true, MaxGovernancePayloadSize},
		{13, "tx kind 13", false, false, MaxPayloadSize},
	}
	for _, c := range cases {
		if c.kind.String() != c.name || c.kind.IsGovernance() != c.governance || c.kind.Known() != c.known || c.kind.MaxPayload() != c.max {
			t.Errorf("%d: %q governance=%v known=%v max=%d", c.kind, c.kind, c.kind.IsGovernance(), c.kind.Known(), c.kind.MaxPayload())
		}
	}
}

// TestGovernanceTxPayloadLimit: a governance transaction may carry up to
// MaxGovernancePayloadSize, through every codec on its way; a payment
// still only MaxPayloadSize.
func TestGovernanceTxPayloadLimit(t *testing.T) {
	full, err := NewGovernanceTx(testChain, TxProposeRelease, make([]byte, MaxGovernancePayloadSize), 1, op1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeTx(full.Encode()); err != nil || !bytes.Equal(got.Encode(), full.Encode()) {
		t.Fatalf("DecodeTx of a full governance tx: %v", err)
	}
	sealed, err := SealEntry(testLedgerKey(), testChain, &Command{Kind: CmdSubmitTx, Tx: full})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := OpenEntry(testLedgerKey(), testChain, sealed); err != nil || c.Tx.ID() != full.ID() {
		t.Fatalf("OpenEntry: %v", err)
	}
	body, err := SealBody(testLedgerKey(), testChain, 2, Hash{}, []*Tx{full, full})
	if err != nil {
		t.Fatal(err)
	}
	if txs, err := OpenBody(testLedgerKey(), testChain, 2, Hash{}, body); err != nil || len(txs) != 2 {
		t.Fatalf("OpenBody: %d %v", len(txs), err)
	}
	over := encodeWith(func(e *wire.Encoder) {
		e.String(testChain)
		e.U8(uint8(TxApproveRelease))
		e.Fixed(make([]byte, 32))
		e.U64(1)
		e.U32(MaxGovernancePayloadSize + 1)
	})
	if _, err := DecodeTx(over); err == nil || !strings.Contains(err.Error(), "length 30721 exceeds the maximum 30720") {
		t.Fatalf("oversize governance payload: %v", err)
	}
	// The payment limit is unchanged, whatever the kind byte claims later.
	pay := encodeWith(func(e *wire.Encoder) {
		e.String(testChain)
		e.U8(uint8(TxPayment))
		e.Fixed(make([]byte, 32))
		e.U64(1)
		e.U32(MaxPayloadSize + 1)
	})
	if _, err := DecodeTx(pay); err == nil || !strings.Contains(err.Error(), "exceeds the maximum 4096") {
		t.Fatalf("oversize payment payload: %v", err)
	}
}

func TestNewGovernanceTxRejections(t *testing.T) {
	cases := []struct {
		name    string
		kind    TxKind
		payload []byte
		key     []byte
		want    string
	}{
		{"payment kind", TxPayment, nil, op1, "payment is not a governance kind"},
		{"unknown kind", 42, nil, op1, "tx kind 42 is not a governance kind"},
		{"oversize payload", TxScheduleUpgrade, make([]byte, MaxGovernancePayloadSize+1), op1, "payload has 30721 bytes"},
		{"short key", TxScheduleUpgrade, nil, op1[:10], "private key has 10 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewGovernanceTx(testChain, c.kind, c.payload, 1, c.key)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	tx, err := NewGovernanceTx(testChain, TxAbortUpgrade, abortPayload("2.0.0", "r"), 3, op2)
	if err != nil || tx.From != addrOf(op2) || tx.Nonce != 3 || tx.VerifySignature() != nil {
		t.Fatalf("NewGovernanceTx: %+v %v", tx, err)
	}
}

func TestGovernancePayloadRoundTrip(t *testing.T) {
	a := ReleaseApproval{Version: "2.0.0-rc.1", ManifestHash: Hash{1, 2, 3}}
	if got, err := DecodeReleaseApproval(EncodeReleaseApproval(a)); err != nil || got != a {
		t.Fatalf("approval: %+v %v", got, err)
	}
	s := UpgradeSchedule{Version: "2.0.0", ActivationHeight: 1 << 40}
	if got, err := DecodeUpgradeSchedule(EncodeUpgradeSchedule(s)); err != nil || got != s {
		t.Fatalf("schedule: %+v %v", got, err)
	}
	ab := UpgradeAbort{Version: "2.0.0", Reason: "attestation fails on node 3 ✗"}
	if got, err := DecodeUpgradeAbort(EncodeUpgradeAbort(ab)); err != nil || got != ab {
		t.Fatalf("abort: %+v %v", got, err)
	}
	r := RollbackApproval{From: "2.0.0", To: "2.0.0-rc.1"}
	if got, err := DecodeRollbackApproval(EncodeRollbackApproval(r)); err != nil || got != r {
		t.Fatalf("rollback: %+v %v", got, err)
	}
	sr := testRelease(t, "2.0.0", nil)
	got, err := DecodeReleaseProposal(proposalPayload(t, sr))
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := ManifestHash(sr)
	h2, _ := ManifestHash(got)
	if h1 != h2 || !reflect.DeepEqual(got.Signatures, sr.Signatures) {
		t.Fatal("proposal round trip changed the release")
	}
	if _, err := ManifestHash(nil); err == nil {
		t.Fatal("ManifestHash(nil) succeeded")
	}
}

func TestGovernancePayloadDecodeRejections(t *testing.T) {
	sr := testRelease(t, "2.0.0", nil)
	valid := proposalPayload(t, sr)
	mismatched := testRelease(t, "2.0.0", nil)
	mismatched.AgentID.Role = release.RoleNode
	decoders := map[string]func([]byte) error{
		"proposal": func(b []byte) error { _, err := DecodeReleaseProposal(b); return err },
		"approval": func(b []byte) error { _, err := DecodeReleaseApproval(b); return err },
		"schedule": func(b []byte) error { _, err := DecodeUpgradeSchedule(b); return err },
		"abort":    func(b []byte) error { _, err := DecodeUpgradeAbort(b); return err },
		"rollback": func(b []byte) error { _, err := DecodeRollbackApproval(b); return err },
	}
	cases := []struct {
		name, decoder string
		input         []byte
		want          string
	}{
		{"proposal empty", "proposal", nil, "decode release proposal"},
		{"proposal oversize", "proposal", append(valid, bytes.Repeat([]byte{' '}, MaxGovernancePayloadSize)...), "more than 30720"},
		{"proposal trailing data", "proposal", append(append([]byte{}, valid...), []byte(`{}`)...), "data after the JSON object"},
		{"proposal duplicate key", "proposal", []byte(`{"manifest":{},"manifest":{}}`), "appears twice"},
		{"proposal upper-case key", "proposal", []byte(`{"Manifest":{}}`), "not a lower-case field name"},
		{"proposal empty object", "proposal", []byte(`{}`), "manifest"},
		{"proposal inconsistent enclave id", "proposal", proposalPayload(t, mismatched), "agent enclave id names role"},
		{"approval empty", "approval", nil, "truncated"},
		{"approval short hash", "approval", EncodeReleaseApproval(ReleaseApproval{Version: "1.0.0"})[:20], "truncated"},
		{"approval trailing byte", "approval", append(EncodeReleaseApproval(ReleaseApproval{Version: "1.0.0"}), 0), "trailing"},
		{"approval long version", "approval", EncodeReleaseApproval(ReleaseApproval{Version: strings.Repeat("1", 65)}), "exceeds the maximum 64"},
		{"approval leading v", "approval", EncodeReleaseApproval(ReleaseApproval{Version: "v1.0.0"}), "without the leading v"},
		{"approval build metadata", "approval", EncodeReleaseApproval(ReleaseApproval{Version: "1.0.0+b"}), "build metadata"},
		{"schedule empty", "schedule", nil, "truncated"},
		{"schedule zero height", "schedule", schedulePayload("1.0.0", 0), "activation height is zero"},
		{"schedule bad version", "schedule", schedulePayload("1.0", 5), "want MAJOR.MINOR.PATCH"},
		{"schedule trailing", "schedule", append(schedulePayload("1.0.0", 5), 1), "trailing"},
		{"abort empty", "abort", nil, "truncated"},
		{"abort empty reason", "abort", abortPayload("1.0.0", ""), "the reason is empty"},
		{"abort bad utf-8", "abort", abortPayload("1.0.0", "ok\xc3"), "not UTF-8"},
		{"abort long reason", "abort", abortPayload("1.0.0", strings.Repeat("x", MaxAbortReasonLen+1)), "exceeds the maximum 512"},
		{"abort bad version", "abort", abortPayload("one", "r"), "want MAJOR.MINOR.PATCH"},
		{"rollback empty", "rollback", nil, "truncated"},
		{"rollback upward", "rollback", rollbackPayload("1.0.0", "1.0.1"), "1.0.0 is not newer than 1.0.1"},
		{"rollback same", "rollback", rollbackPayload("1.0.0", "1.0.0"), "is not newer than"},
		{"rollback bad from", "rollback", rollbackPayload("x", "1.0.0"), "want MAJOR.MINOR.PATCH"},
		{"rollback bad to", "rollback", rollbackPayload("1.0.0", "01.0.0"), "leading zero"},
		{"rollback trailing", "rollback", append(rollbackPayload("2.0.0", "1.0.0"), 0), "trailing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decoders[c.decoder](c.input)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	// Every proper prefix of a valid binary payload is refused.
	for name, valid := range map[string][]byte{
		"approval": approvalPayload(t, sr),
		"schedule": schedulePayload("2.0.0", 9),
		"abort":    abortPayload("2.0.0", "why"),
		"rollback": rollbackPayload("2.0.0", "1.0.0"),
	} {
		if err := decoders[name](valid); err != nil {
			t.Fatalf("valid %s: %v", name, err)
		}
		for n := 0; n < len(valid); n++ {
			if err := decoders[name](valid[:n]); err == nil {
				t.Fatalf("%s prefix of %d bytes decoded", name, n)
			}
		}
	}
}

func sampleGovState() *govState {
	return &govState{
		releases: 3, approved: 2, aborts: 1, rollbacks: 1,
		schedule:      &Schedule{Version: "3.0.0", NodeMREnclave: tee.Measurement{7}, ActivationHeight: 90, ScheduledAt: 70, Approvers: []Address{addrOf(op1), addrOf(op2)}},
		scheduleVotes: []ScheduleVote{{Member: addrOf(op3), Version: "3.0.0", ActivationHeight: 95}},
		abortVotes:    []AbortVote{{Member: addrOf(op1), Reason: "r"}},
		rollbackVotes: []RollbackVote{{Member: addrOf(op2), From: "3.0.0", To: "2.0.0"}},
	}
}

func TestGovernanceRecordsRoundTrip(t *testing.T) {
	g := sampleGovState()
	got, err := decodeGovState(g.encode())
	if err != nil || !reflect.DeepEqual(got, g) {
		t.Fatalf("gov state: %+v %v", got, err)
	}
	if got, err := decodeGovState((&govState{}).encode()); err != nil || !reflect.DeepEqual(got, &govState{}) {
		t.Fatalf("empty gov state: %+v %v", got, err)
	}
	sr := testRelease(t, "2.0.0", nil)
	rec := &ReleaseRecord{Version: "2.0.0", Raw: proposalPayload(t, sr), ManifestHash: Hash{4}, Proposer: addrOf(op1), ProposedAt: 5, ApprovedAt: 6, Approvers: []Address{addrOf(op1), addrOf(op3)}}
	gotRec, err := decodeReleaseRecord(encodeReleaseRecord(rec))
	if err != nil || gotRec.Release == nil || gotRec.Release.Manifest.Version != "2.0.0" {
		t.Fatalf("release record: %+v %v", gotRec, err)
	}
	gotRec.Release = nil
	if !reflect.DeepEqual(gotRec, rec) {
		t.Fatalf("release record %+v, want %+v", gotRec, rec)
	}
	ab := &AbortRecord{Version: "2.0.0", NodeMREnclave: tee.Measurement{1}, ActivationHeight: 9, ScheduledAt: 3, Height: 8, Reason: "why", Approvers: []Address{addrOf(op2)}}
	if got, err := decodeAbortRecord(encodeAbortRecord(ab)); err != nil || !reflect.DeepEqual(got, ab) {
		t.Fatalf("abort record: %+v %v", got, err)
	}
	rb := &RollbackRecord{From: "2.0.0", To: "1.0.0", Height: 4, Approvers: []Address{addrOf(op1), addrOf(op2)}}
	if got, err := decodeRollbackRecord(encodeRollbackRecord(rb)); err != nil || !reflect.DeepEqual(got, rb) {
		t.Fatalf("rollback record: %+v %v", got, err)
	}
}

func TestGovernanceRecordDecodeRejections(t *testing.T) {
	state := sampleGovState().encode()
	badVersion := append([]byte{9}, state[1:]...)
	tooManyApproved := (&govState{releases: 1, approved: 2}).encode()
	sr := testRelease(t, "2.0.0", nil)
	other := &ReleaseRecord{Version: "9.9.9", Raw: proposalPayload(t, sr)}
	notJSON := &ReleaseRecord{Version: "2.0.0", Raw: []byte("{")}
	cases := []struct {
		name   string
		decode func() error
		want   string
	}{
		{"state empty", func() error { _, err := decodeGovState(nil); return err }, "truncated"},
		{"state encoding version", func() error { _, err := decodeGovState(badVersion); return err }, "encoding version 9"},
		{"state truncated", func() error { _, err := decodeGovState(state[:len(state)-1]); return err }, "truncated"},
		{"state trailing", func() error { _, err := decodeGovState(append(append([]byte{}, state...), 0)); return err }, "trailing"},
		{"state bad bool", func() error {
			b := append([]byte{}, state...)
			b[1+32] = 2
			_, err := decodeGovState(b)
			return err
		}, "boolean byte 2"},
		{"state more approved than proposed", func() error { _, err := decodeGovState(tooManyApproved); return err }, "2 approved releases of 1 proposed"},
		{"release record holds another version", func() error { _, err := decodeReleaseRecord(encodeReleaseRecord(other)); return err }, "it holds release 2.0.0"},
		{"release record not JSON", func() error { _, err := decodeReleaseRecord(encodeReleaseRecord(notJSON)); return err }, "parse release"},
		{"release record truncated", func() error { _, err := decodeReleaseRecord(encodeReleaseRecord(other)[:30]); return err }, "truncated"},
		{"abort record truncated", func() error { _, err := decodeAbortRecord([]byte{0, 0, 0, 1}); return err }, "truncated"},
		{"rollback record trailing", func() error {
			_, err := decodeRollbackRecord(append(encodeRollbackRecord(&RollbackRecord{From: "1.0.0", To: "0.1.0"}), 0))
			return err
		}, "trailing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.decode(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestCorruptGovernanceIsAnError: a damaged g/state makes Apply of a
// governance transaction fail with an error (nothing written), never a
// silent rejection.
func TestCorruptGovernanceIsAnError(t *testing.T) {
	c := openChain(t, govGenesis())
	if err := c.s.db.Set(keyGovState, []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	applied := c.s.AppliedIndex()
	tx := c.govTx(op1, TxProposeRelease, proposalPayload(t, testRelease(t, "2.0.0", nil)))
	if _, err := c.s.Apply(applied+1, &Command{Kind: CmdSubmitTx, Tx: tx}); err == nil || !strings.Contains(err.Error(), "corrupt governance state") {
		t.Fatalf("Apply on corrupt governance: %v", err)
	}
	if c.s.AppliedIndex() != applied {
		t.Fatal("the applied index moved")
	}
	if _, err := c.s.Governance(); err == nil {
		t.Fatal("Governance read a corrupt state")
	}
	if _, _, err := c.s.ActiveSchedule(); err == nil {
		t.Fatal("ActiveSchedule read a corrupt state")
	}
	if _, err := c.s.BuildBlock(1, nodeSigner(1), genesisTime, 0); err == nil {
		t.Fatal("BuildBlock ignored a corrupt governance state")
	}
}

// TestGovernanceViewChecksCounters: records that disagree with the state's
// counters are reported, not served misaligned.
func TestGovernanceViewChecksCounters(t *testing.T) {
	cases := []struct {
		name  string
		setup func(c *chain)
		state *govState
	}{
		{"missing release records", nil, &govState{releases: 2}},
		{"missing approval indexes", func(c *chain) { c.approveRelease(testRelease(t, "2.0.0", nil)) }, &govState{releases: 1, approved: 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openChain(t, govGenesis())
			if tc.setup != nil {
				tc.setup(c)
			}
			if _, err := c.s.Governance(); err != nil {
				t.Fatalf("before the damage: %v", err)
			}
			if err := c.s.db.Set(keyGovState, tc.state.encode(), nil); err != nil {
				t.Fatal(err)
			}
			if _, err := c.s.Governance(); err == nil || !strings.Contains(err.Error(), "corrupt governance") {
				t.Fatalf("Governance: %v", err)
			}
		})
	}
}
