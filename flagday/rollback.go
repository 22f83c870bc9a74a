package flagday

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/ledger"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// rollback returns the network to the old version: every agent restores
// its snapshot and restarts the old node (whose keys stayed sealed); the
// schedule is aborted on chain (or the manual halt cleared) so the old
// nodes continue past H; ingress reopens. Every part is idempotent, so an
// interrupted rollback is resumed by running it again.
func (c *Coordinator) rollback(ctx context.Context, reason string) (*Record, error) {
	ctx = context.WithoutCancel(ctx)
	_ = c.j.update(func(r *Record) {
		r.Outcome, r.Error = OutcomeRollingBack, reason
		if r.Rollback == nil {
			r.Rollback = &RollbackInfo{Reason: reason, StartedAt: time.Now().UTC()}
		}
	})
	c.j.event(Event{Kind: "rollback", Detail: reason})
	fmt.Fprintf(c.out, "── rollback: %s\n", reason)
	rec := c.j.get()

	// 1. Agents restore their snapshots and restart the old version.
	var mu sync.Mutex
	var discarded []HostLoss
	var errs []string
	var wg sync.WaitGroup
	for _, h := range c.opt.Topology.Hosts {
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			st, err := c.agents[id].Status(ctx)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("host %d agent: %v", id, err))
				mu.Unlock()
				return
			}
			up := st.Upgrade
			if up == nil || up.To.Version != rec.Version || up.Phase == agentapi.PhaseRolledBack {
				return // this host never started the upgrade, or already rolled back
			}
			r, err := c.agents[id].Rollback(ctx, agentapi.RollbackRequest{Reason: "flag day rollback: " + reason, Force: true})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("host %d: %v", id, err))
				return
			}
			if r.Discarded != nil {
				discarded = append(discarded, HostLoss{Host: id, Loss: *r.Discarded})
			}
		}(h.ID)
	}
	wg.Wait()
	if len(errs) > 0 {
		sort.Strings(errs)
		return ptr(c.j.get()), fmt.Errorf("rollback: %s", strings.Join(errs, "; "))
	}
	sort.Slice(discarded, func(i, j int) bool { return discarded[i].Host < discarded[j].Host })
	_ = c.j.update(func(r *Record) { r.Rollback.Discarded = discarded })

	// 2. Every node answers, on the old enclave.
	wait, cancel := context.WithTimeout(ctx, c.opt.StepTimeout)
	defer cancel()
	if !rec.FromMREnclave.IsZero() {
		if err := c.poll(wait, 200*time.Millisecond, func() (bool, string, error) {
			sts, err := c.statuses(ctx)
			c.table.render(sts, c.agentStatuses(ctx), rec.ActivationHeight)
			if err != nil {
				return false, err.Error(), nil
			}
			for id, st := range sts {
				if st.MREnclave != rec.FromMREnclave {
					return false, fmt.Sprintf("node %d runs %s", id, st.MREnclave.Short()), nil
				}
			}
			return true, "", nil
		}); err != nil {
			return ptr(c.j.get()), fmt.Errorf("rollback: old nodes: %w", err)
		}
	}

	// 3. Let the old nodes continue past H.
	if rec.Mode == Scheduled {
		if err := c.abortSchedule(wait, reason); err != nil {
			return ptr(c.j.get()), fmt.Errorf("rollback: %w", err)
		}
	} else if rec.ActivationHeight != 0 {
		a, err := c.anyAdmin(wait)
		if err != nil {
			return ptr(c.j.get()), err
		}
		if _, err := a.Halt(wait, 0); err != nil {
			return ptr(c.j.get()), fmt.Errorf("rollback: clear halt: %w", err)
		}
	}

	// 4. Heights advance again, every node agrees.
	if err := c.poll(wait, 200*time.Millisecond, func() (bool, string, error) {
		sts, err := c.statuses(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		for id, st := range sts {
			if rec.ActivationHeight != 0 && st.Height <= rec.ActivationHeight {
				return false, fmt.Sprintf("node %d still at height %d", id, st.Height), nil
			}
		}
		return true, "", nil
	}); err != nil {
		return ptr(c.j.get()), fmt.Errorf("rollback: old network does not advance: %w", err)
	}

	// 5. Reopen ingress: the network runs the old version again.
	for _, h := range c.opt.Topology.Hosts {
		if _, err := c.admins[h.ID].SetIngress(ctx, true, ""); err != nil {
			return ptr(c.j.get()), fmt.Errorf("rollback: reopen ingress on node %d: %w", h.ID, err)
		}
	}
	now := time.Now().UTC()
	_ = c.j.update(func(r *Record) {
		r.Outcome, r.FinishedAt = OutcomeRolledBack, now
		r.Rollback.FinishedAt = now
		if r.IngressReopenedAt.IsZero() {
			r.IngressReopenedAt = now
		}
	})
	c.j.event(Event{Kind: "rolled-back", Detail: reason})
	fmt.Fprintf(c.out, "   rolled back: every node runs %s again and commits past height %d; ingress reopened\n", rec.FromVersion, rec.ActivationHeight)
	return ptr(c.j.get()), nil
}

