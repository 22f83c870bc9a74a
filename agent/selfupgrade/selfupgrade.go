// Package selfupgrade decides, step by step, how an upgrade agent moves
// itself to the agent binary of the release its host has installed,
// without touching the node: the old agent stages and verifies the new
// agent binary, starts it in handover mode, challenges it (nonce, local
// report, network-signed enclave ID — package handover's rules) and hands
// it the state the old agent holds sealed to its own MRENCLAVE; the new
// agent seals that state to itself; the old agent then replaces its
// process image with the new binary (same pid), which installs the state
// and adopts the running node and distribution.
//
// It is a pure state machine: Decide takes the journalled Record and what
// the agent observes and returns the next Action. The driver (package
// agent) performs the action's effect and then journals the action's
// outcome; a crash between the two repeats the action, so every effect is
// idempotent.
//
// The phases, and which agent may act in each:
//
//	started      target journalled                  old agent
//	staged       new binary fetched and verified    old agent
//	handed-over  new agent proved itself and holds  old agent execs the new binary
//	             the state (a bundle sealed to it); (old state still intact: if the
//	             the old state is untouched         new binary no longer verifies,
//	                                                the attempt fails, the old agent runs on)
//	installing   new agent rewrites the held state  new agent only (the old one
//	             sealed to itself                   can no longer unseal all of it)
//	completed    new agent runs                     new agent only
//	failed       attempt abandoned before           old agent; retried after a back-off
//	             installing
package selfupgrade

