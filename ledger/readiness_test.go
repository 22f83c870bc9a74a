package ledger

import (
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// opKeyOf is member n's operator key in the flag-day tests.
func opKeyOf(n uint64) ed25519.PrivateKey { return testKey(byte(70 + n)) }

// flagDayGenesis is a four-member network whose members have operators,
// governed by op1..op3 (quorum 2).
func flagDayGenesis() *Genesis {
	g := testGenesis(4)
	g.NOG = release.Group{Keys: []string{pubHex(op1), pubHex(op2), pubHex(op3)}, Threshold: 2}
	for i := range g.Nodes {
		g.Nodes[i].Operator = pubHex(opKeyOf(g.Nodes[i].ID))
	}
	return g
}

// flagDayChain opens a chain of flagDayGenesis whose store runs self,
// registers the four nodes, schedules release 2.0.0 and commits blocks up
// to the activation height, which it returns.
func flagDayChain(t *testing.T, self tee.Measurement) (*chain, uint64) {
	t.Helper()
	c := openChain(t, flagDayGenesis(), withSelf(self))
	for id := uint64(2); id <= 4; id++ {
		c.mustAccept(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: id, Key: addrOf(nodeSigner(id))}})
	}
	c.approveRelease(testRelease(t, "2.0.0", nil))
	h := c.head() + MinScheduleLead
	c.scheduleUpgrade("2.0.0", h)
	for c.head() < h {
		c.commit()
	}
	return c, h
}

func readinessPayload(member uint64, version string, h uint64, m tee.Measurement) []byte {
	var peers []PeerResult
	for id := uint64(1); id <= 4; id++ {
		if id != member {
			peers = append(peers, PeerResult{Node: id, OK: true})
		}
	}
	return EncodeReadinessReport(ReadinessReport{Member: member, Version: version, ActivationHeight: h, Measurement: m,
		Peers: peers, TestTxs: []Hash{{byte(member)}, {byte(member), 1}}})
}

func failurePayload(member uint64, version string, h uint64) []byte {
	return EncodeUpgradeFailure(UpgradeFailure{Member: member, Version: version, ActivationHeight: h, Reason: fmt.Sprintf("node %d did not serve", member)})
}

func mustReadiness(t *testing.T, s *Store, version string, h uint64) Readiness {
	t.Helper()
	r, ok, err := s.Readiness(version, h)
	if err != nil || !ok {
		t.Fatalf("Readiness(%s, %d): %v %v", version, h, ok, err)
	}
	return r
}

func TestReadinessQuorums(t *testing.T) {
	for _, tt := range []struct{ n, ready, fail int }{
		{1, 1, 1}, {2, 2, 1}, {3, 2, 2}, {4, 3, 2}, {5, 3, 3}, {7, 4, 4},
	} {
		if got := ReadinessQuorum(tt.n); got != tt.ready {
			t.Errorf("ReadinessQuorum(%d) = %d, want %d", tt.n, got, tt.ready)
		}
		if got := FailureQuorum(tt.n); got != tt.fail {
			t.Errorf("FailureQuorum(%d) = %d, want %d", tt.n, got, tt.fail)
		}
		if ReadinessQuorum(tt.n)+FailureQuorum(tt.n) != tt.n+1 {
			t.Errorf("n=%d: ready and abort quorums can both be met", tt.n)
		}
	}
}

