package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/teeup/teeup/agentapi"
)

// Host is everything an upgrade does to the world. The Upgrader decides
// which step comes next from the journal alone; Host performs it. Every
// method must be idempotent: after a crash, the step that was running is
// run again.
type Host interface {
	// StopDistribution stops the ledger distribution process.
	StopDistribution(ctx context.Context) error
	// StartDistribution (re)starts it on inst's distribution binary (the
	// configured one when inst's release ships none): the release being
	// installed, not the one the journal still records.
	StartDistribution(ctx context.Context, inst Installation) error
	// Snapshot writes (or, if it exists and verifies, reuses) the named
	// snapshot of the ledger and the distribution state file.
	Snapshot(ctx context.Context, name string, from Installation) error
	// HoldKeys fetches the keys from the running old node through the
	// handover and seals them to the agent, unless they are already held
	// for this upgrade.
	HoldKeys(ctx context.Context, id string, from Installation) error
	// StopNode stops the node, whatever version runs.
	StopNode(ctx context.Context) error
	// StartNode runs inst as the node; a node without keys for its
	// MRENCLAVE fetches them from the agent, which hands the keys held for
	// upgrade id to inst's measurement only.
	StartNode(ctx context.Context, inst Installation, id string) error
	// AwaitServing waits until the node runs inst, holds its keys sealed
	// under inst's MRENCLAVE and answers its admin API.
	AwaitServing(ctx context.Context, inst Installation) error
	// RestoreSnapshot puts the named snapshot back in place of the ledger
	// and the distribution state file (the node must be stopped).
	RestoreSnapshot(ctx context.Context, name string) error
	// Finalize deletes what a rollback would have needed: the old
	// version's sealed keys and the keys the agent held for upgrade id.
	Finalize(ctx context.Context, from Installation, id string) error
	// CommittedSince reports what the running node committed after the
	// named snapshot: the transactions a rollback to it would discard.
	CommittedSince(ctx context.Context, snapshotName string) (Loss, error)
}

// Loss is what restoring a snapshot would discard (see agentapi).
type Loss = agentapi.Loss

// Mode is how an upgrade was started (see agentapi).
type Mode = agentapi.Mode

// Sentinel errors, shared with the API's clients (see agentapi).
var (
	// ErrWouldLoseTransactions means a rollback was refused because the
	// new version already committed transactions that the snapshot lacks.
	ErrWouldLoseTransactions = agentapi.ErrWouldLoseTransactions
	// ErrUpgradeInProgress means an upgrade is already journalled.
	ErrUpgradeInProgress = agentapi.ErrUpgradeInProgress
	// ErrFinalized means an upgrade cannot be rolled back: the old
	// version's keys were deleted.
	ErrFinalized = errors.New("the upgrade is finalized: the old version's keys were deleted")
	// ErrNotCompleted means an upgrade cannot be finalized yet.
	ErrNotCompleted = errors.New("the upgrade is not completed")
	// ErrSameEnclave means a release has the installed node MRENCLAVE: no
	// key handover is needed.
	ErrSameEnclave = errors.New("same node MRENCLAVE as the installed release: no key handover is needed")
	// ErrNoUpgrade means no upgrade is journalled.
	ErrNoUpgrade = errors.New("no upgrade in progress")
)

// Upgrader drives one host's handover upgrade through its phases.
type Upgrader struct {
	journal *journalStore
	host    Host
	log     *slog.Logger
	now     func() time.Time
}

// NewUpgrader returns an upgrader over a journal and a host.
func newUpgrader(j *journalStore, h Host, log *slog.Logger) *Upgrader {
	return &Upgrader{journal: j, host: h, log: log, now: time.Now}
}