// abortSchedule votes the abort of the flag day's schedule with the
// coordinator's Node Operators Group keys and waits until it is cleared.
// The votes are sent together: an abort takes effect when its quorum is
// admitted, before any block, since halted nodes build none.
func (c *Coordinator) abortSchedule(ctx context.Context, reason string) error {
	rec := c.j.get()
	g, err := c.governance(ctx)
	if err != nil {
		return err
	}
	if g.Schedule == nil || g.Schedule.Version != rec.Version {
		return nil // never came into force, or already aborted
	}
	if len(c.nogKeys) < g.Quorum {
		return fmt.Errorf("aborting the schedule needs %d Node Operators Group votes; the coordinator holds %d keys (the others vote with 'teeup release abort')", g.Quorum, len(c.nogKeys))
	}
	a, err := c.anyAdmin(ctx)
	if err != nil {
		return err
	}
	if len(reason) > 200 {
		reason = reason[:200]
	}
	payload := ledger.EncodeUpgradeAbort(ledger.UpgradeAbort{Version: rec.Version, Reason: reason})
	var wg sync.WaitGroup
	for i := 0; i < g.Quorum; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if _, err := c.submitGovernance(sctx, a, c.nogKeys[i], ledger.TxAbortUpgrade, payload); err != nil {
				c.j.event(Event{Kind: "observe", Detail: fmt.Sprintf("abort vote %d: %v", i+1, err)})
			}
		}(i)
	}
	err = c.poll(ctx, 200*time.Millisecond, func() (bool, string, error) {
		g, err := c.governance(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		if g.Schedule != nil {
			return false, "waiting for the abort quorum", nil
		}
		for _, ab := range g.Aborts {
			if ab.Version == rec.Version {
				_ = c.j.update(func(r *Record) { r.Rollback.AbortHeight = ab.Height })
			}
		}
		return true, "", nil
	})
	wg.Wait()
	if err != nil {
		return fmt.Errorf("abort the schedule on chain: %w", err)
	}
	return nil
}

// Abort stops the unfinished flag day under opt.Root and rolls it back.
// Once ingress has reopened it refuses: use Rollback.
func Abort(ctx context.Context, opt Options, reason string) (*Record, error) {
	c, err := newCoordinator(opt)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.refuseCoordinatorFree(ctx); err != nil {
		return nil, err
	}
	rec, dir, err := LoadCurrent(opt.Root)
	if err != nil {
		return nil, errors.New("no flag day to abort")
	}
	if rec.Outcome != OutcomeRunning && rec.Outcome != OutcomeRollingBack && rec.Outcome != OutcomeFailed {
		return rec, fmt.Errorf("flag day %s is %s: nothing to abort", rec.ID, rec.Outcome)
	}
	if s := rec.step(StepReopen); s != nil && s.Status == StepDone {
		return rec, fmt.Errorf("flag day %s already reopened ingress: use 'teeup flagday rollback' (which says what would be lost)", rec.ID)
	}
	if c.j, err = openJournal(dir); err != nil {
		return nil, err
	}
	c.opt.Mode = rec.Mode
	return c.rollback(ctx, reason)
}

// Loss says what rolling back a completed flag day would discard.
type Loss struct {
	FromHeight   uint64
	ToHeight     uint64
	Transactions int
	TestTxs      int
}

// RollbackCompleted rolls back a flag day whose ingress already reopened.
// Blocks committed by the new version after the activation height would be
// lost; without force it only reports them and refuses.
func RollbackCompleted(ctx context.Context, opt Options, force bool, reason string) (*Record, *Loss, error) {
	c, err := newCoordinator(opt)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	if err := c.refuseCoordinatorFree(ctx); err != nil {
		return nil, nil, err
	}
	rec, dir, err := LoadCurrent(opt.Root)
	if err != nil {
		return nil, nil, errors.New("no flag day to roll back")
	}
	if rec.Outcome == OutcomeRolledBack {
		return rec, nil, nil
	}
	if c.j, err = openJournal(dir); err != nil {
		return nil, nil, err
	}
	c.opt.Mode = rec.Mode
	for _, h := range c.opt.Topology.Hosts {
		st, err := c.agents[h.ID].Status(ctx)
		if err != nil {
			return rec, nil, err
		}
		if st.Upgrade != nil && st.Upgrade.To.Version == rec.Version && st.Upgrade.Phase == agentapi.PhaseFinalized {
			return rec, nil, fmt.Errorf("host %d finalized the upgrade (the old version's keys are deleted): it cannot be rolled back", h.ID)
		}
	}
	loss, err := c.loss(ctx)
	if err != nil {
		return rec, nil, err
	}
	if loss.Transactions > 0 && !force {
		return rec, loss, fmt.Errorf("%w: rolling back would discard %d transactions committed in blocks %d..%d by %s (%d of them operator test payments); pass --force to roll back anyway",
			agentapi.ErrWouldLoseTransactions, loss.Transactions, loss.FromHeight, loss.ToHeight, rec.Version, loss.TestTxs)
	}
	// Close ingress first so nothing else is acknowledged and lost.
	for _, h := range c.opt.Topology.Hosts {
		if _, err := c.admins[h.ID].SetIngress(ctx, false, "rolling back "+rec.Version); err != nil {
			return rec, loss, err
		}
	}
	out, err := c.rollback(ctx, reason)
	return out, loss, err
}

func (c *Coordinator) loss(ctx context.Context) (*Loss, error) {
	rec := c.j.get()
	a, err := c.anyAdmin(ctx)
	if err != nil {
		return nil, err
	}
	st, err := a.Status(ctx)
	if err != nil {
		return nil, err
	}
	l := &Loss{FromHeight: rec.ActivationHeight + 1, ToHeight: st.Height, TestTxs: len(rec.TestTxs)}
	for h := rec.ActivationHeight + 1; h <= st.Height; h++ {
		b, err := a.Block(ctx, h)
		if err != nil {
			return nil, err
		}
		l.Transactions += int(b.TxCount)
	}
	return l, nil
}

// Current returns the newest flag day's record under root.
func Current(root string) (*Record, error) {
	rec, _, err := LoadCurrent(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errors.New("no flag day has run here")
	}
	return rec, err
}
