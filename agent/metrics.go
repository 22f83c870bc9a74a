package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus collectors, served at /metrics on
// the agent API.
type metrics struct {
	reg *prometheus.Registry
	// selfPhase counts self-upgrade phases reached (journalled).
	selfPhase *prometheus.CounterVec
	// selfStep is the duration of the step that last reached a phase.
	selfStep *prometheus.GaugeVec
	// selfFailures counts failed self-upgrade attempts.
	selfFailures prometheus.Counter
	// selfExec counts process replacements by a new agent.
	selfExec prometheus.Counter
	// info carries the running agent's measurement and build.
	info *prometheus.GaugeVec
}

// newMetrics creates the agent's collectors in their own registry.
func newMetrics() (*metrics, error) {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		selfPhase: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "teeup", Subsystem: "agent", Name: "self_upgrade_phase_total",
			Help: "Agent self-upgrade phases reached (started, staged, handed-over, installing, completed, failed).",
		}, []string{"phase"}),
		selfStep: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "teeup", Subsystem: "agent", Name: "self_upgrade_step_seconds",
			Help: "Duration of the agent self-upgrade step that last reached each phase.",
		}, []string{"phase"}),
		selfFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "teeup", Subsystem: "agent", Name: "self_upgrade_failures_total",
			Help: "Failed agent self-upgrade attempts (retried after a back-off).",
		}),
		selfExec: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "teeup", Subsystem: "agent", Name: "self_upgrade_exec_total",
			Help: "Times this process replaced itself with a new agent binary.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "teeup", Subsystem: "agent", Name: "info",
			Help: "The running agent: its MRENCLAVE and build version (value 1).",
		}, []string{"mrenclave", "version"}),
	}
	for _, c := range []prometheus.Collector{m.selfPhase, m.selfStep, m.selfFailures, m.selfExec, m.info} {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return m, nil
}
