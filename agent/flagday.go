package agent

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/tee"
)

// FlagDayConfig are the agent's flag-day settings (agent.json
// "flag_day"). The host decides its own part of a flag day from the
// chain (package agent/decide); these are its deadlines and its test
// payments.
type FlagDayConfig struct {
	// Coordinated leaves the flag day to an external coordinator (the
	// former 'teeup flagday' mode): the agent only hands over when its
	// node halts at the activation height, and neither proves, rolls back
	// nor finalizes by itself. Off by default.
	Coordinated bool `json:"coordinated,omitempty"`
	// ReadyTimeout is how long after its new node serves the host waits
	// for the chain to record the flag day ready before it rolls itself
	// back (default 3m).
	ReadyTimeout Duration `json:"ready_timeout,omitempty"`
	// LivePeriod is how long after ready the host keeps the old release's
	// keys before it finalizes by itself (default 2m).
	LivePeriod Duration `json:"live_period,omitempty"`
	// Retry is how often a submission that has not landed is repeated
	// (default 5s).
	Retry Duration `json:"retry,omitempty"`
	// TestKey is the operator's test account key file: the new node pays
	// it 1 (self payment) and CrossTo 1 (cross payment) before it records
	// readiness. Without it no test payment is sent.
	TestKey string `json:"test_key,omitempty"`
	// CrossTo is the hex address of another operator's test account.
	CrossTo string `json:"cross_to,omitempty"`
}

// flagDayDefaults fills the flag-day defaults.
func (c FlagDayConfig) withDefaults() FlagDayConfig {
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = Duration(3 * time.Minute)
	}
	if c.LivePeriod == 0 {
		c.LivePeriod = Duration(2 * time.Minute)
	}
	if c.Retry == 0 {
		c.Retry = Duration(5 * time.Second)
	}
	return c
}

// PathFlagDay is the agent API's flag-day state (see agentapi).
const PathFlagDay = agentapi.PathFlagDay

// flagDay is the thin driver of decide: it observes, decides, journals,
// acts and journals the results.
type flagDay struct {
	a    *Agent
	cfg  decide.Config
	fcfg FlagDayConfig
	path string

	mu    sync.Mutex
	state decide.State
	// newMR is the tracked schedule's node MRENCLAVE (for dialling peers).
	newMR tee.Measurement
	// lastBlocked rate-limits the error log of what blocks the host.
	lastBlocked     string
	lastBlockedAt   time.Time
	lastNetworkPoll time.Time
	network         *decide.Network
	// lastObs is the last observation, for the driver's next poll.
	lastObs decide.Observation
}

func (a *Agent) newFlagDay() (*flagDay, error) {
	fc := a.cfg.FlagDay.withDefaults()
	f := &flagDay{a: a, fcfg: fc, path: a.dir.FlagDayJournal(), cfg: decide.Config{
		ServeTimeout: time.Duration(a.cfg.ServeTimeout), ReadyTimeout: time.Duration(fc.ReadyTimeout),
		LivePeriod: time.Duration(fc.LivePeriod), Retry: time.Duration(fc.Retry), MaxLateAttempts: 3,
	}}
	raw, err := os.ReadFile(f.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read flag-day journal: %w", err)
	default:
		if err := json.Unmarshal(raw, &f.state); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", f.path, ErrCorruptJournal, err)
		}
	}
	return f, nil
}

func (f *flagDay) get() decide.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// save journals s (atomically) and makes it the current state.
func (f *flagDay) save(s decide.State) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("flag-day journal: %w", err)
	}
	if err := fsutil.WriteFileAtomic(f.path, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("flag-day journal: %w", err)
	}
	f.mu.Lock()
	f.state = s
	f.mu.Unlock()
	return nil
}

func (f *flagDay) handle(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, f.get())
}

// step runs one round: observe, decide, journal, act, journal. It
// reports whether it acted (the driver then decides again at once).
func (f *flagDay) step(ctx context.Context) (bool, error) {
	o := f.observe(ctx)
	defer func() {
		f.mu.Lock()
		f.lastObs = o
		f.mu.Unlock()
	}()
	prev := f.get()
	s, actions := decide.Decide(f.cfg, prev, o)
	if s.Stage != prev.Stage || s.Version != prev.Version {
		f.a.log.Info("flag day", "version", s.Version, "activation_height", s.ActivationHeight, "stage", s.Stage, "from", prev.Stage, "reason", s.Reason)
	}
	if err := f.save(s); err != nil {
		return false, err
	}
	acted := false
	for _, act := range actions {
		acted = acted || act.Kind != decide.ActReportBlocked
		began := time.Now()
		r := f.act(ctx, s, act)
		if r.Err != nil && ctx.Err() == nil {
			f.a.log.Warn("flag-day action failed", "action", act.Kind, "took", time.Since(began).String(), "err", r.Err)
		} else if act.Kind != decide.ActReportBlocked {
			f.a.log.Info("flag-day action done", "action", act.Kind, "took", time.Since(began).String())
		}
		s = decide.Apply(s, r)
		if err := f.save(s); err != nil {
			return false, err
		}
		if r.Err != nil {
			acted = false // wait for the next tick before trying again
		}
	}
	return acted, nil
}

