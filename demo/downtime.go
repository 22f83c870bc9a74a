package demo

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/flagday"
)

// Downtime is a coordinator-free flag day's client downtime as the
// clients saw it, and where it went.
type Downtime struct {
	// Client is the longest gap between two acknowledged payments around
	// the activation height: from GapStart (the last payment acknowledged
	// before) to GapEnd (the first one after).
	Client           time.Duration `json:"client_ns"`
	GapStart, GapEnd time.Time
	// Ingress is the chain's view: from the block at which the old nodes
	// closed client ingress (H − ingress_close_blocks) to the block that
	// made the flag day ready, on which the new nodes reopen it (block
	// times; 0 when a block is missing).
	Ingress time.Duration `json:"ingress_ns"`
	// Steps are consecutive segments from GapStart to GapEnd; they add up
	// to Client.
	Steps []StepTime `json:"steps"`
	// Hosts are the per-host details, from the agents' journals.
	Hosts []HostDowntime `json:"hosts"`
}

// HostDowntime is one host's part of the downtime.
type HostDowntime struct {
	ID uint64 `json:"id"`
	// Poll is block H → the agent starting the handover (it polls its
	// node); Handover is the handover itself (old node stops → new node
	// serves), with the agent journal's steps.
	Poll     time.Duration `json:"poll_ns"`
	Handover time.Duration `json:"handover_ns"`
	Steps    []StepTime    `json:"steps"`
	// Proof is the new node serving → its readiness record submitted
	// (leader known, peers attested, test payments committed); Ready is
	// that submission → the agent seeing the chain ready.
	Proof time.Duration `json:"proof_ns"`
	Ready time.Duration `json:"ready_ns"`
}

// Milestones are the flag day's moments the downtime breakdown is cut at:
// block times from the chain, handover times from the agents.
type Milestones struct {
	// IngressClosed, Halt, FirstNew and Ready are the times of the blocks
	// H − ingress_close_blocks, H (the old network's last), H + 1 (the new
	// network's first) and the block that made the flag day ready.
	IngressClosed, Halt, FirstNew, Ready time.Time
	// Quorum is how many hosts the new network needs to commit.
	Quorum int
	// Hosts are the hosts' flag-day states and upgrade records (nil when
	// the agent did not answer).
	Hosts []HostMilestones
}

// HostMilestones is one host's flag-day state and upgrade record.
type HostMilestones struct {
	ID      uint64
	State   *agentapi.FlagDayState
	Upgrade *agentapi.UpgradeRecord
}

// BreakDown computes the downtime from the acknowledgement times acks
// (any order) within [from, to] and the milestones. The segments are cut
// at the milestones in flag-day order, each clamped to its neighbours, so
// they add up to the client downtime: reach H, the quorum's handover, the
// new network's first commit, readiness (proof and records), reopen (the
// first acknowledged payment after ready).
func BreakDown(acks []time.Time, from, to time.Time, m Milestones) *Downtime {
	d := &Downtime{}
	in := make([]time.Time, 0, len(acks))
	for _, t := range acks {
		if !t.Before(from) && !t.After(to) {
			// Wall clock only: the segments are cut at block times, which
			// have no monotonic reading, and must add up to the gap.
			in = append(in, t.Round(0))
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].Before(in[j]) })
	for i := 1; i < len(in); i++ {
		if g := in[i].Sub(in[i-1]); g > d.Client {
			d.Client, d.GapStart, d.GapEnd = g, in[i-1], in[i]
		}
	}
	if !m.IngressClosed.IsZero() && !m.Ready.IsZero() {
		d.Ingress = m.Ready.Sub(m.IngressClosed)
	}
	var served []time.Time
	for _, h := range m.Hosts {
		hd := HostDowntime{ID: h.ID}
		if s := h.State; s != nil {
			if !m.Halt.IsZero() && !s.HandoverStartedAt.IsZero() {
				hd.Poll = s.HandoverStartedAt.Sub(m.Halt)
			}
			if !s.HandedOverAt.IsZero() {
				hd.Handover = s.HandedOverAt.Sub(s.HandoverStartedAt)
				served = append(served, s.HandedOverAt)
				if !s.ReadinessSentAt.IsZero() {
					hd.Proof = s.ReadinessSentAt.Sub(s.HandedOverAt)
				}
			}
			if !s.ReadinessSentAt.IsZero() && !s.ReadyAt.IsZero() {
				hd.Ready = s.ReadyAt.Sub(s.ReadinessSentAt)
			}
		}
		if up := h.Upgrade; up != nil {
			for _, st := range up.Steps {
				hd.Steps = append(hd.Steps, StepTime{Name: string(st.Phase), Duration: st.Duration})
			}
		}
		d.Hosts = append(d.Hosts, hd)
	}
	if d.Client == 0 {
		return d
	}
	slices.SortFunc(served, func(a, b time.Time) int { return a.Compare(b) })
	var quorumServed time.Time
	if q := m.Quorum; q > 0 && q <= len(served) {
		quorumServed = served[q-1]
	}
	cut := d.GapStart
	for _, seg := range []struct {
		name string
		at   time.Time
	}{
		{"reach H (ingress closes H−k blocks before; the old nodes commit to H)", m.Halt},
		{fmt.Sprintf("handover (block H → %d of %d new nodes serving)", m.Quorum, len(m.Hosts)), quorumServed},
		{"new network's first commit (block H+1)", m.FirstNew},
		{"readiness (attestation, test payments, records → ready block)", m.Ready},
		{"reopen (ingress reopens on the ready block → first payment acknowledged)", d.GapEnd},
	} {
		at := seg.at
		if at.IsZero() || at.Before(cut) {
			at = cut
		}
		if at.After(d.GapEnd) {
			at = d.GapEnd
		}
		d.Steps = append(d.Steps, StepTime{Name: seg.name, Duration: at.Sub(cut)})
		cut = at
	}
	return d
}

// ackLog records when payments were acknowledged (loadgen OnAck).
type ackLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (l *ackLog) add(t time.Time) {
	l.mu.Lock()
	l.times = append(l.times, t)
	l.mu.Unlock()
}

func (l *ackLog) snapshot() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.times)
}

// printDowntime writes the downtime and its breakdown.
func printDowntime(w io.Writer, d *Downtime) {
	fmt.Fprintf(w, "client downtime (longest gap between acknowledged payments): %s", d.Client.Round(time.Millisecond))
	if d.Ingress > 0 {
		fmt.Fprintf(w, "; chain: ingress closed → ready block %s", d.Ingress.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	for _, s := range d.Steps {
		fmt.Fprintf(w, "  %-76s %s\n", s.Name, s.Duration.Round(time.Millisecond))
	}
	for _, h := range d.Hosts {
		var steps []string
		for _, s := range h.Steps {
			steps = append(steps, fmt.Sprintf("%s %s", s.Name, s.Duration.Round(time.Millisecond)))
		}
		fmt.Fprintf(w, "  host %d: poll %s, handover %s (%s), proof %s, readiness → ready %s\n", h.ID,
			h.Poll.Round(time.Millisecond), h.Handover.Round(time.Millisecond), strings.Join(steps, ", "),
			h.Proof.Round(time.Millisecond), h.Ready.Round(time.Millisecond))
	}
}

// observedOutcome is the observation's outcome for the report.
func observedOutcome(o *flagday.Observation) string {
	switch {
	case o == nil:
		return "not observed"
	case o.Outcome != "":
		return o.Outcome
	case o.Settled:
		return "hosts ended differently"
	default:
		return "not settled"
	}
}
