package flagday

import (
	"bytes"
	"strings"
	"testing"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/nodeapi"
)

func TestObservationSummarize(t *testing.T) {
	done := func(outcome string) *decide.State {
		return &decide.State{Version: "2.0.0", ActivationHeight: 40, Stage: decide.StageDone, Outcome: outcome}
	}
	newChain := &nodeapi.FlagDay{Version: "2.0.0", ActivationHeight: 40, ThisNodeRuns: true, Outcome: nodeapi.FlagDayReady,
		Members: []uint64{1, 2, 3}, Quorum: 2, Records: []nodeapi.ReadinessRecord{{Node: 1}, {Node: 2}}}
	oldChain := &nodeapi.FlagDay{Version: "2.0.0", ActivationHeight: 40, Outcome: nodeapi.FlagDayPending}
	for _, tt := range []struct {
		name      string
		hosts     []HostView
		settled   bool
		outcome   string
		readiness *nodeapi.FlagDay
	}{
		{"all ready", []HostView{{ID: 1, Agent: done("ready"), Chain: oldChain}, {ID: 2, Agent: done("ready"), Chain: newChain}}, true, "ready", newChain},
		{"one still proving", []HostView{{ID: 1, Agent: done("ready")}, {ID: 2, Agent: &decide.State{Version: "2.0.0", ActivationHeight: 40, Stage: decide.StageProving}}}, false, "", nil},
		{"a host unreachable", []HostView{{ID: 1, Agent: done("aborted")}, {ID: 2, Err: "agent: refused"}}, false, "", nil},
		{"outcomes differ", []HostView{{ID: 1, Agent: done("aborted")}, {ID: 2, Agent: done("ready")}}, true, "", nil},
		{"all aborted", []HostView{{ID: 1, Agent: done("aborted"), Chain: oldChain}, {ID: 2, Agent: done("aborted")}}, true, "aborted", oldChain},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := &Observation{Hosts: tt.hosts}
			o.Summarize()
			if o.Settled != tt.settled || o.Outcome != tt.outcome || o.Readiness != tt.readiness || o.Version != "2.0.0" || o.ActivationHeight != 40 {
				t.Fatalf("summary settled=%v outcome=%q readiness=%v version %s at %d", o.Settled, o.Outcome, o.Readiness, o.Version, o.ActivationHeight)
			}
			var b bytes.Buffer
			o.WriteTable(&b)
			if !strings.Contains(b.String(), "flag day to 2.0.0 at height 40") {
				t.Fatalf("table:\n%s", b.String())
			}
		})
	}
}
