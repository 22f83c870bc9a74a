package node

import (
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/teeup/teeup/ledger"
)

// TestMetricsReportSyncState: a node that is not running yet exports its
// sync state as catching_up, and the catch-up gauges and the refused
// blocks counter exist.
func TestMetricsReportSyncState(t *testing.T) {
	ing, err := loadIngress(filepath.Join(t.TempDir(), "ingress.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{genesis: &ledger.Genesis{ChainID: "test"}, ingress: ing}
	n.setPhase(phaseWaitingForKey)
	n.refusedBlocks.Add(2)
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.metricsCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" {
					name += "/" + l.GetValue()
				}
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"teeup_node_sync_state/catching_up": 1, "teeup_node_sync_state/current": 0,
		"teeup_node_sync_state/diverged": 0, "teeup_node_sync_state/removed": 0,
		"teeup_node_behind_blocks": 0, "teeup_node_state_transfer_received_bytes": 0,
		"teeup_node_blocks_refused_total": 2,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}
