// Package agentapi defines teeup-agent's admin API — its JSON types and a
// Go client over the agent's unix socket or, for remote operators, over
// TCP with mutual TLS (package remoteadmin) — and the upgrade records the
// agent journals.
package agentapi

import (
	"errors"
	"fmt"
	"github.com/teeup/teeup/agent/selfupgrade"
	"time"

	"github.com/teeup/teeup/remoteadmin"
	"github.com/teeup/teeup/tee"
)

// Installation is a node version on this host.
type Installation struct {
	Version       string          `json:"version"`
	ReleaseFile   string          `json:"release_file"`
	NodeBinary    string          `json:"node_binary"`
	NodeMREnclave tee.Measurement `json:"node_mrenclave"`
	// DistributeBinary is the release's verified teeup-distribute, when it
	// ships one; otherwise the agent's configured binary is used.
	DistributeBinary string `json:"distribute_binary,omitempty"`
}

// Phase is how far an upgrade has come. Phases only move forward; each is
// journalled after its step completed, so a restarted agent resumes at
// the next step (every step is idempotent).
type Phase string

// Upgrade phases, in order, then the terminal and rollback phases.
const (
	PhaseStarted             Phase = "started"              // target staged and verified, journal written
	PhaseDistributionStopped Phase = "distribution-stopped" // ledger distribution stopped
	PhaseSnapshotTaken       Phase = "snapshot-taken"       // ledger checkpoint + state file + manifest
	PhaseKeysHeld            Phase = "keys-held"            // keys fetched from the old node, sealed by the agent
	PhaseOldStopped          Phase = "old-stopped"          // old node stopped (its sealed keys stay on disk)
	PhaseNewStarted          Phase = "new-started"          // new node started, asking the agent for keys
	PhaseNewServing          Phase = "new-serving"          // new node sealed the keys, migrated and serves
	PhaseCompleted           Phase = "completed"            // distribution restarted; awaiting finalization
	PhaseFinalized           Phase = "finalized"            // old keys and held keys removed
	PhaseRolledBack          Phase = "rolled-back"          // snapshot restored, old version running
)

// Mode is how an upgrade was started.
type Mode string

// Upgrade modes.
const (
	// ModeManual: asked for through the API ('teeup upgrade local', one
	// host's part of a manual flag day).
	ModeManual Mode = "manual"
	// ModeScheduled: the agent followed an upgrade scheduled on chain when
	// its node halted at the activation height.
	ModeScheduled Mode = "scheduled"
)

// Loss is what restoring an upgrade's snapshot discards: the transactions
// the new version committed after it.
type Loss struct {
	// FromHeight is the first block not in the snapshot.
	FromHeight uint64 `json:"from_height"`
	// ToHeight is the newest committed block.
	ToHeight uint64 `json:"to_height"`
	// Transactions is how many transactions those blocks hold.
	Transactions int `json:"transactions"`
}

