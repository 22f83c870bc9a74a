package flagday

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
)

// Options configures a flag day.
type Options struct {
	// Root is where journals live (layout.FlagDaysUnder(Root)).
	Root string
	// Topology is the network.
	Topology Topology
	// Version is the approved release to move to.
	Version string
	// Mode selects scheduled (on chain) or manual.
	Mode Mode
	// ActivationIn is how many blocks after the current head the upgrade
	// is scheduled (scheduled mode; default and minimum: the consensus
	// schedule lead plus 5).
	ActivationIn uint64
	// LivePeriod is how long to watch after reopening (default 10s).
	LivePeriod time.Duration
	// StepTimeout bounds each waiting step (default 2m).
	StepTimeout time.Duration
	// Finalize deletes the old version's keys on every host once the live
	// period passed (after that no rollback is possible).
	Finalize bool
	// NoRollback leaves a failed flag day where it stopped.
	NoRollback bool
	// Progress receives the live progress table and step lines.
	Progress io.Writer
	// Logger receives structured logs.
	Logger *slog.Logger
	// Faults injects failures (tests): "fail:flagday.<step>" and
	// "crash:flagday.after-<step>". nil means none.
	Faults Faults
}

// Faults are the coordinator's failure-injection points, for tests.
// internal/fault's Set implements them; the teeup CLI links it only in a
// build with the "faults" tag.
type Faults interface {
	// Error returns an error when "fail:<name>" is enabled.
	Error(name string) error
	// CrashPoint ends the process as kill -9 would when "crash:<name>" is
	// enabled.
	CrashPoint(name string)
}

// noFaults is a coordinator without failure injection.
type noFaults struct{}

func (noFaults) Error(string) error { return nil }
func (noFaults) CrashPoint(string)  {}

// Coordinator runs one flag day.
type Coordinator struct {
	opt     Options
	j       *journal
	log     *slog.Logger
	out     io.Writer
	admins  map[uint64]*nodeapi.AdminClient
	agents  map[uint64]*agentapi.Client
	table   *progressTable
	nogKeys []ed25519.PrivateKey
	opKeys  []ed25519.PrivateKey
}

