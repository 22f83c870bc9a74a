package flagday

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
	"github.com/teeup/teeup/tee"
)

// The preflight: one pure function (CheckPreflight) over what every
// host's node and agent answered and the chain's governance state, naming
// every blocker per host. The coordinator-free path ('teeup flagday run')
// and the coordinator's preflight step both decide with it.

// BlockerKind names what blocks a flag day.
type BlockerKind string

// Blocker kinds.
const (
	// BlockUnreachable: the host's node or agent does not answer (or the
	// governance state could not be read from any node).
	BlockUnreachable BlockerKind = "unreachable"
	// BlockWrongNode: the topology entry answers as another node than its
	// id (remoteadmin.ErrWrongNode).
	BlockWrongNode BlockerKind = "wrong-node"
	// BlockDuplicate: the topology lists the host twice (same id, socket
	// or address).
	BlockDuplicate BlockerKind = "duplicate-entry"
	// BlockMode: the host's agent runs flag days in the other mode than
	// the path asked for (ErrAgentsCoordinated, ErrAgentsCoordinatorFree).
	BlockMode BlockerKind = "flag-day-mode"
	// BlockNotStaged: the host's agent has not staged (and so not
	// verified) the release.
	BlockNotStaged BlockerKind = "not-staged"
	// BlockPreviousUpgrade: the agent's journal holds an earlier upgrade
	// or flag day that is not finalized (or rolled back).
	BlockPreviousUpgrade BlockerKind = "previous-upgrade"
	// BlockUnhealthy: the node does not run, is not current with the
	// network, knows no leader, is halted, or its agent refuses to start
	// it.
	BlockUnhealthy BlockerKind = "unhealthy"
	// BlockMixedVersions: the node runs another enclave than the rest of
	// the network (and not the new one).
	BlockMixedVersions BlockerKind = "mixed-versions"
	// BlockNotApproved: the release is not proposed, or not approved, on
	// chain.
	BlockNotApproved BlockerKind = "not-approved"
	// BlockDowngrade: the release is not newer than the running one
	// (ErrDowngrade).
	BlockDowngrade BlockerKind = "downgrade"
	// BlockNoEnclaveChange: the release runs the node MRENCLAVE already
	// running: it needs no flag day ('teeup flagday rollout').
	BlockNoEnclaveChange BlockerKind = "no-enclave-change"
	// BlockOtherSchedule: another upgrade is scheduled on chain.
	BlockOtherSchedule BlockerKind = "other-schedule"
)

// Blocker is one thing that blocks a flag day. Host 0 is the network
// (the release, the chain's governance state).
type Blocker struct {
	Host   uint64      `json:"host,omitempty"`
	Kind   BlockerKind `json:"kind"`
	Detail string      `json:"detail"`
	// cause is the sentinel-carrying error behind it, if any.
	cause error
}

func (b Blocker) String() string {
	if b.Host == 0 {
		return fmt.Sprintf("network: %s: %s", b.Kind, b.Detail)
	}
	return fmt.Sprintf("host %d: %s: %s", b.Host, b.Kind, b.Detail)
}

// ErrAgentsCoordinated: 'teeup flagday run' (the observer) refuses a
// network whose agents are coordinated: their coordinator owns rollback.
var ErrAgentsCoordinated = errors.New("the agents are coordinated: the flag day is the coordinator's ('teeup flagday coordinate')")

// ErrAgentsCoordinatorFree: the coordinator refuses a network whose
// agents are coordinator-free: each agent owns its host's rollback.
var ErrAgentsCoordinatorFree = errors.New("the agents are coordinator-free: each agent owns its host's rollback, a coordinator may not act ('teeup flagday run' observes and votes)")

// modeErr is the sentinel for an agent in mode have when want was asked.
func modeErr(want agentapi.FlagDayMode) error {
	if want == agentapi.FlagDayCoordinatorFree {
		return ErrAgentsCoordinated
	}
	return ErrAgentsCoordinatorFree
}

// PreflightError is a preflight that found blockers. errors.Is matches
// ErrDowngrade, ErrUnreachable, remoteadmin.ErrWrongNode,
// ErrAgentsCoordinated and ErrAgentsCoordinatorFree by its blockers.
type PreflightError struct {
	Version  string
	Blockers []Blocker
}

func (e *PreflightError) Error() string {
	parts := make([]string, len(e.Blockers))
	for i, b := range e.Blockers {
		parts[i] = b.String()
	}
	return fmt.Sprintf("the flag day to %s is blocked: %s", e.Version, strings.Join(parts, "; "))
}

// Unwrap returns the blockers' causes.
func (e *PreflightError) Unwrap() []error {
	var out []error
	for _, b := range e.Blockers {
		if b.cause != nil {
			out = append(out, b.cause)
		}
	}
	return out
}

