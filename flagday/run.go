package flagday

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
)

// 'teeup flagday run' with coordinator-free agents: the observer with its
// operator's own vote. It checks every host (CheckPreflight), casts only
// its operator's Node Operators Group vote to schedule the flag day, and
// observes until every host settled. It never stops, rolls back or
// triggers anything on a host: each agent is the only owner of its
// host's part, rollback included, so a killed observer changes nothing.

// Voter casts one operator's schedule vote.
type Voter interface {
	// Member is the voter's ledger address (hex).
	Member() string
	// VoteSchedule votes to schedule version at height through node a's
	// admin API and returns once the vote is committed.
	VoteSchedule(ctx context.Context, a *nodeapi.AdminClient, version string, height uint64) error
}

// FreeOptions configure RunFree.
type FreeOptions struct {
	Topology Topology
	// Version is the approved release to move to.
	Version string
	// Height is the activation height to vote for; 0: the height another
	// member already voted for this release, else In blocks above the head.
	Height uint64
	// In is how many blocks above the head (default and minimum: the
	// schedule lead plus 5).
	In uint64
	// Voter casts this operator's vote; nil casts none (only observes).
	Voter Voter
	// Interval between observations (default 1s).
	Interval time.Duration
	// Progress receives what the run does and the progress table.
	Progress io.Writer
}

// VoteOutcome says what became of this operator's vote.
type VoteOutcome string

// Vote outcomes.
const (
	VoteCast       VoteOutcome = "cast"
	VoteOnChain    VoteOutcome = "already-on-chain"
	VoteNotNeeded  VoteOutcome = "schedule-in-force"
	VoteNoKey      VoteOutcome = "no-key"
	voteNotReached VoteOutcome = ""
)

// FreeRun is what RunFree did and saw.
type FreeRun struct {
	Preflight        *PreflightReport `json:"preflight,omitempty"`
	ActivationHeight uint64           `json:"activation_height,omitempty"`
	Vote             VoteOutcome      `json:"vote,omitempty"`
	// Observation is the last observation: the report.
	Observation *Observation `json:"observation,omitempty"`
}

// RunFree runs the observer path of a coordinator-free flag day: unless
// the schedule to opt.Version is in force already (a restarted run), it
// runs the preflight (a *PreflightError names every blocker; agents that
// are coordinated are one, ErrAgentsCoordinated) and casts opt.Voter's
// schedule vote; then it observes every host until all settled and
// returns the last observation. It does not judge the outcome: the caller
// reads Observation.Outcome.
func RunFree(ctx context.Context, opt FreeOptions) (*FreeRun, error) {
	if opt.Version == "" {
		return nil, errors.New("flag day: --version is required")
	}
	if err := opt.Topology.validateShape(); err != nil {
		return nil, err
	}
	if opt.In < ledger.MinScheduleLead+5 {
		opt.In = ledger.MinScheduleLead + 5
	}
	if opt.Progress == nil {
		opt.Progress = io.Discard
	}
	admins, agents, err := dialHosts(opt.Topology)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, a := range admins {
			a.Close()
		}
		for _, a := range agents {
			a.Close()
		}
	}()
	run := &FreeRun{}
	g, checks := readPreflight(ctx, opt.Topology, admins, agents)
	in := PreflightInput{Version: opt.Version, Want: agentapi.FlagDayCoordinatorFree, RequireStaged: true,
		Duplicates: opt.Topology.duplicates(), Governance: g, Hosts: checks}
	rep := CheckPreflight(in)
	run.Preflight = &rep
	if s := scheduled(g, opt.Version); s != nil {
		// Restarted after the schedule came into force: the flag day is
		// under way, nodes may be halted — only who owns it matters now.
		var who []Blocker
		for _, b := range rep.Blockers {
			if b.Kind == BlockMode || b.Kind == BlockWrongNode || b.Kind == BlockDuplicate {
				who = append(who, b)
			}
		}
		if len(who) > 0 {
			return run, &PreflightError{Version: opt.Version, Blockers: who}
		}
		run.ActivationHeight, run.Vote = s.ActivationHeight, VoteNotNeeded
		fmt.Fprintf(opt.Progress, "the flag day to %s at height %d is in force on chain: observing\n", opt.Version, s.ActivationHeight)
	} else {
		if err := rep.Err(); err != nil {
			return run, err
		}
		fmt.Fprintf(opt.Progress, "preflight: every host staged %s, healthy on %s, no unfinished upgrade (node MRENCLAVE %s -> %s)\n",
			opt.Version, rep.FromVersion, rep.From.Short(), rep.To.Short())
		run.ActivationHeight = activationHeight(g, opt)
		if run.Vote, err = castVote(ctx, opt, g, admins, run.ActivationHeight); err != nil {
			return run, err
		}
		switch run.Vote {
		case VoteNoKey:
			fmt.Fprintf(opt.Progress, "no vote cast (no --key): observing the flag day to %s at height %d\n", opt.Version, run.ActivationHeight)
		case VoteOnChain:
			fmt.Fprintf(opt.Progress, "this operator's vote to schedule %s at height %d is on chain already\n", opt.Version, run.ActivationHeight)
		default:
			fmt.Fprintf(opt.Progress, "voted to schedule %s at height %d (the other operators vote with 'teeup release schedule %s --height %d')\n",
				opt.Version, run.ActivationHeight, opt.Version, run.ActivationHeight)
		}
	}
	run.Observation, err = Observe(ctx, ObserveOptions{Topology: opt.Topology, Version: opt.Version, ActivationHeight: run.ActivationHeight,
		Interval: opt.Interval, Progress: opt.Progress})
	return run, err
}

// scheduled is the schedule to version in force on chain, if any.
func scheduled(g *nodeapi.Governance, version string) *nodeapi.ScheduleInfo {
	if g != nil && g.Schedule != nil && g.Schedule.Version == version {
		return g.Schedule
	}
	return nil
}

// activationHeight is the height to vote for: the one asked, else the one
// another member voted for this release, else opt.In above the head.
func activationHeight(g *nodeapi.Governance, opt FreeOptions) uint64 {
	if opt.Height != 0 {
		return opt.Height
	}
	for _, v := range g.PendingSchedules {
		if v.Version == opt.Version {
			return v.ActivationHeight
		}
	}
	return g.Height + opt.In
}

// castVote casts the voter's schedule vote at h unless it is on chain,
// through the first host whose node takes it (another operator's remote
// host may refuse this operator's writes: the next one is tried).
func castVote(ctx context.Context, opt FreeOptions, g *nodeapi.Governance, admins map[uint64]*nodeapi.AdminClient, h uint64) (VoteOutcome, error) {
	if opt.Voter == nil {
		return VoteNoKey, nil
	}
	if votedForSchedule(g, opt.Voter.Member(), opt.Version, h) {
		return VoteOnChain, nil
	}
	var errs []error
	for _, host := range opt.Topology.Hosts {
		err := opt.Voter.VoteSchedule(ctx, admins[host.ID], opt.Version, h)
		if err == nil {
			return VoteCast, nil
		}
		var unreachable *url.Error
		if !errors.Is(err, remoteadmin.ErrForbidden) && !errors.Is(err, remoteadmin.ErrUnauthenticated) && !errors.As(err, &unreachable) {
			return voteNotReached, fmt.Errorf("schedule vote through node %d: %w", host.ID, err)
		}
		errs = append(errs, fmt.Errorf("node %d: %w", host.ID, err))
	}
	return voteNotReached, fmt.Errorf("schedule vote: no host took it: %w", errors.Join(errs...))
}
