package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/teeup/teeup/nodeapi"
)

// nodeCollector exposes the node's state as Prometheus metrics, read at
// scrape time so nothing has to be updated on the hot path.
type nodeCollector struct {
	n                                           *Node
	height, pending, peers, leader, ingressOpen *prometheus.Desc
	// Catch-up: sync state (one series per state, 1 for the current one),
	// blocks behind the network, state transfer bytes.
	syncState, behind, transferDone, transferTotal *prometheus.Desc
	// refused counts blocks this node's apply refused (node.refusedBlocks).
	refused *prometheus.Desc
}

func (n *Node) metricsCollector() prometheus.Collector {
	labels := prometheus.Labels{"chain_id": n.genesis.ChainID, "mrenclave": n.identity.UniqueID.Short()}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("teeup_node_"+name, help, nil, labels)
	}
	return &nodeCollector{
		n:           n,
		height:      d("height", "Height of the newest committed block."),
		pending:     d("pending_transactions", "Admitted transactions waiting for a block."),
		peers:       d("connected_peers", "Peers with a live attested connection."),
		leader:      d("is_leader", "1 if this node leads consensus."),
		ingressOpen: d("ingress_open", "1 if client ingress is open."),
		syncState: prometheus.NewDesc("teeup_node_sync_state", "1 for the node's sync state (current, catching_up, diverged, removed).",
			[]string{"state"}, labels),
		behind:        d("behind_blocks", "Blocks this node is behind the highest current peer."),
		transferDone:  d("state_transfer_received_bytes", "Bytes of the state snapshot being received (0 when none)."),
		transferTotal: d("state_transfer_total_bytes", "Size of the state snapshot being received (0 when none)."),
		refused:       d("blocks_refused_total", "Committed blocks this node's apply refused as a whole (an invalid payment, a stale height): every node refuses the same ones."),
	}
}

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.height, c.pending, c.peers, c.leader, c.ingressOpen, c.syncState, c.behind, c.transferDone, c.transferTotal, c.refused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Status()
	connected := 0
	for _, p := range st.Peers {
		if p.Connected {
			connected++
		}
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(c.height, prometheus.GaugeValue, float64(st.Height))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.Pending))
	ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(connected))
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, b(st.Leader == st.NodeID))
	ch <- prometheus.MustNewConstMetric(c.ingressOpen, prometheus.GaugeValue, b(st.Ingress == nodeapi.IngressOpen))
	for _, state := range []string{nodeapi.SyncCurrent, nodeapi.SyncCatchingUp, nodeapi.SyncDiverged, nodeapi.SyncRemoved} {
		ch <- prometheus.MustNewConstMetric(c.syncState, prometheus.GaugeValue, b(st.Sync.State == state), state)
	}
	ch <- prometheus.MustNewConstMetric(c.behind, prometheus.GaugeValue, float64(st.Sync.BehindBy))
	var done, total int64
	if tr := st.Sync.Transfer; tr != nil {
		done, total = tr.DoneBytes, tr.TotalBytes
	}
	ch <- prometheus.MustNewConstMetric(c.transferDone, prometheus.GaugeValue, float64(done))
	ch <- prometheus.MustNewConstMetric(c.transferTotal, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(c.n.refusedBlocks.Load()))
}