import (
	"errors"
	"fmt"
	"time"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Phase is where a self-upgrade stands in the journal.
type Phase string

// The phases of a self-upgrade.
const (
	PhaseStarted    Phase = "started"
	PhaseStaged     Phase = "staged"
	PhaseHandedOver Phase = "handed-over"
	PhaseInstalling Phase = "installing"
	PhaseCompleted  Phase = "completed"
	PhaseFailed     Phase = "failed"
)

// Target is an agent build a release ships.
type Target struct {
	// Version is the release's version.
	Version string `json:"version"`
	// ReleaseFile is the release's signed manifest (its agent enclave ID).
	ReleaseFile string `json:"release_file"`
	// MREnclave is the agent's measurement.
	MREnclave tee.Measurement `json:"mrenclave"`
	// Binary is where the staged agent binary lives.
	Binary string `json:"binary"`
}

// Record is the journalled self-upgrade.
type Record struct {
	// ID names the attempt (and its state bundle).
	ID string `json:"id"`
	// From is the agent that started it, To the agent it moves to.
	From Target `json:"from"`
	To   Target `json:"to"`
	// Phase is the last phase reached.
	Phase Phase `json:"phase"`
	// Attempts counts the failed attempts for To.
	Attempts int `json:"attempts,omitempty"`
	// Error is the last failure.
	Error string `json:"error,omitempty"`
	// RetryAt is when a failed attempt may be retried.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// StartedAt and UpdatedAt are journal times.
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Observation is what the agent sees when it decides.
type Observation struct {
	// Self is the running agent's MRENCLAVE.
	Self tee.Measurement
	// SelfBinary is the running agent's executable.
	SelfBinary string
	// Wanted is the agent of the installed release (zero MREnclave when
	// unknown, such as a release file that cannot be read).
	Wanted Target
	// NodeUpgradeActive is true while a node upgrade is journalled and
	// neither finalized nor rolled back: the agent does not move then.
	NodeUpgradeActive bool
	// Now is the time.
	Now time.Time
}

// Kind is what an action does.
type Kind int

// The actions.
const (
	// None: nothing to do.
	None Kind = iota
	// Begin journals a new record for Action.Target (phase started).
	Begin
	// Stage fetches Target's binary (and signature structure) next to its
	// release and verifies it; then phase staged.
	Stage
	// Handover verifies the staged binary, starts it in handover mode,
	// serves it the held state once it proved itself, and waits for it to
	// store the state sealed to itself; then phase handed-over.
	Handover
	// Exec verifies Target's binary and replaces this process's image
	// with it (same pid, same arguments); it does not return on success.
	// If the binary does not verify and Action.Then is set, the driver
	// journals it (failed); otherwise the agent refuses to run.
	Exec
	// Install unseals the state bundle and seals every entry to this
	// agent, replacing the held state files; journalled installing
	// before, completed after.
	Install
	// Fail journals the record failed (Action.Reason), with a back-off.
	Fail
)

func (k Kind) String() string {
	return [...]string{"none", "begin", "stage", "handover", "exec", "install", "fail"}[k]
}

// Action is a decision.
type Action struct {
	Kind Kind
	// Target is the agent the action concerns.
	Target Target
	// Then is the phase the driver journals once the effect is done.
	Then Phase
	// Reason explains a Fail or None.
	Reason string
}

// Reasons a self-upgrade does not proceed, as sentinels.
var (
	// ErrNodeUpgradeActive: a node upgrade is in progress.
	ErrNodeUpgradeActive = errors.New("a node upgrade is in progress")
	// ErrAgentReplaced: another agent than the record's runs before the
	// state moved; the record is abandoned.
	ErrAgentReplaced = errors.New("another agent binary runs than the one that started the self-upgrade")
)

// Backoff is the wait before retry number n (1-based) of a failed
// attempt: 10 s doubling to at most 10 min.
func Backoff(n int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < n && d < 10*time.Minute; i++ {
		d *= 2
	}
	return min(d, 10*time.Minute)
}

// Decide returns the next action for rec (nil when none is journalled)
// under obs.
func Decide(rec *Record, obs Observation) Action {
	if rec != nil {
		switch rec.Phase {
		case PhaseStarted, PhaseStaged:
			if obs.Self != rec.From.MREnclave {
				if obs.Self == rec.To.MREnclave {
					// The operator installed the target by hand: nothing
					// moved, the held state is sealed to From.
					return Action{Kind: Fail, Target: rec.To, Then: PhaseFailed, Reason: fmt.Sprintf("%v: %s runs, the state is still sealed to %s (start %s)", ErrAgentReplaced, obs.Self.Short(), rec.From.MREnclave.Short(), rec.From.Binary)}
				}
				return Action{Kind: Fail, Target: rec.To, Then: PhaseFailed, Reason: fmt.Sprintf("%v: %s", ErrAgentReplaced, obs.Self.Short())}
			}
			if rec.Phase == PhaseStarted {
				return Action{Kind: Stage, Target: rec.To, Then: PhaseStaged}
			}
			return Action{Kind: Handover, Target: rec.To, Then: PhaseHandedOver}
		case PhaseHandedOver:
			if obs.Self == rec.To.MREnclave {
				return Action{Kind: Install, Target: rec.To, Then: PhaseCompleted}
			}
			// The old agent (or any other) hands the process to the new
			// one; should its binary not verify, the old state is intact.
			return Action{Kind: Exec, Target: rec.To, Then: PhaseFailed}
		case PhaseInstalling:
			if obs.Self == rec.To.MREnclave {
				return Action{Kind: Install, Target: rec.To, Then: PhaseCompleted}
			}
			// Part of the state may already be sealed to the new agent:
			// only it may run.
			return Action{Kind: Exec, Target: rec.To}
		case PhaseCompleted:
			if obs.Self != rec.To.MREnclave {
				// The held state is sealed to To (an init system started
				// the old binary again, say): only To may run.
				return Action{Kind: Exec, Target: rec.To}
			}
		case PhaseFailed:
			if obs.Self == rec.From.MREnclave && obs.Wanted.MREnclave == rec.To.MREnclave && obs.Now.Before(rec.RetryAt) {
				return Action{Kind: None, Reason: fmt.Sprintf("attempt %d failed (%s); retry at %s", rec.Attempts, rec.Error, rec.RetryAt.UTC().Format(time.RFC3339))}
			}
		}
	}
	// Nothing in flight: does the installed release ship another agent?
	w := obs.Wanted
	if w.MREnclave.IsZero() || w.MREnclave == obs.Self {
		return Action{Kind: None}
	}
	if rec != nil && rec.Phase == PhaseCompleted && rec.To.MREnclave == obs.Self && !newer(w.Version, rec.To.Version) {
		// A node rollback went back to a release with an older agent:
		// this agent, installed from a later release, stays.
		return Action{Kind: None, Reason: fmt.Sprintf("release %s's agent is older than the running one (from %s)", w.Version, rec.To.Version)}
	}
	if obs.NodeUpgradeActive {
		return Action{Kind: None, Reason: ErrNodeUpgradeActive.Error()}
	}
	return Action{Kind: Begin, Target: w, Then: PhaseStarted}
}

// newer reports whether version a is after b (unparsable: not newer).
func newer(a, b string) bool {
	c, err := release.CompareVersions(a, b)
	return err == nil && c > 0
}
