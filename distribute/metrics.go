package distribute

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the distributor's Prometheus collectors.
type metrics struct {
	uploaded prometheus.Counter // blocks Put to the destination
	verified prometheus.Counter // blocks found already stored with identical bytes
	next     prometheus.Gauge   // next height to publish
	errors   prometheus.Counter // failed steps (retried by Run or returned)
}

// newMetrics creates the collectors and registers them with reg if it is
// not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "teeup", Subsystem: "distribute", Name: "blocks_uploaded_total",
			Help: "Blocks uploaded to the destination.",
		}),
		verified: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "teeup", Subsystem: "distribute", Name: "blocks_verified_total",
			Help: "Blocks found already in the destination with the source's exact bytes (not uploaded again).",
		}),
		next: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "teeup", Subsystem: "distribute", Name: "next_block",
			Help: "Height of the next block to publish, as recorded in the state file.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "teeup", Subsystem: "distribute", Name: "errors_total",
			Help: "Failed distribution attempts.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.uploaded, m.verified, m.next, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register distribution metrics: %w", err)
		}
	}
	return m, nil
}