func (f *flagDay) observe(ctx context.Context) decide.Observation {
	a := f.a
	j := a.journal.get()
	o := decide.Observation{Now: time.Now(), Running: j.Installed.Version}
	if up := j.Upgrade; up != nil {
		o.Upgrade = &decide.Upgrade{To: up.To.Version, Phase: string(up.Phase), Failed: up.Error != "", StartedAt: up.StartedAt}
	}
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if sch, err := a.chain.Schedule(octx); err == nil && sch != nil {
		o.Schedule = &decide.Schedule{Version: sch.Version, ActivationHeight: sch.ActivationHeight}
		f.mu.Lock()
		f.newMR = sch.NodeMREnclave
		f.mu.Unlock()
	}
	if st, err := a.chain.Status(octx); err == nil {
		o.NodeHalted, o.NodeHeight = st.Halted, st.Height
	}
	s := f.get()
	if s.Version == "" {
		return o
	}
	admin := nodeapi.NewAdminClient(a.nodeAt.adminSocket)
	defer admin.Close()
	if fd, err := admin.FlagDay(octx, s.Version, s.ActivationHeight); err == nil && fd.Version != "" {
		c := &decide.Chain{Outcome: fd.Outcome}
		if c.Outcome == nodeapi.FlagDayNone {
			c.Outcome = decide.OutcomePending
		}
		for _, r := range fd.Records {
			c.OwnRecord = c.OwnRecord || r.Node == a.cfg.NodeID
		}
		for _, v := range fd.Failures {
			c.OwnFailure = c.OwnFailure || v.Node == a.cfg.NodeID
		}
		o.Chain = c
		if fd.ThisNodeRuns && fd.Outcome == nodeapi.FlagDayReady {
			o.Network = &decide.Network{Version: fd.Version, ActivationHeight: fd.ActivationHeight, Ready: true}
		}
	}
	if o.Network == nil && (s.Stage == decide.StageWatching || s.Stage == decide.StageOld) {
		o.Network = f.askPeers(ctx, s)
	}
	return o
}