func (o *Options) defaults() {
	if o.ActivationIn == 0 {
		o.ActivationIn = ledger.MinScheduleLead + 5
	}
	if o.ActivationIn < ledger.MinScheduleLead+5 {
		o.ActivationIn = ledger.MinScheduleLead + 5
	}
	if o.LivePeriod == 0 {
		o.LivePeriod = 10 * time.Second
	}
	if o.StepTimeout == 0 {
		o.StepTimeout = 2 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Mode == "" {
		o.Mode = Scheduled
	}
	if o.Faults == nil {
		o.Faults = noFaults{}
	}
}

func newCoordinator(opt Options) (*Coordinator, error) {
	opt.defaults()
	if err := opt.Topology.Validate(); err != nil {
		return nil, err
	}
	admins, agents, err := dialHosts(opt.Topology)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{opt: opt, log: opt.Logger, out: opt.Progress, admins: admins, agents: agents}
	for _, p := range opt.Topology.NOGKeys {
		k, err := keyfile.ReadPrivate(p)
		if err != nil {
			return nil, err
		}
		c.nogKeys = append(c.nogKeys, k)
	}
	for _, p := range opt.Topology.OperatorKeys {
		k, err := keyfile.ReadPrivate(p)
		if err != nil {
			return nil, err
		}
		c.opKeys = append(c.opKeys, k)
	}
	c.table = newProgressTable(opt.Progress, opt.Topology.Hosts)
	return c, nil
}

// Close releases connections.
func (c *Coordinator) Close() {
	for _, a := range c.admins {
		a.Close()
	}
	for _, a := range c.agents {
		a.Close()
	}
}

// stepsFor lists the steps of a mode.
func stepsFor(m Mode, finalize bool) []string {
	var s []string
	if m == Manual {
		s = []string{StepPreflight, StepCloseIngress, StepHalt, StepUpgrade, StepResume, StepVerifyChain, StepAttest, StepPayments, StepReopen, StepLive}
	} else {
		s = []string{StepPreflight, StepSchedule, StepCloseIngress, StepHalt, StepUpgrade, StepVerifyChain, StepAttest, StepPayments, StepReopen, StepLive}
	}
	if finalize {
		s = append(s, StepFinalize)
	}
	return s
}

// Run starts a new flag day, or resumes the unfinished one under
// opt.Root, and drives it to completion or rollback. It returns the
// record and an error if the flag day did not complete.
func Run(ctx context.Context, opt Options) (*Record, error) {
	c, err := newCoordinator(opt)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.refuseCoordinatorFree(ctx); err != nil {
		return nil, err
	}
	if rec, dir, err := LoadCurrent(opt.Root); err == nil && (rec.Outcome == OutcomeRunning || rec.Outcome == OutcomeRollingBack) {
		if opt.Version != "" && rec.Version != opt.Version {
			return rec, fmt.Errorf("flag day %s to %s is unfinished (%s): resume it ('teeup flagday coordinate --version %s'), or abort it first", rec.ID, rec.Version, rec.Outcome, rec.Version)
		}
		if c.j, err = openJournal(dir); err != nil {
			return nil, err
		}
		c.opt.Mode = rec.Mode
		fmt.Fprintf(c.out, "resuming flag day %s (%s, %s)\n", rec.ID, rec.Mode, rec.Outcome)
	} else {
		if opt.Version == "" {
			return nil, errors.New("flag day: --version is required")
		}
		rec := c.newRecord()
		if c.j, err = createJournal(opt.Root, rec); err != nil {
			return nil, err
		}
		fmt.Fprintf(c.out, "flag day %s: upgrade to %s (%s mode), journal %s\n", rec.ID, rec.Version, rec.Mode, c.j.dir)
	}
	return c.drive(ctx)
}

func (c *Coordinator) drive(ctx context.Context) (*Record, error) {
	if c.j.get().Outcome == OutcomeRollingBack {
		return c.rollback(ctx, c.j.get().Rollback.Reason)
	}
	for _, st := range c.j.get().Steps {
		if st.Status == StepDone || st.Status == StepSkipped {
			continue
		}
		if err := c.runStep(ctx, st.Name); err != nil {
			if ctx.Err() != nil {
				return ptr(c.j.get()), err
			}
			rec := c.j.get()
			reopened := rec.step(StepReopen) != nil && rec.step(StepReopen).Status == StepDone
			if st.Name == StepPreflight {
				// Preflight only reads: nothing to undo.
				_ = c.j.update(func(r *Record) { r.Outcome, r.Error, r.FinishedAt = OutcomeFailed, err.Error(), time.Now().UTC() })
				return ptr(c.j.get()), err
			}
			if c.opt.NoRollback || reopened {
				_ = c.j.update(func(r *Record) { r.Outcome, r.Error, r.FinishedAt = OutcomeFailed, err.Error(), time.Now().UTC() })
				if reopened {
					return ptr(c.j.get()), fmt.Errorf("%w (ingress was already reopened: no automatic rollback; see 'teeup flagday rollback')", err)
				}
				return ptr(c.j.get()), err
			}
			rolled, rbErr := c.rollback(ctx, err.Error())
			if rbErr != nil {
				return rolled, fmt.Errorf("%v; rollback failed: %w", err, rbErr)
			}
			return rolled, fmt.Errorf("flag day failed and was rolled back: %w", err)
		}
	}
	_ = c.j.update(func(r *Record) { r.Outcome, r.FinishedAt = OutcomeCompleted, time.Now().UTC() })
	c.j.event(Event{Kind: "completed", Detail: c.j.get().Version})
	return ptr(c.j.get()), nil
}

func ptr(r Record) *Record { return &r }

// newRecord is the journal of a new flag day with all its steps pending.
func (c *Coordinator) newRecord() Record {
	now := time.Now().UTC()
	rec := Record{ID: fmt.Sprintf("%s-%s", c.opt.Version, now.Format("20060102T150405Z")), Mode: c.opt.Mode, ChainID: c.opt.Topology.ChainID,
		Version: c.opt.Version, StartedAt: now, Outcome: OutcomeRunning}
	for _, s := range stepsFor(c.opt.Mode, c.opt.Finalize) {
		rec.Steps = append(rec.Steps, StepState{Name: s, Status: StepPending})
	}
	return rec
}

func (c *Coordinator) runStep(ctx context.Context, name string) error {
	start := time.Now()
	_ = c.j.update(func(r *Record) {
		s := r.step(name)
		s.Status, s.Started, s.Detail = StepRunning, start.UTC(), ""
	})
	c.j.event(Event{Step: name, Kind: "step-start"})
	fmt.Fprintf(c.out, "── %s\n", name)
	sctx, cancel := context.WithTimeout(ctx, c.opt.StepTimeout)
	defer cancel()
	detail, err := c.step(sctx, name)
	if err == nil {
		err = c.opt.Faults.Error("flagday." + name)
	}
	took := time.Since(start)
	if err != nil {
		_ = c.j.update(func(r *Record) {
			s := r.step(name)
			s.Status, s.Finished, s.Duration, s.Detail = StepFailed, time.Now().UTC(), took, err.Error()
		})
		c.j.event(Event{Step: name, Kind: "step-failed", Detail: err.Error()})
		fmt.Fprintf(c.out, "   FAILED after %s: %v\n", took.Round(time.Millisecond), err)
		return fmt.Errorf("%s: %w", name, err)
	}
	_ = c.j.update(func(r *Record) {
		s := r.step(name)
		s.Status, s.Finished, s.Duration, s.Detail = StepDone, time.Now().UTC(), took, detail
	})
	c.j.event(Event{Step: name, Kind: "step-done", Detail: detail})
	fmt.Fprintf(c.out, "   done in %s: %s\n", took.Round(time.Millisecond), detail)
	c.opt.Faults.CrashPoint("flagday.after-" + name)
	return nil
}

func (c *Coordinator) step(ctx context.Context, name string) (string, error) {
	switch name {
	case StepPreflight:
		return c.preflight(ctx)
	case StepSchedule:
		return c.schedule(ctx)
	case StepCloseIngress:
		return c.closeIngress(ctx)
	case StepHalt:
		return c.haltAtHeight(ctx)
	case StepUpgrade:
		return c.upgradeHosts(ctx)
	case StepResume:
		return c.resumeChain(ctx)
	case StepVerifyChain:
		return c.verifyChain(ctx)
	case StepAttest:
		return c.verifyAttestation(ctx)
	case StepPayments:
		return c.testPayments(ctx)
	case StepReopen:
		return c.reopen(ctx)
	case StepLive:
		return c.livePeriod(ctx)
	case StepFinalize:
		return c.finalize(ctx)
	}
	return "", fmt.Errorf("unknown step %q", name)
}

// statuses reads every node's status; missing nodes are errors.
func (c *Coordinator) statuses(ctx context.Context) (map[uint64]*nodeapi.Status, error) {
	out := map[uint64]*nodeapi.Status{}
	var errs []error
	for _, h := range c.opt.Topology.Hosts {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := c.admins[h.ID].Status(sctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", h.ID, err))
			continue
		}
		out[h.ID] = st
	}
	return out, errors.Join(errs...)
}

// poll calls check every interval until it reports done, an error other
// than errNotYet, or ctx ends (then the last "not yet" reason is returned).
func (c *Coordinator) poll(ctx context.Context, interval time.Duration, check func() (bool, string, error)) error {
	last := ""
	for {
		done, why, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if why != last && why != "" {
			c.j.event(Event{Kind: "observe", Detail: why})
		}
		last = why
		select {
		case <-ctx.Done():
			if last == "" {
				last = ctx.Err().Error()
			}
			return fmt.Errorf("gave up waiting: %s", last)
		case <-time.After(interval):
		}
	}
}

// anyAdmin returns an admin client of a node that answers.
func (c *Coordinator) anyAdmin(ctx context.Context) (*nodeapi.AdminClient, error) {
	var lastErr error
	for _, h := range c.opt.Topology.Hosts {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.admins[h.ID].Status(sctx)
		cancel()
		if err == nil {
			return c.admins[h.ID], nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no node answers: %w", lastErr)
}

// governance reads the governance state from any node.
func (c *Coordinator) governance(ctx context.Context) (*nodeapi.Governance, error) {
	a, err := c.anyAdmin(ctx)
	if err != nil {
		return nil, err
	}
	return a.Releases(ctx)
}

// submitGovernance signs a governance tx with key and submits it through
// an admin socket (which works while ingress is closed), waiting until it
// is committed.
func (c *Coordinator) submitGovernance(ctx context.Context, a *nodeapi.AdminClient, key ed25519.PrivateKey, kind ledger.TxKind, payload []byte) (*nodeapi.Receipt, error) {
	addr, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	acct, err := a.Account(ctx, addr.String())
	if err != nil {
		return nil, err
	}
	tx, err := ledger.NewGovernanceTx(c.opt.Topology.ChainID, kind, payload, acct.Nonce+1, key)
	if err != nil {
		return nil, err
	}
	// A vote whose wait for its block timed out may still be committed:
	// the chain says, not the timeout.
	rec, err := nodeapi.SubmitAndConfirm(ctx, a, tx.Encode(), tx.ID().String(), voteConfirmWait)
	if err != nil {
		return nil, err
	}
	if ledger.Code(rec.Code) == ledger.CodeNoEffect {
		return rec, fmt.Errorf("%s tx %s at height %d: %w", kind, rec.TxID, rec.Height, nodeapi.ErrNoEffect)
	}
	return rec, nil
}

// voteConfirmWait is how long a vote whose submission ended without the
// node's verdict is looked up.
const voteConfirmWait = 30 * time.Second

// releaseOf returns the approved signed release of version from the chain.
func releaseOf(g *nodeapi.Governance, version string) (*release.SignedRelease, *nodeapi.ReleaseInfo, error) {
	ri, ok := g.Release(version)
	if !ok {
		return nil, nil, fmt.Errorf("release %s was never proposed on chain", version)
	}
	if !ri.Approved() {
		return nil, nil, fmt.Errorf("release %s is proposed but not approved by the Node Operators Group quorum (%d of %d approvals)", version, len(ri.Approvers), g.Quorum)
	}
	sr, err := release.Parse(ri.Release)
	if err != nil {
		return nil, nil, fmt.Errorf("release %s on chain: %w", version, err)
	}
	return sr, ri, nil
}

// RunStep runs one step of the current flag day on its own — for networks
// that coordinate by call and move step by step. A new flag day is
// started (in opt.Mode) when none is unfinished. Steps are idempotent and
// verify their preconditions; a failed step does not roll back (decide on
// the call: run it again, or 'teeup flagday abort').
func RunStep(ctx context.Context, opt Options, name string) (*Record, error) {
	c, err := newCoordinator(opt)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.refuseCoordinatorFree(ctx); err != nil {
		return nil, err
	}
	if rec, dir, err := LoadCurrent(opt.Root); err == nil && (rec.Outcome == OutcomeRunning || rec.Outcome == OutcomeFailed) {
		if c.j, err = openJournal(dir); err != nil {
			return nil, err
		}
		c.opt.Mode = rec.Mode
		if rec.Outcome == OutcomeFailed {
			_ = c.j.update(func(r *Record) { r.Outcome, r.Error = OutcomeRunning, "" })
		}
	} else {
		if opt.Version == "" {
			return nil, errors.New("flag day step: no flag day in progress; pass --version to start one")
		}
		if c.j, err = createJournal(opt.Root, c.newRecord()); err != nil {
			return nil, err
		}
	}
	rec := c.j.get()
	if rec.step(name) == nil {
		var names []string
		for _, s := range rec.Steps {
			names = append(names, s.Name)
		}
		return &rec, fmt.Errorf("flag day %s (%s mode) has no step %q; its steps: %v", rec.ID, rec.Mode, name, names)
	}
	if err := c.runStep(ctx, name); err != nil {
		_ = c.j.update(func(r *Record) { r.Outcome, r.Error = OutcomeFailed, err.Error() })
		return ptr(c.j.get()), err
	}
	all := true
	for _, s := range c.j.get().Steps {
		all = all && (s.Status == StepDone || s.Status == StepSkipped)
	}
	if all {
		_ = c.j.update(func(r *Record) { r.Outcome, r.FinishedAt = OutcomeCompleted, time.Now().UTC() })
	}
	return ptr(c.j.get()), nil
}