// HostCheck is what one topology entry answered.
type HostCheck struct {
	// ID is the entry's node id.
	ID uint64
	// Node is the node's status (nil: NodeErr says why not).
	Node    *nodeapi.Status
	NodeErr error
	// Agent is the agent's status (nil: AgentErr says why not).
	Agent    *agentapi.Status
	AgentErr error
	// FlagDay is the agent's journalled flag day (nil: not read).
	FlagDay *agentapi.FlagDayState
}

// PreflightInput is everything the preflight decides on.
type PreflightInput struct {
	Version string
	// Want is the flag-day mode the path needs of every agent.
	Want agentapi.FlagDayMode
	// RequireStaged: every agent must already have staged the release (the
	// observer stages nothing; the coordinator pushes it).
	RequireStaged bool
	// Duplicates are the topology's duplicate entries (Topology.duplicates).
	Duplicates []Blocker
	// Governance is the chain's governance state (nil: no node answered).
	Governance *nodeapi.Governance
	Hosts      []HostCheck
}

// PreflightReport is the preflight's verdict.
type PreflightReport struct {
	Version string `json:"version"`
	// From and To are the running and the new node MRENCLAVE, FromVersion
	// the running node version (of the first node that answered).
	From        tee.Measurement `json:"from"`
	To          tee.Measurement `json:"to"`
	FromVersion string          `json:"from_version"`
	Blockers    []Blocker       `json:"blockers,omitempty"`
}

// Err is nil without blockers, else a *PreflightError.
func (r *PreflightReport) Err() error {
	if len(r.Blockers) == 0 {
		return nil
	}
	return &PreflightError{Version: r.Version, Blockers: r.Blockers}
}

// CheckPreflight names every blocker of a flag day to in.Version: the
// release is approved on chain, not a downgrade (ErrDowngrade), changes
// the node MRENCLAVE, and no other upgrade is scheduled; every topology
// entry is listed once and answers as its node; every node is healthy on
// one version; every agent runs flag days in in.Want, has the release
// staged and verified (in.RequireStaged), and holds no previous upgrade
// or flag day that is not finalized.
func CheckPreflight(in PreflightInput) PreflightReport {
	rep := PreflightReport{Version: in.Version}
	add := func(host uint64, kind BlockerKind, cause error, format string, args ...any) {
		rep.Blockers = append(rep.Blockers, Blocker{Host: host, Kind: kind, Detail: fmt.Sprintf(format, args...), cause: cause})
	}
	g := in.Governance
	if g == nil {
		add(0, BlockUnreachable, ErrUnreachable, "no node answered with the chain's governance state")
	} else {
		if err := checkNotDowngrade(g, in.Version); err != nil {
			add(0, BlockDowngrade, err, "%v", err)
		}
		if sr, _, err := releaseOf(g, in.Version); err != nil {
			add(0, BlockNotApproved, nil, "%v", err)
		} else {
			rep.To = sr.Manifest.Node.MREnclave
		}
		if s := g.Schedule; s != nil && s.Version != in.Version {
			add(0, BlockOtherSchedule, nil, "another upgrade (%s at height %d) is scheduled on chain", s.Version, s.ActivationHeight)
		}
	}
	// The running enclave: the first node's that answered.
	var fromNode uint64
	for _, h := range in.Hosts {
		if h.Node != nil && h.Node.NodeID == h.ID {
			rep.From, rep.FromVersion, fromNode = h.Node.MREnclave, h.Node.Version, h.ID
			break
		}
	}
	if !rep.To.IsZero() && fromNode != 0 && rep.From == rep.To {
		add(0, BlockNoEnclaveChange, nil, "release %s has the node MRENCLAVE already running (%s): it changes no enclave and needs no flag day; roll it out host by host with 'teeup flagday rollout'", in.Version, rep.To.Short())
	}
	dups := map[uint64][]Blocker{}
	for _, d := range in.Duplicates {
		dups[d.Host] = append(dups[d.Host], d)
	}
	for _, h := range in.Hosts {
		for _, d := range dups[h.ID] {
			rep.Blockers = append(rep.Blockers, d)
		}
		delete(dups, h.ID)
		checkHostNode(in, &rep, h, fromNode, add)
		checkHostAgent(in, h, add)
	}
	for _, ds := range dups { // entries whose id no host check carries
		rep.Blockers = append(rep.Blockers, ds...)
	}
	return rep
}

type addFunc func(host uint64, kind BlockerKind, cause error, format string, args ...any)

