// Package decide is the agent's flag-day state machine: a pure function
// from the host's journalled flag-day state and what the agent observes
// (its own upgrade journal, its node, the chain's readiness state, what
// peers report) to the next state and the actions to perform. It does no
// I/O; the agent's driver observes, calls Decide, journals the state it
// returns, performs the actions and feeds their results back through
// Apply, journalling again.
//
// Crash safety: Decide sets the intents that matter for safety — "this
// host signed readiness", "this host votes failure" — in the state it
// returns, which the driver journals before it acts; every action is
// idempotent or re-checked against the chain, so a crash after an effect
// and before its result is journalled repeats at most that action.
//
// The safety rule it keeps: for one schedule a host signs at most one of a
// readiness record and a failure vote, unless the new chain recorded the
// schedule expired or aborted (then readiness can no longer count). See
// ledger/readiness.go for why that keeps two chains from serving past H.
package decide

import (
	"fmt"
	"time"
)

// Stage is where a host is in one flag day.
type Stage string

// Stages.
const (
	// StageWatching: a schedule is known, this host has not handed over.
	StageWatching Stage = "watching"
	// StageHandingOver: the agent's key handover to the new release runs.
	StageHandingOver Stage = "handing-over"
	// StageProving: the new node serves; it attests its peers, sends the
	// test payments and records readiness.
	StageProving Stage = "proving"
	// StageReady: the chain recorded the schedule ready; the live period
	// runs until the upgrade is finalized.
	StageReady Stage = "ready"
	// StageRollingBack: the agent returns the host to the old release.
	StageRollingBack Stage = "rolling-back"
	// StageOld: the host runs the old release again; it votes failure if
	// it may, and waits for the abort or for the network to be ready
	// without it (then it hands over late).
	StageOld Stage = "old"
	// StageDone: finalized on the new release, or the abort is on chain.
	StageDone Stage = "done"
)

// Outcomes of a flag day as the chain records it (Chain.Outcome), the
// same words as the node API's.
const (
	OutcomePending = "pending"
	OutcomeReady   = "ready"
	OutcomeExpired = "expired"
	OutcomeAborted = "aborted"
)

// Config are the host's flag-day deadlines.
type Config struct {
	// ServeTimeout is how long the new node may take to serve after the
	// handover started before the host rolls itself back.
	ServeTimeout time.Duration
	// ReadyTimeout is how long after the handover the chain may take to
	// record the schedule ready before the host rolls itself back.
	ReadyTimeout time.Duration
	// LivePeriod is how long after ready the host keeps the old release's
	// keys before it finalizes the upgrade by itself.
	LivePeriod time.Duration
	// Retry is how often a submission that has not landed is repeated.
	Retry time.Duration
	// MaxLateAttempts bounds the late handovers of one flag day.
	MaxLateAttempts int
}

// PeerResult is one peer's attestation by the new node.
type PeerResult struct {
	Node uint64 `json:"node"`
	OK   bool   `json:"ok"`
}

