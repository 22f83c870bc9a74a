package agent

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// approvedRelease is a release the Node Operators Group approved on chain.
type approvedRelease struct {
	Version    string
	ApprovedAt uint64
	Release    []byte // the signed release JSON
}

// upgradeSchedule is an upgrade scheduled on chain for a flag day.
type upgradeSchedule struct {
	Version          string
	NodeMREnclave    tee.Measurement
	ActivationHeight uint64
}

// chainView is what the agent reads from the chain, through its node.
type chainView interface {
	// Approved lists approved releases in approval order.
	Approved(ctx context.Context) ([]approvedRelease, error)
	// Schedule returns the active upgrade schedule, if any.
	Schedule(ctx context.Context) (*upgradeSchedule, error)
	// RollbackApproved reports whether a rollback record allows going
	// from version from to the older version to.
	RollbackApproved(ctx context.Context, from, to string) (bool, error)
	// Status is the node's status.
	Status(ctx context.Context) (*nodeapi.Status, error)
}

// checkAllowed enforces that keys only go to a release approved on chain
// after the running one — never a downgrade, unless a rollback record
// approved the same way allows it.
func (a *Agent) checkAllowed(ctx context.Context, installed, target Installation) error {
	approved, err := a.chain.Approved(ctx)
	if err != nil {
		return fmt.Errorf("read approved releases from the chain: %w", err)
	}
	var tgt, cur *approvedRelease
	for i := range approved {
		switch approved[i].Version {
		case target.Version:
			tgt = &approved[i]
		case installed.Version:
			cur = &approved[i]
		}
	}
	if tgt == nil {
		return fmt.Errorf("release %s is not approved on chain by the Node Operators Group: no handover to it", target.Version)
	}
	sr, err := release.Parse(tgt.Release)
	if err != nil || sr.Manifest.Node.MREnclave != target.NodeMREnclave {
		return fmt.Errorf("the staged release %s differs from the one approved on chain", target.Version)
	}
	return checkNotDowngrade(installed.Version, target.Version, cur, tgt, func() (bool, error) {
		return a.chain.RollbackApproved(ctx, installed.Version, target.Version)
	})
}

// checkNotDowngrade decides whether release target (approved as tgt) may
// follow the installed release (approved as cur, nil if its approval is
// not on chain): it must be a newer version approved later, or an
// approved rollback record (rollbackApproved, read only when needed) must
// allow it. A refusal wraps release.ErrDowngrade.
func checkNotDowngrade(installed, target string, cur, tgt *approvedRelease, rollbackApproved func() (bool, error)) error {
	cmp, err := release.CompareVersions(target, installed)
	if err != nil {
		return err
	}
	if cmp > 0 && (cur == nil || tgt.ApprovedAt > cur.ApprovedAt) {
		return nil
	}
	ok, err := rollbackApproved()
	if err != nil {
		return fmt.Errorf("read rollback records: %w", err)
	}
	if !ok {
		return fmt.Errorf("%s is not approved after the running %s: refusing a downgrade without an approved rollback record: %w", target, installed, release.ErrDowngrade)
	}
	return nil
}

// watch follows the chain: it stages every approved release newer than the
// installed one, and when an upgrade is scheduled and this host's node has
// halted at the activation height, it performs the handover.
func (a *Agent) watch(ctx context.Context) {
	t := time.NewTicker(time.Duration(a.cfg.PollInterval))
	defer t.Stop()
	failed := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.watchOnce(ctx, failed); err != nil && ctx.Err() == nil {
			a.log.Debug("watch", "err", err)
		}
	}
}

func (a *Agent) watchOnce(ctx context.Context, failed map[string]time.Time) error {
	approved, err := a.chain.Approved(ctx)
	if err != nil {
		return err
	}
	installed := a.journal.get().Installed
	for _, r := range approved {
		if c, err := release.CompareVersions(r.Version, installed.Version); err != nil || c <= 0 {
			continue
		}
		if _, err := os.Stat(a.dir.Release(r.Version).Dir()); err == nil {
			continue
		}
		if t, ok := failed[r.Version]; ok && time.Since(t) < 30*time.Second {
			continue
		}
		if _, err := a.stage(ctx, r.Release); err != nil {
			failed[r.Version] = time.Now()
			a.log.Error("staging an approved release failed", "version", r.Version, "err", err)
		}
	}
	sch, err := a.chain.Schedule(ctx)
	if err == nil {
		a.keepLedgerHashed(ctx, sch)
	}
	if !a.cfg.FlagDay.Coordinated {
		// A scheduled flag day is the flag-day driver's (flagday.go): it
		// hands over at H, proves the new node, rolls back and finalizes.
		return nil
	}
	if err != nil || sch == nil {
		return err
	}
	j := a.journal.get()
	if j.Installed.NodeMREnclave == sch.NodeMREnclave {
		return nil // already running it
	}
	if up := j.Upgrade; up != nil && up.To.Version == sch.Version && (up.Phase == PhaseCompleted || up.Terminal()) {
		return nil // done (or rolled back: the coordinator decides what next)
	}
	st, err := a.chain.Status(ctx)
	if err != nil {
		return err
	}
	if st.Height < sch.ActivationHeight || !st.Halted {
		return nil
	}
	a.log.Info("node halted at the scheduled activation height: upgrading", "version", sch.Version, "height", sch.ActivationHeight)
	_, err = a.upgradeNow(ctx, sch.Version, agentapi.ModeScheduled, sch.ActivationHeight, false)
	return err
}

// keepLedgerHashed hashes the live ledger's new sstables into the
// snapshot hash cache in the background when decide.PrehashDue says so:
// every decide.PrehashEvery, and at once when a flag day to another node
// enclave is scheduled, so that the snapshot taken at H — inside the
// window in which client ingress is closed — hashes only the sstables
// written since (snapshot.HashCache). sch is the current schedule (nil:
// none).
func (a *Agent) keepLedgerHashed(ctx context.Context, sch *upgradeSchedule) {
	schedule := ""
	if sch != nil && a.journal.get().Installed.NodeMREnclave != sch.NodeMREnclave {
		schedule = fmt.Sprintf("%s@%d", sch.Version, sch.ActivationHeight)
	}
	now := time.Now()
	if !decide.PrehashDue(now, a.prehashStarted, a.prehashing.Load(), schedule, a.prehashed) {
		return
	}
	a.prehashing.Store(true)
	a.prehashStarted = now
	if schedule != "" {
		a.prehashed = schedule
	}
	go func() {
		defer a.prehashing.Store(false)
		files, bytes, err := a.host.Prehash(ctx)
		switch {
		case err != nil && ctx.Err() == nil && schedule != "":
			a.log.Warn("hashing the ledger ahead of the flag-day snapshot failed; the snapshot hashes everything", "schedule", schedule, "err", err)
		case err != nil:
			a.log.Debug("hashing the ledger ahead", "err", err) // e.g. no ledger yet
		case schedule != "" || files > 0:
			a.log.Info("ledger hashed ahead of the next snapshot", "schedule", schedule, "files", files, "bytes", bytes, "took", time.Since(now).String())
		}
	}()
}