// answersAs checks that host id's node or agent (what) answered, and as
// that host: otherwise it adds the blocker (unreachable, or wrong node)
// and returns false.
func answersAs(id uint64, what string, ok bool, answered uint64, err error, add addFunc) bool {
	switch {
	case !ok && errors.Is(err, remoteadmin.ErrWrongNode):
		add(id, BlockWrongNode, err, "its %s answers as another node's: %v", what, err)
		return false
	case !ok:
		add(id, BlockUnreachable, ErrUnreachable, "its %s does not answer: %v", what, err)
		return false
	case answered != id:
		add(id, BlockWrongNode, remoteadmin.ErrWrongNode, "the entry's %s answers as node %d's", what, answered)
		return false
	}
	return true
}

func checkHostNode(in PreflightInput, rep *PreflightReport, h HostCheck, fromNode uint64, add addFunc) {
	st := h.Node
	var answered uint64
	if st != nil {
		answered = st.NodeID
	}
	if !answersAs(h.ID, "node", st != nil, answered, h.NodeErr, add) {
		return
	}
	if st.MREnclave != rep.From && st.MREnclave != rep.To {
		add(h.ID, BlockMixedVersions, nil, "node runs MRENCLAVE %s (%s), node %d runs %s (%s): the network is not on one version", st.MREnclave.Short(), st.Version, fromNode, rep.From.Short(), rep.FromVersion)
	}
	if rep.To.IsZero() || st.MREnclave != rep.To { // a node already on the new enclave is past its halt
		var why []string
		if st.Phase != "" && st.Phase != nodeapi.PhaseRunning {
			why = append(why, "not running (phase "+st.Phase+")")
		}
		if st.Sync.State != "" && st.Sync.State != nodeapi.SyncCurrent {
			why = append(why, "not current with the network ("+st.Sync.State+")")
		}
		if st.Leader == 0 {
			why = append(why, "knows no leader")
		}
		if st.Halted {
			why = append(why, fmt.Sprintf("halted at height %d", st.Height))
		}
		if len(why) > 0 {
			add(h.ID, BlockUnhealthy, nil, "node %s: the network must be healthy before a flag day", strings.Join(why, ", "))
		}
	}
}

func checkHostAgent(in PreflightInput, h HostCheck, add addFunc) {
	a := h.Agent
	var answered uint64
	if a != nil {
		answered = a.NodeID
	}
	if !answersAs(h.ID, "agent", a != nil, answered, h.AgentErr, add) {
		return
	}
	if in.Want != "" && a.FlagDay() != in.Want {
		add(h.ID, BlockMode, modeErr(in.Want), "its agent is %s (agent.json flag_day.coordinated %t), this path needs %s agents", a.FlagDay(), a.FlagDay() == agentapi.FlagDayCoordinated, in.Want)
	}
	if in.RequireStaged && !slices.Contains(a.Staged, in.Version) {
		add(h.ID, BlockNotStaged, nil, "its agent has not staged and verified release %s (staged: %v; 'teeup upgrade stage')", in.Version, a.Staged)
	}
	if up := a.Upgrade; up != nil && !up.Terminal() && up.To.Version != in.Version {
		add(h.ID, BlockPreviousUpgrade, nil, "the upgrade to %s is at phase %s, not finalized (run 'teeup upgrade finalize' there, or roll it back)", up.To.Version, up.Phase)
	}
	if fd := h.FlagDay; fd != nil && !fd.Settled() && fd.Version != in.Version {
		add(h.ID, BlockPreviousUpgrade, nil, "the flag day to %s at height %d is still at stage %s", fd.Version, fd.ActivationHeight, fd.Stage)
	}
	if r := a.NodeRefused; r != nil {
		add(h.ID, BlockUnhealthy, nil, "its agent refuses to start the node (%s: %s)", r.Cause, r.Error)
	}
}

// readPreflight reads every host's node and agent status (and the
// agent's flag day) and the governance state from any node.
func readPreflight(ctx context.Context, top Topology, admins map[uint64]*nodeapi.AdminClient, agents map[uint64]*agentapi.Client) (*nodeapi.Governance, []HostCheck) {
	var checks []HostCheck
	var g *nodeapi.Governance
	for _, h := range top.Hosts {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		hc := HostCheck{ID: h.ID}
		hc.Node, hc.NodeErr = admins[h.ID].Status(sctx)
		if hc.NodeErr != nil {
			hc.Node = nil
		} else if g == nil {
			if gg, err := admins[h.ID].Releases(sctx); err == nil {
				g = gg
			}
		}
		hc.Agent, hc.AgentErr = agents[h.ID].Status(sctx)
		if hc.AgentErr != nil {
			hc.Agent = nil
		} else if fd, err := agents[h.ID].FlagDay(sctx); err == nil {
			hc.FlagDay = fd
		}
		cancel()
		checks = append(checks, hc)
	}
	return g, checks
}
