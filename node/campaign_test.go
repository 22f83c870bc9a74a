package node

import "testing"

// TestCampaignFirst: only the lowest-numbered member running the scheduled
// release, at the activation height, campaigns at once.
func TestCampaignFirst(t *testing.T) {
	l := openGovLedger(t, nodeMR("2.0.0"))
	newNode := testNode(t, l, nodeMR("2.0.0"))
	newNode.cfg.NodeID = 1
	oldNode := testNode(t, l, nodeMR("1.0.0"))
	oldNode.cfg.NodeID = 1
	other := testNode(t, l, nodeMR("2.0.0"))
	other.cfg.NodeID = 2 // not the lowest member
	if newNode.campaignFirst() {
		t.Fatal("campaigns without a schedule")
	}
	h := l.approveAndSchedule(govRelease(t, "2.0.0"))
	for l.head() < h {
		if newNode.campaignFirst() {
			t.Fatalf("campaigns at height %d, before the activation height %d", l.head(), h)
		}
		l.block()
	}
	if !newNode.campaignFirst() {
		t.Fatal("the lowest member of the new release does not campaign at the activation height")
	}
	if oldNode.campaignFirst() {
		t.Fatal("a node of the old release campaigns")
	}
	if other.campaignFirst() {
		t.Fatal("a node that is not the lowest member campaigns")
	}
	l.block()
	if newNode.campaignFirst() {
		t.Fatal("campaigns past the activation height (an ordinary restart)")
	}
}