// Begin journals a new upgrade from the installed version to target. The
// caller has already staged and verified target.
func (u *Upgrader) Begin(target Installation, mode Mode, activation uint64) (*UpgradeRecord, error) {
	var rec UpgradeRecord
	err := u.journal.update(func(j *Journal) error {
		if j.Upgrade != nil && !j.Upgrade.Terminal() {
			return fmt.Errorf("%w (to %s, phase %s)", ErrUpgradeInProgress, j.Upgrade.To.Version, j.Upgrade.Phase)
		}
		if j.Upgrade != nil {
			j.History = append(j.History, *j.Upgrade)
			if len(j.History) > 20 {
				j.History = j.History[len(j.History)-20:]
			}
		}
		if target.NodeMREnclave == j.Installed.NodeMREnclave {
			return fmt.Errorf("version %s has the %w %s (a non-enclave release is rolled out without one)", target.Version, ErrSameEnclave, j.Installed.Version)
		}
		now := u.now().UTC()
		rec = UpgradeRecord{
			// Nanoseconds: a rollback and a new attempt in the same second
			// must not share (and reuse) a snapshot.
			ID:   fmt.Sprintf("%s-to-%s-%s", j.Installed.Version, target.Version, now.Format("20060102T150405.000000000")),
			Mode: mode, From: j.Installed, To: target, ActivationHeight: activation,
			Phase: PhaseStarted, StartedAt: now, UpdatedAt: now,
		}
		j.Upgrade = &rec
		return nil
	})
	if err != nil {
		return nil, err
	}
	u.log.Info("upgrade journalled", "id", rec.ID, "from", rec.From.Version, "to", rec.To.Version, "mode", mode)
	return &rec, nil
}

// Resume runs the remaining steps of the journalled upgrade until it is
// completed. On a step error it records the error and returns it; the
// journal still says where it stopped, so Resume can be called again
// (after a crash, or once the cause is fixed) or Rollback can undo it.
func (u *Upgrader) Resume(ctx context.Context) (*UpgradeRecord, error) {
	for {
		j := u.journal.get()
		rec := j.Upgrade
		if rec == nil {
			return nil, ErrNoUpgrade
		}
		if rec.Phase == PhaseCompleted || rec.Terminal() {
			return rec, nil
		}
		i := phaseIndex(rec.Phase)
		if i < 0 {
			return rec, fmt.Errorf("journal holds unknown phase %q", rec.Phase)
		}
		next := upgradeOrder[i+1]
		start := u.now()
		err := u.runStep(ctx, next, rec)
		if err != nil {
			_ = u.journal.update(func(j *Journal) error {
				j.Upgrade.Error = fmt.Sprintf("%s: %v", next, err)
				j.Upgrade.Attempts++
				j.Upgrade.UpdatedAt = u.now().UTC()
				return nil
			})
			u.log.Error("upgrade step failed", "id", rec.ID, "step", next, "err", err)
			return u.journal.get().Upgrade, fmt.Errorf("upgrade %s: step %s: %w", rec.ID, next, err)
		}
		if err := u.journal.update(func(j *Journal) error {
			j.Upgrade.Phase = next
			j.Upgrade.Error = ""
			j.Upgrade.UpdatedAt = u.now().UTC()
			j.Upgrade.Steps = append(j.Upgrade.Steps, StepTiming{Phase: next, Started: start.UTC(), Duration: u.now().Sub(start)})
			if next == PhaseCompleted {
				j.Installed = j.Upgrade.To
			}
			return nil
		}); err != nil {
			return rec, err
		}
		u.log.Info("upgrade step done", "id", rec.ID, "phase", next, "took", u.now().Sub(start).String())
	}
}

func (u *Upgrader) runStep(ctx context.Context, p Phase, rec *UpgradeRecord) error {
	switch p {
	case PhaseDistributionStopped:
		return u.host.StopDistribution(ctx)
	case PhaseSnapshotTaken:
		if err := u.host.Snapshot(ctx, rec.ID, rec.From); err != nil {
			return err
		}
		return u.journal.update(func(j *Journal) error { j.Upgrade.Snapshot = rec.ID; return nil })
	case PhaseKeysHeld:
		return u.host.HoldKeys(ctx, rec.ID, rec.From)
	case PhaseOldStopped:
		return u.host.StopNode(ctx)
	case PhaseNewStarted:
		return u.host.StartNode(ctx, rec.To, rec.ID)
	case PhaseNewServing:
		return u.host.AwaitServing(ctx, rec.To)
	case PhaseCompleted:
		// The new release's distribution binary: the journal installs
		// rec.To only once this step is done.
		return u.host.StartDistribution(ctx, rec.To)
	default:
		return fmt.Errorf("no step leads to phase %q", p)
	}
}