// TestReadinessQuorumMakesReady: on the new chain, the third of four
// records makes the schedule ready; a fourth is still taken; at the
// deadline nobody is absent.
func TestReadinessQuorumMakesReady(t *testing.T) {
	newM := nodeMeasurement("2.0.0")
	c, h := flagDayChain(t, newM)
	for id := uint64(1); id <= 2; id++ {
		c.gov(nodeSigner(id), TxReadiness, readinessPayload(id, "2.0.0", h, newM))
	}
	c.commit()
	if r := mustReadiness(t, c.s, "2.0.0", h); r.Ready() || len(r.Records) != 2 || r.Quorum != 3 {
		t.Fatalf("after two records: %+v", r)
	}
	c.gov(nodeSigner(3), TxReadiness, readinessPayload(3, "2.0.0", h, newM))
	res := c.commit()
	r := mustReadiness(t, c.s, "2.0.0", h)
	if !r.Ready() || r.ReadyAt != res.Height {
		t.Fatalf("after three records: ready at %d, want %d", r.ReadyAt, res.Height)
	}
	if r.Records[2].Member != 3 || r.Records[2].Signer != addrOf(nodeSigner(3)) || len(r.Records[2].Peers) != 3 || len(r.Records[2].TestTxs) != 2 {
		t.Fatalf("record %+v", r.Records[2])
	}
	c.gov(nodeSigner(4), TxReadiness, readinessPayload(4, "2.0.0", h, newM))
	for c.head() < h+ReadinessDeadline {
		c.commit()
	}
	r = mustReadiness(t, c.s, "2.0.0", h)
	if len(r.Records) != 4 || r.ExpiredAt != 0 || len(r.Absent) != 0 || r.ReadyAt != res.Height {
		t.Fatalf("at the deadline: %+v", r)
	}
	if s, ok, _ := c.s.ActiveSchedule(); !ok || s.Version != "2.0.0" {
		t.Fatal("a ready schedule stays in force (restarted old nodes must still halt)")
	}
}

// TestReadinessAbsentAndExpired: the deadline marks the members without a
// record absent; without the quorum the schedule expires and takes no more
// records.
func TestReadinessAbsentAndExpired(t *testing.T) {
	newM := nodeMeasurement("2.0.0")
	for _, tt := range []struct {
		name    string
		records []uint64
		expired bool
		absent  []uint64
	}{
		{"quorum, one absent", []uint64{1, 2, 4}, false, []uint64{3}},
		{"no quorum", []uint64{2, 3}, true, []uint64{1, 4}},
		{"nobody", nil, true, []uint64{1, 2, 3, 4}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, h := flagDayChain(t, newM)
			for _, id := range tt.records {
				c.gov(nodeSigner(id), TxReadiness, readinessPayload(id, "2.0.0", h, newM))
			}
			for c.head() < h+ReadinessDeadline-1 {
				c.commit()
			}
			if r, _, _ := c.s.Readiness("2.0.0", h); r.ExpiredAt != 0 || len(r.Absent) != 0 {
				t.Fatalf("before the deadline: %+v", r)
			}
			c.commit()
			r, _, err := c.s.Readiness("2.0.0", h)
			if err != nil {
				t.Fatal(err)
			}
			if (r.ExpiredAt != 0) != tt.expired || fmt.Sprint(r.Absent) != fmt.Sprint(tt.absent) {
				t.Fatalf("at the deadline: expired at %d, absent %v; want expired %v, absent %v", r.ExpiredAt, r.Absent, tt.expired, tt.absent)
			}
			if tt.expired {
				late := c.govTx(nodeSigner(1), TxReadiness, readinessPayload(1, "2.0.0", h, newM))
				if res := c.submit(late); res.Accepted || !strings.Contains(res.Reason, "deadline passed") {
					t.Fatalf("a record after expiry: %+v", res)
				}
			}
		})
	}
}

