package node

import (
	"testing"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// TestFlagDayIngressRule: a node of the scheduled release reopens the
// ingress the upgrade closed once the chain records readiness; an old
// node once the chain records the abort; ingress an operator closed for
// another reason stays closed.
func TestFlagDayIngressRule(t *testing.T) {
	newM, oldM := nodeMR("2.0.0"), nodeMR("1.0.0")
	for _, tt := range []struct {
		name        string
		self        string
		otherReason bool
	}{
		{"new node, readiness", "2.0.0", false},
		{"old node, abort", "1.0.0", false},
		{"new node, closed by an operator", "2.0.0", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			self := nodeMR(tt.self)
			l := openGovLedger(t, self)
			n := testNode(t, l, self)
			h := l.approveAndSchedule(govRelease(t, "2.0.0"))
			for l.head() < h {
				l.block()
			}
			reason := upgradeIngressReason(ledger.Schedule{Version: "2.0.0", ActivationHeight: h})
			if tt.otherReason {
				reason = "maintenance"
			}
			if err := n.ingress.set(false, reason); err != nil {
				t.Fatal(err)
			}
			n.checkFlagDayIngress()
			if n.ingress.isOpen() {
				t.Fatal("ingress reopened before the chain decided")
			}
			fd, err := n.flagDayView("", 0)
			if err != nil || fd.Outcome != nodeapi.FlagDayPending || !fd.InForce || fd.Deadline != h+ledger.ReadinessDeadline {
				t.Fatalf("pending view %+v %v", fd, err)
			}
			want := nodeapi.FlagDayReady
			if self == newM {
				l.gov(govNodeK, ledger.TxReadiness, ledger.EncodeReadinessReport(ledger.ReadinessReport{Member: 1, Version: "2.0.0", ActivationHeight: h, Measurement: newM}))
				l.block()
			} else {
				if self != oldM {
					t.Fatal("bad test")
				}
				l.gov(govNodeK, ledger.TxUpgradeFailure, ledger.EncodeUpgradeFailure(ledger.UpgradeFailure{Member: 1, Version: "2.0.0", ActivationHeight: h, Reason: "new node did not serve"}))
				want = nodeapi.FlagDayAborted
			}
			n.checkFlagDayIngress()
			fd, err = n.flagDayView("", 0)
			if err != nil || fd.Outcome != want || fd.Version != "2.0.0" || fd.ActivationHeight != h || fd.ThisNodeRuns != (self == newM) {
				t.Fatalf("view %+v %v, want outcome %s", fd, err, want)
			}
			if n.ingress.isOpen() == tt.otherReason {
				t.Fatalf("ingress open=%v with reason %q after %s", n.ingress.isOpen(), reason, want)
			}
		})
	}
}