// StepTiming records how long a step took.
type StepTiming struct {
	Phase    Phase         `json:"phase"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
}

// UpgradeRecord is one upgrade attempt on this host.
type UpgradeRecord struct {
	ID               string       `json:"id"`
	Mode             Mode         `json:"mode"`
	From             Installation `json:"from"`
	To               Installation `json:"to"`
	ActivationHeight uint64       `json:"activation_height,omitempty"`
	Phase            Phase        `json:"phase"`
	Snapshot         string       `json:"snapshot,omitempty"`
	StartedAt        time.Time    `json:"started_at"`
	UpdatedAt        time.Time    `json:"updated_at"`
	Steps            []StepTiming `json:"steps"`
	Error            string       `json:"error,omitempty"`
	Attempts         int          `json:"attempts"`
	// Discarded is set by a forced rollback that restored the snapshot
	// over transactions the new version had committed.
	Discarded *Loss `json:"discarded,omitempty"`
}

// Terminal reports whether the record needs no further work.
func (r *UpgradeRecord) Terminal() bool {
	return r.Phase == PhaseFinalized || r.Phase == PhaseRolledBack
}

// API paths on the agent's socket.
const (
	PathStatus       = "/v1/status"       // GET → Status
	PathStage        = "/v1/stage"        // POST StageRequest → Installation
	PathUpgrade      = "/v1/upgrade"      // POST UpgradeRequest → UpgradeRecord
	PathRollback     = "/v1/rollback"     // POST RollbackRequest → UpgradeRecord
	PathFinalize     = "/v1/finalize"     // POST → UpgradeRecord
	PathDistribution = "/v1/distribution" // POST DistributionRequest → Status
	PathRollout      = "/v1/rollout"      // POST RolloutRequest → Installation
)

// Errors the agent reports with a code, so that clients act on them with
// errors.Is through the API.
var (
	// ErrWouldLoseTransactions: a rollback was refused because the new
	// version already committed transactions that the snapshot lacks.
	ErrWouldLoseTransactions = errors.New("rollback would discard committed transactions")
	// ErrUpgradeInProgress: another upgrade is already journalled.
	ErrUpgradeInProgress = errors.New("an upgrade is already in progress on this host")
)

// ErrorCode names an error a client may act on.
type ErrorCode string

// Error codes.
const (
	CodeWouldLoseTransactions ErrorCode = "would_lose_transactions"
	CodeUpgradeInProgress     ErrorCode = "upgrade_in_progress"
	// CodeForbidden, CodeUnauthenticated and CodeWrongNode are the remote
	// API's refusals (remoteadmin.ErrForbidden, ErrUnauthenticated,
	// ErrWrongNode).
	CodeForbidden       ErrorCode = remoteadmin.CodeForbidden
	CodeUnauthenticated ErrorCode = remoteadmin.CodeUnauthenticated
	CodeWrongNode       ErrorCode = remoteadmin.CodeWrongNode
)

// codeErrors maps codes to the sentinels they stand for.
var codeErrors = map[ErrorCode]error{
	CodeWouldLoseTransactions: ErrWouldLoseTransactions,
	CodeUpgradeInProgress:     ErrUpgradeInProgress,
	CodeForbidden:             remoteadmin.ErrForbidden,
	CodeUnauthenticated:       remoteadmin.ErrUnauthenticated,
	CodeWrongNode:             remoteadmin.ErrWrongNode,
}

// CodeOf returns the code of err's sentinel, "" if it has none.
func CodeOf(err error) ErrorCode {
	for c, s := range codeErrors {
		if errors.Is(err, s) {
			return c
		}
	}
	return ""
}

// Error is the body of every non-2xx answer.
type Error struct {
	Message string         `json:"error"`
	Code    ErrorCode      `json:"code,omitempty"`
	Upgrade *UpgradeRecord `json:"upgrade,omitempty"`
	// Loss is what a refused rollback would have discarded.
	Loss *Loss `json:"loss,omitempty"`
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Is reports whether the error's code stands for target, so that
// errors.Is(err, ErrWouldLoseTransactions) holds for the agent's answer.
func (e *Error) Is(target error) bool {
	s, ok := codeErrors[e.Code]
	return ok && s == target
}

// LossError is the agent's refusal of a rollback that would discard
// committed transactions; it matches ErrWouldLoseTransactions.
type LossError struct {
	Loss Loss
	// Version is the release that committed them.
	Version string
}

// Error says what would be lost.
func (e *LossError) Error() string {
	return fmt.Sprintf("%v: %d transactions in blocks %d..%d were committed by %s after the snapshot; restoring it would lose them (force to proceed anyway)",
		ErrWouldLoseTransactions, e.Loss.Transactions, e.Loss.FromHeight, e.Loss.ToHeight, e.Version)
}

// Unwrap returns ErrWouldLoseTransactions.
func (e *LossError) Unwrap() error { return ErrWouldLoseTransactions }

// Status is the agent's state.
type Status struct {
	NodeID        uint64          `json:"node_id"`
	Version       string          `json:"version"`
	MREnclave     tee.Measurement `json:"mrenclave"`
	Installed     Installation    `json:"installed"`
	Upgrade       *UpgradeRecord  `json:"upgrade,omitempty"`
	Staged        []string        `json:"staged"`
	NodePID       int             `json:"node_pid,omitempty"`
	NodeBinary    string          `json:"node_binary,omitempty"`
	DistributePID int             `json:"distribute_pid,omitempty"`
	// NodeRefused is set while the agent refuses to start the node because
	// its binary or release no longer verifies; the node stays stopped
	// until a correct binary is installed or an operator changes what runs
	// (an upgrade or a rollback).
	NodeRefused *StartRefusal `json:"node_refused,omitempty"`
	// AgentUpgrade is the agent's own latest self-upgrade: moving to the
	// agent binary of the installed release.
	AgentUpgrade *selfupgrade.Record `json:"agent_upgrade,omitempty"`
	// FlagDayMode says who owns a flag day on this host, and so its
	// rollback (agent.json "flag_day": "coordinated"); read it with
	// FlagDay.
	FlagDayMode FlagDayMode `json:"flag_day_mode,omitempty"`
}

// FlagDayMode is who drives a host's part of a flag day.
type FlagDayMode string

// Flag-day modes.
const (
	// FlagDayCoordinatorFree: the agent decides its host's part from the
	// chain and is the only one that rolls the host back ('teeup flagday
	// run' only observes and votes).
	FlagDayCoordinatorFree FlagDayMode = "coordinator-free"
	// FlagDayCoordinated: an external coordinator ('teeup flagday
	// coordinate') drives the flag day and owns its rollback; the agent
	// only hands over at the halt and when asked.
	FlagDayCoordinated FlagDayMode = "coordinated"
)

// FlagDay returns the host's flag-day mode. An agent that does not report
// one predates the field and is treated as coordinated, the only mode
// before coordinator-free flag days.
func (s *Status) FlagDay() FlagDayMode {
	if s.FlagDayMode == "" {
		return FlagDayCoordinated
	}
	return s.FlagDayMode
}

// RefusalCause says why the agent refused to start an enclave binary.
type RefusalCause string

// Refusal causes.
const (
	// CauseBinaryRejected: the binary (its SHA-256, MRENCLAVE or signature
	// structure) is not the one its signed release describes.
	CauseBinaryRejected RefusalCause = "binary-rejected"
	// CauseReleaseRejected: the release manifest does not verify (Key
	// Management Group threshold on the manifest and enclave IDs, network).
	CauseReleaseRejected RefusalCause = "release-rejected"
)

// StartRefusal is a start of an enclave binary that the agent refused:
// every start (first start, upgrade, supervisor restart, rollback)
// verifies the binary against its signed release first.
type StartRefusal struct {
	Binary  string       `json:"binary"`
	Version string       `json:"version"`
	Cause   RefusalCause `json:"cause"`
	Error   string       `json:"error"`
	Since   time.Time    `json:"since"`
}

// StageRequest carries a signed release manifest (its JSON) to download
// and verify.
type StageRequest struct {
	Release []byte `json:"release"`
}

// UpgradeRequest asks for a handover upgrade to a staged version now.
type UpgradeRequest struct {
	Version string `json:"version"`
	// NoRollback leaves a failed upgrade where it stopped instead of
	// rolling back (a coordinator that decides for the whole network).
	NoRollback bool `json:"no_rollback,omitempty"`
}

// RollbackRequest asks to undo the current upgrade.
type RollbackRequest struct {
	Reason string `json:"reason"`
	// Force rolls back even when the new version already committed
	// transactions that the snapshot lacks (they are lost).
	Force bool `json:"force,omitempty"`
}

// DistributionRequest starts or stops ledger distribution.
type DistributionRequest struct {
	Running bool `json:"running"`
}

// RolloutRequest installs a staged release whose node enclave is unchanged
// (a non-enclave release): no key handover, no flag day; the node keeps
// running and the changed host programs are replaced.
type RolloutRequest struct {
	Version string `json:"version"`
}