func TestReadinessRejections(t *testing.T) {
	newM, oldM := nodeMeasurement("2.0.0"), nodeMeasurement("1.0.0")
	c, h := flagDayChain(t, newM)
	c.gov(nodeSigner(1), TxReadiness, readinessPayload(1, "2.0.0", h, newM))
	c.commit()
	for _, tt := range []struct {
		name    string
		key     ed25519.PrivateKey
		payload []byte
		want    string
	}{
		{"bad payload", nodeSigner(2), []byte{1, 2, 3}, "bad payload"},
		{"other version", nodeSigner(2), readinessPayload(2, "3.0.0", h, newM), "the schedule in force is release 2.0.0"},
		{"other height", nodeSigner(2), readinessPayload(2, "2.0.0", h+1, newM), "the schedule in force is release 2.0.0"},
		{"other measurement", nodeSigner(2), readinessPayload(2, "2.0.0", h, oldM), "the record names MRENCLAVE"},
		{"signed by the operator", opKeyOf(2), readinessPayload(2, "2.0.0", h, newM), "signed by its registered node key"},
		{"another node's key", nodeSigner(3), readinessPayload(2, "2.0.0", h, newM), "signed by its registered node key"},
		{"not a member", nodeSigner(9), readinessPayload(9, "2.0.0", h, newM), "not an active member"},
		{"duplicate", nodeSigner(1), readinessPayload(1, "2.0.0", h, newM), "already recorded readiness"},
		{"failure vote on the new chain", nodeSigner(2), failurePayload(2, "2.0.0", h), "cast on the old release's chain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kind := TxReadiness
			if strings.HasPrefix(tt.name, "failure") {
				kind = TxUpgradeFailure
			}
			res := c.submit(c.govTx(tt.key, kind, tt.payload))
			if res.Accepted || !strings.Contains(res.Reason, tt.want) {
				t.Fatalf("got accepted=%v %q, want a rejection containing %q", res.Accepted, res.Reason, tt.want)
			}
		})
	}

	t.Run("before the activation height", func(t *testing.T) {
		c := openChain(t, flagDayGenesis(), withSelf(newM))
		c.approveRelease(testRelease(t, "2.0.0", nil))
		h := c.head() + MinScheduleLead
		c.scheduleUpgrade("2.0.0", h)
		res := c.submit(c.govTx(nodeSigner(1), TxReadiness, readinessPayload(1, "2.0.0", h, newM)))
		if res.Accepted || !strings.Contains(res.Reason, "before the activation height") {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("on the old chain", func(t *testing.T) {
		c, h := flagDayChain(t, oldM)
		res := c.submit(c.govTx(nodeSigner(1), TxReadiness, readinessPayload(1, "2.0.0", h, newM)))
		if res.Accepted || !strings.Contains(res.Reason, "recorded on its own chain") {
			t.Fatalf("%+v", res)
		}
	})
}

// TestFailureVotesAbort: on the old chain halted at H, failure votes of
// FailureQuorum(4) = 2 members (node key or operator) abort the schedule
// when admitted, and the old chain continues.
func TestFailureVotesAbort(t *testing.T) {
	oldM := nodeMeasurement("1.0.0")
	c, h := flagDayChain(t, oldM)
	if _, err := c.s.BuildBlock(1, nodeSigner(1), c.nextTime(), 0); err == nil {
		t.Fatal("the old chain builds past H before the abort")
	}
	c.gov(nodeSigner(1), TxUpgradeFailure, failurePayload(1, "2.0.0", h))
	if _, ok, _ := c.s.ActiveSchedule(); !ok {
		t.Fatal("one failure vote of four aborted the schedule")
	}
	c.gov(opKeyOf(3), TxUpgradeFailure, failurePayload(3, "2.0.0", h))
	if _, ok, _ := c.s.ActiveSchedule(); ok {
		t.Fatal("two failure votes of four left the schedule in force")
	}
	aborts, err := c.s.Aborts()
	if err != nil || len(aborts) != 1 {
		t.Fatalf("aborts %+v %v", aborts, err)
	}
	if a := aborts[0]; a.Height != h || !strings.Contains(a.Reason, "readiness impossible") || len(a.Approvers) != 2 || a.Approvers[1] != addrOf(opKeyOf(3)) {
		t.Fatalf("abort record %+v", a)
	}
	r := mustReadiness(t, c.s, "2.0.0", h)
	if r.AbortedAt != h || len(r.Failures) != 2 || !r.HasFailure(3) {
		t.Fatalf("readiness %+v", r)
	}
	if res := c.commit(); res.Height != h+1 || len(res.TxIDs) != 2 {
		t.Fatalf("old chain after the abort: %+v", res)
	}
}

func TestFailureRejections(t *testing.T) {
	oldM := nodeMeasurement("1.0.0")
	c, h := flagDayChain(t, oldM)
	c.gov(nodeSigner(1), TxUpgradeFailure, failurePayload(1, "2.0.0", h))
	for _, tt := range []struct {
		name    string
		key     ed25519.PrivateKey
		payload []byte
		want    string
	}{
		{"bad payload", nodeSigner(2), []byte("x"), "bad payload"},
		{"other version", nodeSigner(2), failurePayload(2, "3.0.0", h), "the schedule in force"},
		{"another member's operator", opKeyOf(3), failurePayload(2, "2.0.0", h), "signed by its node key or its operator"},
		{"a NOG member", op1, failurePayload(2, "2.0.0", h), "signed by its node key or its operator"},
		{"not a member", nodeSigner(9), failurePayload(9, "2.0.0", h), "not an active member"},
		{"duplicate by the operator", opKeyOf(1), failurePayload(1, "2.0.0", h), "already cast"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := c.submit(c.govTx(tt.key, TxUpgradeFailure, tt.payload))
			if res.Accepted || !strings.Contains(res.Reason, tt.want) {
				t.Fatalf("got accepted=%v %q, want a rejection containing %q", res.Accepted, res.Reason, tt.want)
			}
		})
	}
	if _, ok, _ := c.s.ActiveSchedule(); !ok {
		t.Fatal("rejected votes aborted the schedule")
	}

	t.Run("before the old chain halted", func(t *testing.T) {
		c := openChain(t, flagDayGenesis(), withSelf(oldM))
		c.approveRelease(testRelease(t, "2.0.0", nil))
		h := c.head() + MinScheduleLead
		c.scheduleUpgrade("2.0.0", h)
		res := c.submit(c.govTx(nodeSigner(1), TxUpgradeFailure, failurePayload(1, "2.0.0", h)))
		if res.Accepted || !strings.Contains(res.Reason, "halted at the activation height") {
			t.Fatalf("%+v", res)
		}
	})
}

func TestReadinessCodecRoundTrip(t *testing.T) {
	p := ReadinessReport{Member: 2, Version: "2.0.0", ActivationHeight: 40, Measurement: nodeMeasurement("2.0.0"),
		Peers: []PeerResult{{Node: 1, OK: true}, {Node: 3, OK: false}}, TestTxs: []Hash{{1}, {2}}}
	got, err := DecodeReadinessReport(EncodeReadinessReport(p))
	if err != nil || fmt.Sprint(got) != fmt.Sprint(p) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	f := UpgradeFailure{Member: 2, Version: "2.0.0", ActivationHeight: 40, Reason: "did not serve"}
	gf, err := DecodeUpgradeFailure(EncodeUpgradeFailure(f))
	if err != nil || gf != f {
		t.Fatalf("round trip %+v %v", gf, err)
	}
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"peer is the member", EncodeReadinessReport(ReadinessReport{Member: 1, Version: "2.0.0", ActivationHeight: 1, Peers: []PeerResult{{Node: 1}}})},
		{"peer twice", EncodeReadinessReport(ReadinessReport{Member: 1, Version: "2.0.0", ActivationHeight: 1, Peers: []PeerResult{{Node: 2}, {Node: 2}}})},
		{"member zero", EncodeReadinessReport(ReadinessReport{Version: "2.0.0", ActivationHeight: 1})},
		{"height zero", EncodeReadinessReport(ReadinessReport{Member: 1, Version: "2.0.0"})},
		{"bad version", EncodeReadinessReport(ReadinessReport{Member: 1, Version: "two", ActivationHeight: 1})},
		{"trailing bytes", append(EncodeReadinessReport(p), 0)},
	} {
		if _, err := DecodeReadinessReport(tt.b); err == nil {
			t.Errorf("%s: decoded", tt.name)
		}
	}
	if _, err := DecodeUpgradeFailure(EncodeUpgradeFailure(UpgradeFailure{Member: 1, Version: "2.0.0", ActivationHeight: 1})); err == nil {
		t.Error("a failure vote without a reason decoded")
	}
}

func FuzzDecodeReadinessReport(f *testing.F) {
	f.Add(readinessPayload(1, "2.0.0", 40, nodeMeasurement("2.0.0")))
	f.Add(failurePayload(1, "2.0.0", 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := DecodeReadinessReport(b); err == nil {
			if again, err := DecodeReadinessReport(EncodeReadinessReport(p)); err != nil || fmt.Sprint(again) != fmt.Sprint(p) {
				t.Fatalf("re-decode %+v %v", again, err)
			}
		}
		if p, err := DecodeUpgradeFailure(b); err == nil {
			if again, err := DecodeUpgradeFailure(EncodeUpgradeFailure(p)); err != nil || again != p {
				t.Fatalf("re-decode %+v %v", again, err)
			}
		}
	})
}
