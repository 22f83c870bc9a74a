package flagday

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/nodeapi"
)

// The observer: with coordinator-free agents, 'teeup flagday observe'
// only watches. It reads every host's node (the chain's flag-day view)
// and agent (the host's journalled part) over the topology's sockets or
// remote admin APIs, draws the progress table and, once every host has
// settled, writes the report from the chain's readiness records and the
// agents' journals. It casts no vote and changes nothing.

// HostView is one host as the observer saw it.
type HostView struct {
	ID uint64 `json:"id"`
	// Node is the node's status (nil: it did not answer; Err says why).
	Node *nodeapi.Status `json:"node,omitempty"`
	// Chain is the node's chain's view of the flag day.
	Chain *nodeapi.FlagDay `json:"chain,omitempty"`
	// Agent is the host's journalled part of the flag day.
	Agent *agentapi.FlagDayState `json:"agent,omitempty"`
	Err   string                 `json:"error,omitempty"`
}

// Observation is what the observer saw of every host at one moment, and
// the report it writes.
type Observation struct {
	At               time.Time  `json:"at"`
	Version          string     `json:"version"`
	ActivationHeight uint64     `json:"activation_height"`
	Hosts            []HostView `json:"hosts"`
	// Readiness is the readiness state from a node of the new release
	// (its chain holds the records), else from any node.
	Readiness *nodeapi.FlagDay `json:"readiness,omitempty"`
	// Settled is set once every host's agent finished the flag day.
	Settled bool `json:"settled"`
	// Outcome is "ready" or "aborted" once every host agrees, else "".
	Outcome string `json:"outcome,omitempty"`
}

// Summarize fills the flag day, the readiness view, Settled and Outcome
// from the hosts' views.
func (o *Observation) Summarize() {
	for _, h := range o.Hosts {
		if o.Version == "" && h.Agent != nil && h.Agent.Version != "" {
			o.Version, o.ActivationHeight = h.Agent.Version, h.Agent.ActivationHeight
		}
		if o.Version == "" && h.Chain != nil && h.Chain.Version != "" {
			o.Version, o.ActivationHeight = h.Chain.Version, h.Chain.ActivationHeight
		}
	}
	o.Readiness = nil
	for _, h := range o.Hosts {
		c := h.Chain
		if c == nil || c.Version != o.Version || c.ActivationHeight != o.ActivationHeight {
			continue
		}
		if o.Readiness == nil || (c.ThisNodeRuns && !o.Readiness.ThisNodeRuns) {
			o.Readiness = c
		}
	}
	o.Settled, o.Outcome = len(o.Hosts) > 0, ""
	outcomes := map[string]bool{}
	for _, h := range o.Hosts {
		a := h.Agent
		if a == nil || !a.Tracks(o.Version, o.ActivationHeight) || a.Stage != decide.StageDone {
			o.Settled = false
			continue
		}
		outcomes[a.Outcome] = true
	}
	if o.Settled && len(outcomes) == 1 {
		for k := range outcomes {
			o.Outcome = k
		}
	}
}

// WriteTable draws the progress table.
func (o *Observation) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "flag day to %s at height %d — %s\n", o.Version, o.ActivationHeight, o.At.Format(time.TimeOnly))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tVERSION\tHEIGHT\tINGRESS\tCHAIN\tRECORD\tAGENT STAGE\tNOTE")
	for _, h := range o.Hosts {
		version, height, ingress, chain, record, stage, note := "-", "-", "-", "-", "-", "-", h.Err
		if h.Node != nil {
			version, height, ingress = h.Node.Version, fmt.Sprint(h.Node.Height), string(h.Node.Ingress)
		}
		if c := h.Chain; c != nil && c.Version == o.Version {
			chain = c.Outcome
			record = "no"
			if slices.ContainsFunc(c.Records, func(r nodeapi.ReadinessRecord) bool { return r.Node == h.ID }) {
				record = "readiness"
			}
			if slices.ContainsFunc(c.Failures, func(f nodeapi.FailureVote) bool { return f.Node == h.ID }) {
				record = "failure vote"
			}
		}
		if a := h.Agent; a != nil && a.Tracks(o.Version, o.ActivationHeight) {
			stage = string(a.Stage)
			if note == "" {
				note = firstNonEmpty(a.LastError, a.Reason)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, version, height, ingress, chain, record, stage, note)
	}
	tw.Flush()
	if r := o.Readiness; r != nil {
		fmt.Fprintf(w, "readiness: %d of %d records (quorum %d), deadline block %d", len(r.Records), len(r.Members), r.Quorum, r.Deadline)
		if len(r.Absent) > 0 {
			fmt.Fprintf(w, ", absent %v", r.Absent)
		}
		fmt.Fprintln(w)
	}
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// ObserveOptions configure Observe.
type ObserveOptions struct {
	Topology Topology
	// Version and ActivationHeight pin the flag day to observe (zero: the
	// one the hosts' agents, else their chains, name).
	Version          string
	ActivationHeight uint64
	// Interval between observations (default 1s).
	Interval time.Duration
	// Once observes a single time.
	Once bool
	// Progress receives the table after every observation.
	Progress io.Writer
}

// Observe watches every host until they all settled the flag day (or
// once), drawing the table, and returns the last observation: the report.
func Observe(ctx context.Context, opt ObserveOptions) (*Observation, error) {
	if err := opt.Topology.Validate(); err != nil {
		return nil, err
	}
	admins, agents, err := dialHosts(opt.Topology)
	if err != nil {
		return nil, err
	}
	if opt.Interval == 0 {
		opt.Interval = time.Second
	}
	for {
		o := &Observation{At: time.Now().UTC(), Version: opt.Version, ActivationHeight: opt.ActivationHeight}
		for _, h := range opt.Topology.Hosts {
			o.Hosts = append(o.Hosts, observeHost(ctx, h.ID, admins[h.ID], agents[h.ID]))
		}
		o.Summarize()
		if opt.Progress != nil {
			o.WriteTable(opt.Progress)
		}
		if opt.Once || o.Settled {
			return o, nil
		}
		select {
		case <-ctx.Done():
			return o, ctx.Err()
		case <-time.After(opt.Interval):
		}
	}
}

func observeHost(ctx context.Context, id uint64, admin *nodeapi.AdminClient, ag *agentapi.Client) HostView {
	hv := HostView{ID: id}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var errs []string
	if st, err := admin.Status(ctx); err == nil {
		hv.Node = st
		if fd, err := admin.FlagDay(ctx, "", 0); err == nil {
			hv.Chain = fd
		}
	} else {
		errs = append(errs, "node: "+err.Error())
	}
	if s, err := ag.FlagDay(ctx); err == nil {
		hv.Agent = s
	} else {
		errs = append(errs, "agent: "+err.Error())
	}
	hv.Err = strings.Join(errs, "; ")
	return hv
}

// MarshalReport returns the observation as indented JSON.
func (o *Observation) MarshalReport() ([]byte, error) { return json.MarshalIndent(o, "", "  ") }
