package flagday

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
)

// WriteReport writes the record as report.json beside its journal and
// returns its path.
func WriteReport(root string, rec *Record) (string, error) {
	raw, err := json.MarshalIndent(struct {
		*Record
		DowntimeNS time.Duration `json:"downtime_ns"`
		Downtime   string        `json:"downtime"`
	}{rec, rec.Downtime(), rec.Downtime().Round(time.Millisecond).String()}, "", "  ")
	if err != nil {
		return "", err
	}
	p := layout.FlagDaysUnder(root).FlagDay(rec.ID).Report()
	if err := fsutil.WriteFileAtomic(p, append(raw, '\n'), 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// Summarize prints a human summary of a flag day.
func Summarize(w io.Writer, rec *Record) {
	fmt.Fprintf(w, "flag day %s — %s (%s mode)\n", rec.ID, rec.Outcome, rec.Mode)
	fmt.Fprintf(w, "  %s (%s) -> %s (%s), activation height %d\n", rec.FromVersion, rec.FromMREnclave.Short(), rec.Version, rec.ToMREnclave.Short(), rec.ActivationHeight)
	if !rec.FinishedAt.IsZero() {
		fmt.Fprintf(w, "  took %s; client downtime %s (ingress closed %s, reopened %s)\n",
			rec.FinishedAt.Sub(rec.StartedAt).Round(time.Millisecond), rec.Downtime().Round(time.Millisecond),
			rec.IngressClosedAt.Format(time.TimeOnly), rec.IngressReopenedAt.Format(time.TimeOnly))
	}
	if rec.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", rec.Error)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tSTATUS\tTIME\tDETAIL")
	for _, s := range rec.Steps {
		d := ""
		if s.Duration > 0 {
			d = s.Duration.Round(time.Millisecond).String()
		}
		detail := s.Detail
		if len(detail) > 110 {
			detail = detail[:110] + "…"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Name, s.Status, d, detail)
	}
	tw.Flush()
	hosts := append([]HostResult(nil), rec.Hosts...)
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].ID < hosts[j].ID })
	if len(hosts) > 0 {
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  HOST\tHALT HEIGHT\tHASH AT HALT\tSNAPSHOT\tFILES\tMANIFEST SHA-256\tHANDOVER SWAP\tFINAL HEIGHT")
		for _, h := range hosts {
			snap, files, sum := "-", 0, "-"
			if h.Snapshot != nil {
				snap, files, sum = h.Snapshot.Name, h.Snapshot.Files, short16(h.Snapshot.Checksum)
			}
			swap := "-"
			if h.Upgrade != nil {
				swap = swapTime(h.Upgrade.Steps).Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%d\t%s\t%s\t%d\n", h.ID, h.HeightAtHalt, short16(h.HashAtHalt), snap, files, sum, swap, h.FinalHeight)
		}
		tw.Flush()
	}
	for _, t := range rec.TestTxs {
		fmt.Fprintf(w, "  test %s payment %s committed at height %d (via node %d)\n", t.Kind, t.TxID, t.Height, t.Node)
	}
	if rb := rec.Rollback; rb != nil {
		fmt.Fprintf(w, "  rollback: %s", rb.Reason)
		if rb.AbortHeight != 0 {
			fmt.Fprintf(w, " (abort recorded on chain at height %d)", rb.AbortHeight)
		}
		fmt.Fprintln(w)
		for _, d := range rb.Discarded {
			fmt.Fprintf(w, "    host %d discarded %d transactions in blocks %d..%d\n", d.Host, d.Loss.Transactions, d.Loss.FromHeight, d.Loss.ToHeight)
		}
	}
}