// askPeers asks the other members' nodes (of either version, over their
// attested client API) whether the network moved to the tracked release
// and is ready there; at most every Retry.
func (f *flagDay) askPeers(ctx context.Context, s decide.State) *decide.Network {
	f.mu.Lock()
	if time.Since(f.lastNetworkPoll) < time.Duration(f.fcfg.Retry) {
		n := f.network
		f.mu.Unlock()
		return n
	}
	f.lastNetworkPoll = time.Now()
	newMR := f.newMR
	f.mu.Unlock()
	a := f.a
	gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	admin := nodeapi.NewAdminClient(a.nodeAt.adminSocket)
	defer admin.Close()
	g, err := admin.Releases(gctx)
	if err != nil {
		return nil
	}
	mrs := []string{a.journal.get().Installed.NodeMREnclave.String()}
	if !newMR.IsZero() {
		mrs = append(mrs, newMR.String())
	}
	var found *decide.Network
	for _, m := range g.Members {
		if m.ID == a.cfg.NodeID || m.RemovedAt != 0 || m.ClientAddr == "" {
			continue
		}
		c, err := nodeapi.Dial(nodeapi.DialConfig{Addr: m.ClientAddr, RootPath: layout.Platform(a.cfg.Platform).RootCert(),
			MREnclaves: mrs, AllowDebug: a.cfg.AllowDebugNodes, Conns: 1})
		if err != nil {
			continue
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fd, err := c.FlagDay(pctx)
		pcancel()
		c.Close()
		if err == nil && fd.Version == s.Version && fd.ActivationHeight == s.ActivationHeight && fd.ThisNodeRuns && fd.Outcome == nodeapi.FlagDayReady {
			found = &decide.Network{Version: fd.Version, ActivationHeight: fd.ActivationHeight, Ready: true}
			break
		}
	}
	f.mu.Lock()
	f.network = found
	f.mu.Unlock()
	return found
}

// act performs one action.
func (f *flagDay) act(ctx context.Context, s decide.State, act decide.Action) decide.Result {
	a := f.a
	r := decide.Result{Kind: act.Kind}
	admin := nodeapi.NewAdminClient(a.nodeAt.adminSocket)
	defer admin.Close()
	switch act.Kind {
	case decide.ActHandOver:
		a.log.Info("flag day: handing over", "version", s.Version, "activation_height", s.ActivationHeight, "reason", act.Reason)
		mode := agentapi.ModeScheduled
		if s.Late {
			mode = agentapi.ModeManual // after a rollback of this release, a scheduled handover is not repeated
		}
		_, r.Err = a.upgradeNow(ctx, s.Version, mode, s.ActivationHeight, false)
	case decide.ActAttestPeers:
		var pas []nodeapi.PeerAttestation
		if pas, r.Err = admin.AttestPeers(ctx); r.Err == nil {
			for _, p := range pas {
				r.Peers = append(r.Peers, decide.PeerResult{Node: p.To, OK: p.OK})
			}
		}
	case decide.ActTestPayments:
		awaitLeader(ctx, admin)
		r.TestTxs, r.Err = f.testPayments(ctx, admin)
	case decide.ActSubmitReadiness:
		awaitLeader(ctx, admin)
		req := nodeapi.ReadinessRequest{Version: s.Version, ActivationHeight: s.ActivationHeight, TestTxs: s.TestTxs}
		for _, p := range s.Peers {
			req.Peers = append(req.Peers, nodeapi.PeerResult{Node: p.Node, OK: p.OK})
		}
		var rec *nodeapi.Receipt
		if rec, r.Err = admin.RecordReadiness(ctx, req); r.Err == nil {
			a.log.Info("flag day: readiness recorded", "version", s.Version, "tx", rec.TxID, "height", rec.Height)
		}
	case decide.ActRollBack:
		a.inflightMu.Lock()
		if a.inflight != nil {
			a.inflight()
		}
		a.inflightMu.Unlock()
		a.opMu.Lock()
		_, r.Err = a.upgrader.Rollback(ctx, "flag day: "+act.Reason, true)
		a.opMu.Unlock()
	case decide.ActVoteFailure:
		var rec *nodeapi.Receipt
		if rec, r.Err = admin.VoteFailure(ctx, nodeapi.FailureRequest{Version: s.Version, ActivationHeight: s.ActivationHeight, Reason: act.Reason}); r.Err == nil {
			a.log.Warn("flag day: failure vote admitted", "version", s.Version, "tx", rec.TxID)
		}
	case decide.ActFinalize:
		a.opMu.Lock()
		_, r.Err = a.upgrader.Finalize(ctx)
		a.opMu.Unlock()
		if errors.Is(r.Err, ErrNoUpgrade) {
			r.Err = nil // nothing journalled to finalize (a late joiner restarted, say)
		}
		if r.Err == nil {
			a.log.Info("flag day: upgrade finalized", "version", s.Version, "reason", act.Reason)
		}
	case decide.ActReportBlocked:
		f.mu.Lock()
		if act.Reason != f.lastBlocked || time.Since(f.lastBlockedAt) > 30*time.Second {
			a.log.Error("flag day blocked", "reason", act.Reason)
			f.lastBlocked, f.lastBlockedAt = act.Reason, time.Now()
		}
		f.mu.Unlock()
	}
	return r
}

// awaitLeader waits (up to 10 s) until the node knows a leader: a
// submission proposed before the new network elected one is retried by
// the node only seconds later.
func awaitLeader(ctx context.Context, admin *nodeapi.AdminClient) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if st, err := admin.Status(ctx); err == nil && st.Leader != 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// testPayments sends the self and cross payments through the new node.
func (f *flagDay) testPayments(ctx context.Context, admin *nodeapi.AdminClient) ([]string, error) {
	if f.fcfg.TestKey == "" {
		return nil, nil
	}
	key, err := keyfile.ReadPrivate(f.fcfg.TestKey)
	if err != nil {
		return nil, fmt.Errorf("test key: %w", err)
	}
	resp, err := admin.TestPayments(ctx, nodeapi.TestPaymentsRequest{TestKeySeed: hex.EncodeToString(key.Seed()), CrossTo: f.fcfg.CrossTo})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, rc := range resp.Receipts {
		ids = append(ids, rc.TxID)
	}
	return ids, nil
}

// runFlagDay drives the flag-day state machine until ctx ends.
func (a *Agent) runFlagDay(ctx context.Context, f *flagDay) {
	base := time.Duration(a.cfg.PollInterval)
	t := time.NewTimer(base)
	defer t.Stop()
	for {
		acted, err := f.step(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Error("flag day step", "err", err)
		}
		if acted && ctx.Err() == nil {
			continue // the next step follows at once (attest, pay, record readiness)
		}
		f.mu.Lock()
		o := f.lastObs
		f.mu.Unlock()
		t.Reset(decide.NextPoll(f.get(), o, base))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