// State is one host's journalled flag-day state.
type State struct {
	Version          string `json:"version,omitempty"`
	ActivationHeight uint64 `json:"activation_height,omitempty"`
	Stage            Stage  `json:"stage,omitempty"`
	// Late is set when the host hands over after the network moved on.
	Late         bool `json:"late,omitempty"`
	LateAttempts int  `json:"late_attempts,omitempty"`
	// HandoverStartedAt is when this host's handover began, HandedOverAt
	// when its new node served.
	HandoverStartedAt time.Time    `json:"handover_started_at,omitzero"`
	HandedOverAt      time.Time    `json:"handed_over_at,omitzero"`
	Attested          bool         `json:"attested,omitempty"`
	Peers             []PeerResult `json:"peers,omitempty"`
	Tested            bool         `json:"tested,omitempty"`
	TestTxs           []string     `json:"test_txs,omitempty"`
	// ReadinessSigned is the intent: set (and journalled) before the
	// readiness record is first submitted, never cleared for this
	// schedule.
	ReadinessSigned bool      `json:"readiness_signed,omitempty"`
	ReadinessSentAt time.Time `json:"readiness_sent_at,omitzero"`
	// FailureSigned is the intent to vote failure, journalled before the
	// rollback; FailureVoted that the vote was admitted.
	FailureSigned bool      `json:"failure_signed,omitempty"`
	FailureSentAt time.Time `json:"failure_sent_at,omitzero"`
	FailureVoted  bool      `json:"failure_voted,omitempty"`
	ReadyAt       time.Time `json:"ready_at,omitzero"`
	RolledBack    bool      `json:"rolled_back,omitempty"`
	RollbackAt    time.Time `json:"rollback_at,omitzero"`
	Finalized     bool      `json:"finalized,omitempty"`
	FinalizeAt    time.Time `json:"finalize_at,omitzero"`
	// Outcome is the flag day's end for this host: "ready" (finalized on
	// the new release) or "aborted" (back on the old one).
	Outcome string `json:"outcome,omitempty"`
	// Reason says why the host rolled back, or what blocks it.
	Reason    string `json:"reason,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Tracks reports whether the state is about the schedule (version, h).
func (s *State) Tracks(version string, h uint64) bool {
	return s.Version == version && s.ActivationHeight == h
}

// Settled reports whether nothing more happens for this flag day.
func (s *State) Settled() bool { return s.Version == "" || s.Stage == StageDone }

// Schedule is an upgrade schedule the chain holds.
type Schedule struct {
	Version          string
	ActivationHeight uint64
}

// Upgrade is the agent's journalled key handover, as far as Decide needs
// it.
type Upgrade struct {
	// To is the target version.
	To string
	// Phase is the agentapi phase name.
	Phase string
	// Failed is set when a step failed (the journal holds an error).
	Failed    bool
	StartedAt time.Time
}

// Upgrade phases Decide distinguishes (agentapi's names).
const (
	PhaseCompleted  = "completed"
	PhaseFinalized  = "finalized"
	PhaseRolledBack = "rolled-back"
)

// Chain is the readiness state of the tracked schedule on the chain of
// the node this host runs now (the new chain while the new node runs,
// the old chain after a rollback).
type Chain struct {
	Outcome string
	// OwnRecord: this host's readiness record is committed.
	OwnRecord bool
	// OwnFailure: this host's failure vote is admitted.
	OwnFailure bool
}

// Network is what peers (of either version) or the distribution archive
// report about the tracked schedule: the network moved to Version at
// ActivationHeight and is ready there.
type Network struct {
	Version          string
	ActivationHeight uint64
	Ready            bool
}

// Observation is what the driver saw just now.
type Observation struct {
	Now time.Time
	// Schedule is the schedule in force on this host's node's chain (nil:
	// none, or the node does not answer).
	Schedule *Schedule
	// Running is the installed version (the agent journal's).
	Running string
	// Upgrade is the agent's journalled upgrade, nil if none.
	Upgrade *Upgrade
	// NodeHalted: this host's node halted at NodeHeight.
	NodeHalted bool
	NodeHeight uint64
	// Chain is the tracked schedule's readiness state on this host's
	// node's chain (nil: unknown).
	Chain *Chain
	// Network is what peers report (nil: nothing).
	Network *Network
}

// ActionKind names an action.
type ActionKind string

// Actions.
const (
	// ActHandOver starts the key handover to State.Version.
	ActHandOver ActionKind = "hand-over"
	// ActAttestPeers makes the new node attest every peer.
	ActAttestPeers ActionKind = "attest-peers"
	// ActTestPayments sends the operator's self and cross test payments.
	ActTestPayments ActionKind = "test-payments"
	// ActSubmitReadiness asks the new node to sign and submit the
	// readiness record.
	ActSubmitReadiness ActionKind = "submit-readiness"
	// ActRollBack returns the host to the old release (forced: what the
	// new chain committed past H is readiness and test traffic only).
	ActRollBack ActionKind = "roll-back"
	// ActVoteFailure asks the old node to sign and submit the failure
	// vote.
	ActVoteFailure ActionKind = "vote-failure"
	// ActFinalize finalizes the completed upgrade.
	ActFinalize ActionKind = "finalize"
	// ActReportBlocked logs an error: something blocks the host.
	ActReportBlocked ActionKind = "report-blocked"
)

// Action is one thing to do.
type Action struct {
	Kind   ActionKind
	Reason string
}

// Result is an action's outcome, fed back through Apply.
type Result struct {
	Kind ActionKind
	// Err is the action's error (nil: done).
	Err     error
	Peers   []PeerResult
	TestTxs []string
}

// Decide returns the next state and the actions to perform. The driver
// journals the state before it performs the actions.
func Decide(cfg Config, s State, o Observation) (State, []Action) {
	if o.Schedule != nil && !s.Tracks(o.Schedule.Version, o.Schedule.ActivationHeight) {
		switch {
		case s.Settled():
			s = State{Version: o.Schedule.Version, ActivationHeight: o.Schedule.ActivationHeight, Stage: StageWatching}
		case s.Stage == StageReady && !s.Finalized:
			return s, []Action{{ActFinalize, fmt.Sprintf("the next flag day (%s at %d) is scheduled", o.Schedule.Version, o.Schedule.ActivationHeight)}}
		default:
			return s, []Action{{ActReportBlocked, fmt.Sprintf("flag day to %s at height %d is blocked: the flag day to %s at %d is still at stage %s",
				o.Schedule.Version, o.Schedule.ActivationHeight, s.Version, s.ActivationHeight, s.Stage)}}
		}
	}
	if s.Version == "" {
		return s, nil
	}
	switch s.Stage {
	case StageWatching:
		return watching(cfg, s, o)
	case StageHandingOver:
		return handingOver(cfg, s, o)
	case StageProving:
		return proving(cfg, s, o)
	case StageReady:
		return ready(cfg, s, o)
	case StageRollingBack:
		return rollingBack(cfg, s, o)
	case StageOld:
		return old(cfg, s, o)
	}
	return s, nil
}

func upgradeTo(o Observation, version string) *Upgrade {
	if o.Upgrade != nil && o.Upgrade.To == version {
		return o.Upgrade
	}
	return nil
}

func networkReady(s State, o Observation) bool {
	n := o.Network
	return n != nil && n.Ready && n.Version == s.Version && n.ActivationHeight == s.ActivationHeight
}

func watching(cfg Config, s State, o Observation) (State, []Action) {
	up := upgradeTo(o, s.Version)
	switch {
	case o.Running == s.Version:
		// Handed over already (a restart after the handover, or by hand).
		s.Stage = StageProving
		if s.HandedOverAt.IsZero() {
			s.HandedOverAt = o.Now
		}
		return proving(cfg, s, o)
	case up != nil && up.Phase != PhaseRolledBack:
		// The handover began before the journal said so (crash point).
		s.Stage, s.HandoverStartedAt = StageHandingOver, nonZero(s.HandoverStartedAt, up.StartedAt, o.Now)
		return s, nil
	case o.NodeHalted && o.NodeHeight >= s.ActivationHeight:
		s.Stage, s.HandoverStartedAt = StageHandingOver, o.Now
		return s, []Action{{ActHandOver, fmt.Sprintf("the node halted at the activation height %d", s.ActivationHeight)}}
	case networkReady(s, o):
		return lateHandover(cfg, s, o)
	}
	return s, nil
}

func lateHandover(cfg Config, s State, o Observation) (State, []Action) {
	if s.LateAttempts >= max(cfg.MaxLateAttempts, 1) {
		return s, []Action{{ActReportBlocked, fmt.Sprintf("the network moved to %s at height %d; %d late handovers failed: hand over by hand (teeup upgrade start)",
			s.Version, s.ActivationHeight, s.LateAttempts)}}
	}
	s.Stage, s.Late, s.HandoverStartedAt = StageHandingOver, true, o.Now
	s.LateAttempts++
	return s, []Action{{ActHandOver, fmt.Sprintf("the network moved to %s at height %d without this host: handing over late", s.Version, s.ActivationHeight)}}
}

func nonZero(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

func handingOver(cfg Config, s State, o Observation) (State, []Action) {
	up := upgradeTo(o, s.Version)
	switch {
	case o.Running == s.Version:
		s.Stage, s.HandedOverAt = StageProving, o.Now
		return proving(cfg, s, o)
	case up != nil && up.Phase == PhaseRolledBack:
		// Rolled back already (by the handover's own recovery, or after a
		// crash between the rollback and its journal entry).
		s.Stage = StageRollingBack
		return rollingBack(cfg, s, o)
	case o.Now.Sub(s.HandoverStartedAt) >= cfg.ServeTimeout && (up == nil || up.Failed):
		// The new node did not serve in time: it never signed readiness.
		return startRollback(s, o, fmt.Sprintf("the new node of %s did not serve within %s", s.Version, cfg.ServeTimeout))
	}
	return s, nil
}

// startRollback moves to StageRollingBack; the failure intent is set
// unless this host signed readiness (and the chain does not say that
// readiness can no longer count).
func startRollback(s State, o Observation, reason string) (State, []Action) {
	chainGaveUp := o.Chain != nil && (o.Chain.Outcome == OutcomeExpired || o.Chain.Outcome == OutcomeAborted)
	if !s.ReadinessSigned || chainGaveUp {
		s.FailureSigned = true
	}
	s.Stage, s.Reason, s.RollbackAt = StageRollingBack, reason, o.Now
	return s, []Action{{ActRollBack, reason}}
}

// rolledBackByHand reports whether the host runs the old release again
// because the upgrade was rolled back outside this state machine (an
// operator's teeup upgrade rollback).
func rolledBackByHand(s State, o Observation) bool {
	up := upgradeTo(o, s.Version)
	return o.Running != s.Version && up != nil && up.Phase == PhaseRolledBack
}

func proving(cfg Config, s State, o Observation) (State, []Action) {
	if rolledBackByHand(s, o) {
		s, _ = startRollback(s, o, "rolled back by an operator")
		return rollingBack(cfg, s, o)
	}
	c := o.Chain
	readyNow := c != nil && c.Outcome == OutcomeReady
	if c != nil {
		switch c.Outcome {
		case OutcomeReady:
			if s.ReadinessSigned || c.OwnRecord {
				s.Stage, s.ReadyAt = StageReady, o.Now
				return ready(cfg, s, o)
			}
			// Ready without this host's record: prove and record it all
			// the same (until the deadline), so that it is not marked
			// absent; the ready deadline no longer applies.
		case OutcomeExpired, OutcomeAborted:
			return startRollback(s, o, fmt.Sprintf("the chain records the flag day to %s %s", s.Version, c.Outcome))
		}
	}
	if !readyNow && o.Now.Sub(s.HandedOverAt) >= cfg.ReadyTimeout {
		return startRollback(s, o, fmt.Sprintf("the chain did not record the flag day to %s ready within %s", s.Version, cfg.ReadyTimeout))
	}
	switch {
	case !s.Attested:
		return s, []Action{{ActAttestPeers, ""}}
	case !s.Tested:
		return s, []Action{{ActTestPayments, ""}}
	case !s.ReadinessSigned:
		s.ReadinessSigned, s.ReadinessSentAt = true, o.Now
		return s, []Action{{ActSubmitReadiness, ""}}
	case (c == nil || !c.OwnRecord) && o.Now.Sub(s.ReadinessSentAt) >= cfg.Retry:
		s.ReadinessSentAt = o.Now
		return s, []Action{{ActSubmitReadiness, "not on chain yet: again"}}
	}
	return s, nil
}

func ready(cfg Config, s State, o Observation) (State, []Action) {
	if rolledBackByHand(s, o) {
		s, _ = startRollback(s, o, "rolled back by an operator")
		return rollingBack(cfg, s, o)
	}
	if up := upgradeTo(o, s.Version); up != nil && up.Phase == PhaseFinalized {
		s.Finalized, s.Stage, s.Outcome = true, StageDone, OutcomeReady
		return s, nil
	}
	if o.Now.Sub(s.ReadyAt) >= cfg.LivePeriod && o.Now.Sub(s.FinalizeAt) >= cfg.Retry {
		s.FinalizeAt = o.Now
		return s, []Action{{ActFinalize, fmt.Sprintf("the live period of %s passed", cfg.LivePeriod)}}
	}
	return s, nil
}

func rollingBack(cfg Config, s State, o Observation) (State, []Action) {
	if up := upgradeTo(o, s.Version); o.Running != s.Version && (up == nil || up.Phase == PhaseRolledBack) {
		s.RolledBack, s.Stage = true, StageOld
		return old(cfg, s, o)
	}
	if o.Now.Sub(s.RollbackAt) >= cfg.Retry {
		s.RollbackAt = o.Now
		return s, []Action{{ActRollBack, s.Reason}}
	}
	return s, nil
}

func old(cfg Config, s State, o Observation) (State, []Action) {
	c := o.Chain
	if c != nil && c.Outcome == OutcomeAborted {
		s.Stage, s.Outcome = StageDone, OutcomeAborted
		if s.FailureSigned && c.OwnFailure {
			s.FailureVoted = true
		}
		return s, nil
	}
	if networkReady(s, o) {
		// Ready makes the abort impossible: joining the new chain is safe
		// even after a failure vote.
		return lateHandover(cfg, s, o)
	}
	if s.FailureSigned && !s.FailureVoted {
		if c != nil && c.OwnFailure {
			s.FailureVoted = true
			return s, nil
		}
		if o.Now.Sub(s.FailureSentAt) >= cfg.Retry {
			s.FailureSentAt = o.Now
			return s, []Action{{ActVoteFailure, s.Reason}}
		}
	}
	return s, nil
}

// Apply folds an action's result into the state.
func Apply(s State, r Result) State {
	if r.Err != nil {
		s.LastError = fmt.Sprintf("%s: %v", r.Kind, r.Err)
		return s
	}
	s.LastError = ""
	switch r.Kind {
	case ActAttestPeers:
		s.Attested, s.Peers = true, r.Peers
	case ActTestPayments:
		s.Tested, s.TestTxs = true, r.TestTxs
	case ActRollBack:
		s.RolledBack, s.Stage = true, StageOld
	case ActVoteFailure:
		s.FailureVoted = true
	case ActFinalize:
		if s.Stage == StageReady {
			s.Finalized, s.Stage, s.Outcome = true, StageDone, OutcomeReady
		}
	}
	return s
}

// FastPoll is the driver's poll interval while a moment that makes client
// downtime is near (see NextPoll).
const FastPoll = 25 * time.Millisecond

// nearBlocks is how many blocks short of the activation height the driver
// starts polling at FastPoll: client ingress is already closed then, and
// the handover starts when the node halts at H.
const nearBlocks = 3

// NextPoll returns how long the driver waits before it observes again,
// given the state Decide returned and what it observed: FastPoll while
// this host's node is within nearBlocks of the activation height and has
// not halted there yet (the handover starts the moment it has), and while
// the new node's readiness is submitted and the chain's ready block is
// awaited (the host serves clients once it sees it); base otherwise.
func NextPoll(s State, o Observation, base time.Duration) time.Duration {
	switch {
	case s.Version == "" || base <= FastPoll:
		return base
	case s.Stage == StageWatching && !s.Late && o.NodeHeight+nearBlocks >= s.ActivationHeight:
		return FastPoll
	case s.Stage == StageProving && s.ReadinessSigned:
		return FastPoll
	}
	return base
}

// PrehashEvery is how often an agent hashes its live ledger's new sstables
// into the snapshot hash cache (snapshot.HashCache.Prehash) while no
// scheduled flag day asks for it sooner. Sstables never change, so a pass
// reads only the files written since the last one: the cache stays warm,
// and a flag-day snapshot at H — inside the window in which client ingress
// is closed — hashes only what the last few seconds wrote, whatever the
// ledger's size.
const PrehashEvery = 30 * time.Second

// PrehashDue reports whether the agent starts a pass of hashing its live
// ledger ahead now: never while one runs; at once when a flag day to
// another enclave is scheduled (schedule, "version@height"; "" none) that
// no pass started since it was seen (hashedFor); otherwise PrehashEvery
// after the last pass started (lastStart; the zero time: never).
func PrehashDue(now, lastStart time.Time, running bool, schedule, hashedFor string) bool {
	switch {
	case running:
		return false
	case schedule != "" && schedule != hashedFor:
		return true
	}
	return lastStart.IsZero() || now.Sub(lastStart) >= PrehashEvery
}