// Rollback undoes the journalled upgrade: it stops whatever node runs,
// restores the snapshot (if one was taken), restarts the old version —
// whose keys stayed sealed on disk — and restarts distribution. It is
// idempotent and refuses once the upgrade is finalized.
func (u *Upgrader) Rollback(ctx context.Context, reason string, force bool) (*UpgradeRecord, error) {
	j := u.journal.get()
	rec := j.Upgrade
	if rec == nil {
		return nil, fmt.Errorf("nothing to roll back: %w", ErrNoUpgrade)
	}
	switch rec.Phase {
	case PhaseRolledBack:
		return rec, nil
	case PhaseFinalized:
		return rec, fmt.Errorf("upgrade %s cannot be rolled back: %w", rec.ID, ErrFinalized)
	}
	var discarded *Loss
	if phaseIndex(rec.Phase) >= phaseIndex(PhaseNewServing) && rec.Snapshot != "" {
		loss, err := u.host.CommittedSince(ctx, rec.Snapshot)
		if err != nil && !force {
			return rec, fmt.Errorf("rollback: cannot tell what the new version committed since the snapshot (%v); pass force to roll back anyway", err)
		}
		if loss.Transactions > 0 {
			if !force {
				return rec, &agentapi.LossError{Loss: loss, Version: rec.To.Version}
			}
			u.log.Warn("forced rollback discards committed transactions", "id", rec.ID, "transactions", loss.Transactions, "from", loss.FromHeight, "to", loss.ToHeight)
			reason = fmt.Sprintf("%s (forced: discarded %d transactions in blocks %d..%d)", reason, loss.Transactions, loss.FromHeight, loss.ToHeight)
			discarded = &loss
		}
	}
	u.log.Warn("rolling back upgrade", "id", rec.ID, "phase", rec.Phase, "reason", reason)
	start := u.now()
	// Before the old node was stopped nothing changed on disk but the
	// snapshot: keep the old node running.
	if phaseIndex(rec.Phase) >= phaseIndex(PhaseKeysHeld) {
		if err := u.host.StopNode(ctx); err != nil {
			return rec, fmt.Errorf("rollback: stop node: %w", err)
		}
		if rec.Snapshot != "" {
			if err := u.host.RestoreSnapshot(ctx, rec.Snapshot); err != nil {
				return rec, fmt.Errorf("rollback: restore snapshot: %w", err)
			}
		}
	}
	if err := u.host.StartNode(ctx, rec.From, ""); err != nil {
		return rec, fmt.Errorf("rollback: start %s: %w", rec.From.Version, err)
	}
	if err := u.host.AwaitServing(ctx, rec.From); err != nil {
		return rec, fmt.Errorf("rollback: %s does not serve: %w", rec.From.Version, err)
	}
	if err := u.host.StartDistribution(ctx, rec.From); err != nil {
		return rec, fmt.Errorf("rollback: start distribution: %w", err)
	}
	err := u.journal.update(func(j *Journal) error {
		j.Installed = j.Upgrade.From
		j.Upgrade.Phase = PhaseRolledBack
		j.Upgrade.Error = reason
		j.Upgrade.Discarded = discarded
		j.Upgrade.UpdatedAt = u.now().UTC()
		j.Upgrade.Steps = append(j.Upgrade.Steps, StepTiming{Phase: PhaseRolledBack, Started: start.UTC(), Duration: u.now().Sub(start)})
		return nil
	})
	if err != nil {
		return rec, err
	}
	u.log.Info("upgrade rolled back", "id", rec.ID, "running", rec.From.Version)
	return u.journal.get().Upgrade, nil
}

// Finalize makes a completed upgrade permanent: the old version's sealed
// keys and the agent's held keys are deleted, so the old version can no
// longer be restarted.
func (u *Upgrader) Finalize(ctx context.Context) (*UpgradeRecord, error) {
	j := u.journal.get()
	rec := j.Upgrade
	if rec == nil {
		return nil, fmt.Errorf("nothing to finalize: %w", ErrNoUpgrade)
	}
	switch rec.Phase {
	case PhaseFinalized:
		return rec, nil
	case PhaseCompleted:
	default:
		return rec, fmt.Errorf("upgrade %s is at phase %s: %w: finish or roll it back first", rec.ID, rec.Phase, ErrNotCompleted)
	}
	if err := u.host.Finalize(ctx, rec.From, rec.ID); err != nil {
		return rec, fmt.Errorf("finalize: %w", err)
	}
	if err := u.journal.update(func(j *Journal) error {
		j.Upgrade.Phase = PhaseFinalized
		j.Upgrade.UpdatedAt = u.now().UTC()
		return nil
	}); err != nil {
		return rec, err
	}
	u.log.Info("upgrade finalized", "id", rec.ID, "installed", rec.To.Version)
	return u.journal.get().Upgrade, nil
}