func short16(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

// swapTime is the time from the old node stopping to the new one serving:
// the old-stopped, new-started and new-serving steps of the agent.
func swapTime(steps []agentapi.StepTiming) time.Duration {
	var d time.Duration
	for _, s := range steps {
		switch s.Phase {
		case agentapi.PhaseOldStopped, agentapi.PhaseNewStarted, agentapi.PhaseNewServing:
			d += s.Duration
		}
	}
	return d
}

// PlanReport describes what a flag day would do.
type PlanReport struct {
	Version   string
	Mode      Mode
	Steps     []PlanStep
	Nodes     []PlanNode
	Schedule  string
	Approvals string
	// Running is the release the chain runs ("" if it names none).
	Running string
	// Blocker says why the preflight would refuse the flag day on the
	// chain's governance state alone (a downgrade), "" if nothing does.
	Blocker string
}

// PlanStep is one step with the checks it makes.
type PlanStep struct {
	Name   string
	Checks string
}

// PlanNode is a node's current state.
type PlanNode struct {
	ID        uint64
	Height    uint64
	Version   string
	MREnclave string
	Ingress   nodeapi.IngressState
	Agent     string
	Staged    []string
	// Error says why the host's node or agent did not answer (empty:
	// both answered).
	Error string `json:",omitempty"`
}

// stepChecks explains what each step does and verifies.
var stepChecks = map[string]string{
	StepPreflight:    "release approved on chain with KMG signatures and newer than the release the chain runs (or an approved rollback allows it); its node MRENCLAVE differs from the running one; every node healthy on one version; every agent staged and verified the binary",
	StepSchedule:     "NOG quorum votes schedule version V at height H on chain (H ≥ head + lead); the schedule is in force",
	StepCloseIngress: "every node refuses new client requests (scheduled: nodes close ingress themselves before H; manual: closed now)",
	StepHalt:         "no transaction pending; every node stands at exactly H, halted, with the same block hash (manual: a network-wide halt at H is committed)",
	StepUpgrade:      "every agent: stop distribution, snapshot (Pebble checkpoint + state file + SHA-256 manifest), take the keys from the old node by local attestation, seal them, stop the old node, start V, hand the keys to V's signed MRENCLAVE only; V migrates its ledger",
	StepResume:       "manual: the halt height is cleared on the new network",
	StepVerifyChain:  "every node runs V's MRENCLAVE, agrees on block H, commits blocks past H",
	StepAttest:       "every V node attests every other V node afresh over mutual attested TLS (matrix)",
	StepPayments:     "a self payment and a cross payment on operator test accounts commit on every node (admin path; ingress still closed)",
	StepReopen:       "client ingress reopens on every node (downtime ends)",
	StepLive:         "for the live period: heights advance everywhere, hashes agree, attestation intact",
	StepFinalize:     "agents delete the old version's sealed keys (no rollback after this)",
}

// Plan reports the steps, checks and nodes of a flag day without changing
// anything.
func Plan(ctx context.Context, opt Options) (*PlanReport, error) {
	c, err := newCoordinator(opt)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	p := &PlanReport{Version: opt.Version, Mode: c.opt.Mode}
	for _, s := range stepsFor(c.opt.Mode, opt.Finalize) {
		p.Steps = append(p.Steps, PlanStep{Name: s, Checks: stepChecks[s]})
	}
	sts, _ := c.statuses(ctx)
	ags := c.agentStatuses(ctx)
	var unreachable []error
	for _, h := range opt.Topology.Hosts {
		pn := PlanNode{ID: h.ID, Version: "down", MREnclave: "-", Ingress: "-", Agent: "down"}
		if st, ok := sts[h.ID]; ok {
			pn.Height, pn.Version, pn.MREnclave, pn.Ingress = st.Height, st.Version, st.MREnclave.Short(), st.Ingress
		}
		if a, ok := ags[h.ID]; ok {
			pn.Agent, pn.Staged = a.Installed.Version, a.Staged
		}
		if err := c.reach(ctx, h.ID); err != nil {
			pn.Error = err.Error()
			unreachable = append(unreachable, err)
		}
		p.Nodes = append(p.Nodes, pn)
	}
	if g, err := c.governance(ctx); err == nil {
		if ri, ok := g.Release(opt.Version); ok {
			p.Approvals = fmt.Sprintf("%d of quorum %d approvals", len(ri.Approvers), g.Quorum)
			if ri.Approved() {
				p.Approvals += fmt.Sprintf(", approved at height %d", ri.ApprovedAt)
			}
		} else {
			p.Approvals = "not proposed on chain"
		}
		if g.Schedule != nil {
			p.Schedule = fmt.Sprintf("%s at height %d", g.Schedule.Version, g.Schedule.ActivationHeight)
		}
		p.Running = g.RunningRelease
		if err := checkNotDowngrade(g, opt.Version); err != nil {
			p.Blocker = err.Error()
		}
	}
	if len(unreachable) > 0 {
		return p, fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(unreachable...))
	}
	return p, nil
}

// PrintPlan writes a plan for humans.
func PrintPlan(w io.Writer, p *PlanReport) {
	fmt.Fprintf(w, "flag day plan: upgrade to %s (%s mode)\n  release: %s\n", p.Version, p.Mode, p.Approvals)
	if p.Running != "" {
		fmt.Fprintf(w, "  running on chain: %s\n", p.Running)
	}
	if p.Blocker != "" {
		fmt.Fprintf(w, "  BLOCKED: %s\n", p.Blocker)
	}
	if p.Schedule != "" {
		fmt.Fprintf(w, "  scheduled on chain: %s\n", p.Schedule)
	}
	fmt.Fprintln(w, "\nsteps (each idempotent and journalled; any failure before reopen-ingress rolls back):")
	for i, s := range p.Steps {
		fmt.Fprintf(w, "  %2d. %-20s %s\n", i+1, s.Name, s.Checks)
	}
	fmt.Fprintln(w, "\nnodes:")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tHEIGHT\tVERSION\tMRENCLAVE\tINGRESS\tAGENT\tSTAGED")
	for _, n := range p.Nodes {
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%v\n", n.ID, n.Height, n.Version, n.MREnclave, n.Ingress, n.Agent, n.Staged)
	}
	tw.Flush()
	for _, n := range p.Nodes {
		if n.Error != "" {
			fmt.Fprintf(w, "  host %d UNREACHABLE: %s\n", n.ID, n.Error)
		}
	}
}
