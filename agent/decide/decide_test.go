package decide

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	cfg = Config{ServeTimeout: 90 * time.Second, ReadyTimeout: 2 * time.Minute, LivePeriod: time.Minute, Retry: 5 * time.Second, MaxLateAttempts: 2}
	t0  = time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
)

const (
	v2 = "2.0.0"
	h  = 40
)

func at(d time.Duration) time.Time { return t0.Add(d) }

func sched() *Schedule { return &Schedule{Version: v2, ActivationHeight: h} }

func kinds(as []Action) []ActionKind {
	var out []ActionKind
	for _, a := range as {
		out = append(out, a.Kind)
	}
	return out
}

func wantActions(t *testing.T, as []Action, want ...ActionKind) {
	t.Helper()
	if !slices.Equal(kinds(as), want) {
		t.Fatalf("actions %v, want %v", as, want)
	}
}

// proved is a host whose new node serves, attested and tested.
func proved() State {
	return State{Version: v2, ActivationHeight: h, Stage: StageProving, HandoverStartedAt: t0, HandedOverAt: at(10 * time.Second),
		Attested: true, Tested: true, Peers: []PeerResult{{2, true}}, TestTxs: []string{"aa", "bb"}}
}

func TestStartsTrackingTheScheduleInForce(t *testing.T) {
	s, as := Decide(cfg, State{}, Observation{Now: t0, Schedule: sched(), Running: "1.0.0"})
	wantActions(t, as)
	if !s.Tracks(v2, h) || s.Stage != StageWatching {
		t.Fatalf("state %+v", s)
	}
	if s, as := Decide(cfg, State{}, Observation{Now: t0}); s.Version != "" || len(as) != 0 {
		t.Fatalf("nothing scheduled: %+v %v", s, as)
	}
}

func TestHandsOverWhenTheNodeHaltsAtH(t *testing.T) {
	w := State{Version: v2, ActivationHeight: h, Stage: StageWatching}
	for _, tt := range []struct {
		name   string
		o      Observation
		stage  Stage
		action []ActionKind
	}{
		{"before H", Observation{Now: t0, Schedule: sched(), Running: "1.0.0", NodeHeight: h - 3}, StageWatching, nil},
		{"halted at H", Observation{Now: t0, Schedule: sched(), Running: "1.0.0", NodeHalted: true, NodeHeight: h}, StageHandingOver, []ActionKind{ActHandOver}},
		{"crash after the handover began", Observation{Now: t0, Schedule: sched(), Running: "1.0.0", NodeHalted: true, NodeHeight: h,
			Upgrade: &Upgrade{To: v2, Phase: "snapshot-taken", StartedAt: t0.Add(-time.Second)}}, StageHandingOver, nil},
		{"handed over already", Observation{Now: t0, Schedule: sched(), Running: v2, Upgrade: &Upgrade{To: v2, Phase: PhaseCompleted}}, StageProving, []ActionKind{ActAttestPeers}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, as := Decide(cfg, w, tt.o)
			if s.Stage != tt.stage {
				t.Fatalf("stage %s, want %s", s.Stage, tt.stage)
			}
			wantActions(t, as, tt.action...)
		})
	}
}

func TestProvingStepsInOrder(t *testing.T) {
	s := State{Version: v2, ActivationHeight: h, Stage: StageHandingOver, HandoverStartedAt: t0}
	o := Observation{Now: at(5 * time.Second), Schedule: sched(), Running: v2, Upgrade: &Upgrade{To: v2, Phase: PhaseCompleted}, Chain: &Chain{Outcome: OutcomePending}}
	s, as := Decide(cfg, s, o)
	wantActions(t, as, ActAttestPeers)
	if s.Stage != StageProving || s.HandedOverAt != o.Now {
		t.Fatalf("state %+v", s)
	}
	s = Apply(s, Result{Kind: ActAttestPeers, Peers: []PeerResult{{2, true}, {3, true}}})
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActTestPayments)
	s = Apply(s, Result{Kind: ActTestPayments, Err: errors.New("node 3 has not committed it")})
	if s.Tested || !strings.Contains(s.LastError, "not committed") {
		t.Fatalf("a failed action counts: %+v", s)
	}
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActTestPayments)
	s = Apply(s, Result{Kind: ActTestPayments, TestTxs: []string{"aa", "bb"}})
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActSubmitReadiness)
	if !s.ReadinessSigned {
		t.Fatal("the readiness intent is not in the state journalled before the submission")
	}
	// Not on chain yet: no resubmission before Retry, one after.
	if _, as = Decide(cfg, s, o); len(as) != 0 {
		t.Fatalf("resubmitted at once: %v", as)
	}
	o.Now = o.Now.Add(cfg.Retry)
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActSubmitReadiness)
	o.Chain = &Chain{Outcome: OutcomePending, OwnRecord: true}
	o.Now = o.Now.Add(cfg.Retry)
	if _, as = Decide(cfg, s, o); len(as) != 0 {
		t.Fatalf("resubmitted a committed record: %v", as)
	}
}

// TestCrashAfterReadinessBeforeJournal: the record landed, the result was
// not journalled; the restarted agent does not sign again once the chain
// shows it, and never votes failure.
func TestCrashAfterReadinessBeforeJournal(t *testing.T) {
	s := proved()
	s.ReadinessSigned, s.ReadinessSentAt = true, at(20*time.Second)
	o := Observation{Now: at(30 * time.Second), Schedule: sched(), Running: v2, Chain: &Chain{Outcome: OutcomePending, OwnRecord: true}}
	if _, as := Decide(cfg, s, o); len(as) != 0 {
		t.Fatalf("actions %v", as)
	}
	// The deadline passes without ready: roll back, but no failure vote.
	o.Now = s.HandedOverAt.Add(cfg.ReadyTimeout)
	s, as := Decide(cfg, s, o)
	wantActions(t, as, ActRollBack)
	if s.FailureSigned {
		t.Fatal("a host that signed readiness intends a failure vote")
	}
	s = Apply(s, Result{Kind: ActRollBack})
	o = Observation{Now: o.Now.Add(time.Minute), Schedule: sched(), Running: "1.0.0", Upgrade: &Upgrade{To: v2, Phase: PhaseRolledBack}, Chain: &Chain{Outcome: OutcomePending}}
	if s, as = Decide(cfg, s, o); len(as) != 0 || s.Stage != StageOld {
		t.Fatalf("on the old chain: %+v %v", s, as)
	}
}

func TestReadyThenFinalizeAfterTheLivePeriod(t *testing.T) {
	s := proved()
	s.ReadinessSigned = true
	o := Observation{Now: at(time.Minute), Schedule: sched(), Running: v2, Upgrade: &Upgrade{To: v2, Phase: PhaseCompleted}, Chain: &Chain{Outcome: OutcomeReady, OwnRecord: true}}
	s, as := Decide(cfg, s, o)
	wantActions(t, as)
	if s.Stage != StageReady || s.ReadyAt != o.Now {
		t.Fatalf("state %+v", s)
	}
	o.Now = s.ReadyAt.Add(cfg.LivePeriod - time.Second)
	if _, as = Decide(cfg, s, o); len(as) != 0 {
		t.Fatalf("finalized during the live period: %v", as)
	}
	o.Now = s.ReadyAt.Add(cfg.LivePeriod)
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActFinalize)
	// Crash after finalizing, before the journal: the agent journal says
	// finalized.
	o.Upgrade.Phase = PhaseFinalized
	s, as = Decide(cfg, s, o)
	wantActions(t, as)
	if s.Stage != StageDone || !s.Finalized || s.Outcome != OutcomeReady {
		t.Fatalf("state %+v", s)
	}
}

// TestSecondFlagDayDoesNotStall: a new schedule while the first is
// ready but not finalized finalizes the first at once; a new schedule
// while the first is in flight reports what blocks it.
func TestSecondFlagDayDoesNotStall(t *testing.T) {
	next := &Schedule{Version: "3.0.0", ActivationHeight: 200}
	s := proved()
	s.Stage, s.ReadyAt = StageReady, at(time.Minute)
	o := Observation{Now: at(70 * time.Second), Schedule: next, Running: v2, Upgrade: &Upgrade{To: v2, Phase: PhaseCompleted}}
	s, as := Decide(cfg, s, o)
	wantActions(t, as, ActFinalize)
	s = Apply(s, Result{Kind: ActFinalize})
	s, as = Decide(cfg, s, o)
	wantActions(t, as)
	if !s.Tracks("3.0.0", 200) || s.Stage != StageWatching {
		t.Fatalf("not tracking the next flag day: %+v", s)
	}

	inFlight := proved()
	_, as = Decide(cfg, inFlight, o)
	wantActions(t, as, ActReportBlocked)
	if !strings.Contains(as[0].Reason, "blocked") || !strings.Contains(as[0].Reason, "proving") {
		t.Fatalf("reason %q", as[0].Reason)
	}
}

// TestNewNodeNeverServes: past ServeTimeout with a failed handover, the
// host rolls back and intends a failure vote (it never signed readiness),
// votes after the rollback, and is done when the abort is on chain.
func TestNewNodeNeverServes(t *testing.T) {
	s := State{Version: v2, ActivationHeight: h, Stage: StageHandingOver, HandoverStartedAt: t0}
	o := Observation{Now: at(30 * time.Second), Schedule: sched(), Running: "1.0.0", Upgrade: &Upgrade{To: v2, Phase: "new-started", Failed: true, StartedAt: t0}}
	if _, as := Decide(cfg, s, o); len(as) != 0 {
		t.Fatalf("rolled back before ServeTimeout: %v", as)
	}
	o.Now = at(cfg.ServeTimeout)
	s, as := Decide(cfg, s, o)
	wantActions(t, as, ActRollBack)
	if !s.FailureSigned || s.Stage != StageRollingBack {
		t.Fatalf("state %+v", s)
	}
	// Crash after the rollback, before its result was journalled.
	o = Observation{Now: o.Now.Add(time.Second), Schedule: sched(), Running: "1.0.0", Upgrade: &Upgrade{To: v2, Phase: PhaseRolledBack}, Chain: &Chain{Outcome: OutcomePending}}
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActVoteFailure)
	if s.Stage != StageOld || !s.RolledBack {
		t.Fatalf("state %+v", s)
	}
	// Crash after the vote was admitted, before the journal: the chain
	// shows it, no second vote.
	o.Now = o.Now.Add(cfg.Retry)
	o.Chain.OwnFailure = true
	s, as = Decide(cfg, s, o)
	wantActions(t, as)
	if !s.FailureVoted {
		t.Fatal("the admitted vote is not noted")
	}
	o.Schedule = nil
	o.Chain = &Chain{Outcome: OutcomeAborted, OwnFailure: true}
	s, _ = Decide(cfg, s, o)
	if s.Stage != StageDone || s.Outcome != OutcomeAborted {
		t.Fatalf("state %+v", s)
	}
}

func TestChainExpiredOrAbortedRollsBackAndVotes(t *testing.T) {
	for _, outcome := range []string{OutcomeExpired, OutcomeAborted} {
		t.Run(outcome, func(t *testing.T) {
			s := proved()
			s.ReadinessSigned = true
			o := Observation{Now: at(time.Minute), Schedule: sched(), Running: v2, Chain: &Chain{Outcome: outcome, OwnRecord: true}}
			s, as := Decide(cfg, s, o)
			wantActions(t, as, ActRollBack)
			if !s.FailureSigned {
				t.Fatal("once the new chain gave up, a host that signed readiness may vote failure")
			}
		})
	}
}

func TestRollbackRetriedUntilItLands(t *testing.T) {
	s := proved()
	o := Observation{Now: s.HandedOverAt.Add(cfg.ReadyTimeout), Schedule: sched(), Running: v2, Chain: &Chain{Outcome: OutcomePending}}
	s, as := Decide(cfg, s, o)
	wantActions(t, as, ActRollBack)
	if !s.FailureSigned {
		t.Fatal("a host that never signed readiness intends a failure vote")
	}
	s = Apply(s, Result{Kind: ActRollBack, Err: errors.New("old node does not serve")})
	if _, as = Decide(cfg, s, o); len(as) != 0 {
		t.Fatalf("retried at once: %v", as)
	}
	o.Now = o.Now.Add(cfg.Retry)
	_, as = Decide(cfg, s, o)
	wantActions(t, as, ActRollBack)
}

// TestMissedFlagDayHandsOverLate: a host whose node never reached H (it
// was partitioned) hands over when peers report the network ready on V
// at H; after MaxLateAttempts failures it reports what blocks it.
func TestMissedFlagDayHandsOverLate(t *testing.T) {
	w := State{Version: v2, ActivationHeight: h, Stage: StageWatching}
	o := Observation{Now: t0, Schedule: sched(), Running: "1.0.0", NodeHeight: h - 7}
	if _, as := Decide(cfg, w, o); len(as) != 0 {
		t.Fatalf("actions %v without news from peers", as)
	}
	o.Network = &Network{Version: v2, ActivationHeight: h, Ready: false}
	if _, as := Decide(cfg, w, o); len(as) != 0 {
		t.Fatalf("handed over before the network was ready: %v", as)
	}
	o.Network.Ready = true
	s, as := Decide(cfg, w, o)
	wantActions(t, as, ActHandOver)
	if !s.Late || s.LateAttempts != 1 || s.Stage != StageHandingOver {
		t.Fatalf("state %+v", s)
	}
	// A host back on the old release after a failure vote joins too:
	// ready made the abort impossible.
	back := State{Version: v2, ActivationHeight: h, Stage: StageOld, FailureSigned: true, FailureVoted: true, LateAttempts: 1}
	s, as = Decide(cfg, back, o)
	wantActions(t, as, ActHandOver)
	s.Stage = StageOld
	_, as = Decide(cfg, s, o)
	wantActions(t, as, ActReportBlocked)
}

// TestExclusivity drives random-ish observation sequences and checks the
// safety rule: a host never both submits readiness and votes failure,
// unless the chain said expired or aborted before the vote.
func TestExclusivity(t *testing.T) {
	outcomes := []string{OutcomePending, OutcomePending, OutcomeReady, OutcomeExpired}
	for seed := range 200 {
		s := State{Version: v2, ActivationHeight: h, Stage: StageWatching}
		now := t0
		submitted, gaveUp := false, false
		running := "1.0.0"
		var up *Upgrade
		for step := range 60 {
			now = now.Add(time.Duration((seed*7+step*13)%40) * time.Second)
			out := outcomes[(seed+step)%len(outcomes)]
			if seed%3 == 0 {
				out = OutcomePending
			}
			if out == OutcomeExpired {
				gaveUp = true
			}
			o := Observation{Now: now, Schedule: sched(), Running: running, Upgrade: up, NodeHalted: true, NodeHeight: h,
				Chain: &Chain{Outcome: out}}
			var as []Action
			s, as = Decide(cfg, s, o)
			for _, a := range as {
				switch a.Kind {
				case ActHandOver:
					if seed%2 == 0 {
						running, up = v2, &Upgrade{To: v2, Phase: PhaseCompleted}
					} else {
						up = &Upgrade{To: v2, Phase: "new-started", Failed: true, StartedAt: now}
					}
				case ActSubmitReadiness:
					submitted = true
				case ActVoteFailure:
					if submitted && !gaveUp {
						t.Fatalf("seed %d step %d: a failure vote after a readiness submission, the chain never gave up", seed, step)
					}
				case ActRollBack:
					running, up = "1.0.0", &Upgrade{To: v2, Phase: PhaseRolledBack}
				}
				s = Apply(s, Result{Kind: a.Kind, Peers: []PeerResult{{2, true}}, TestTxs: []string{"aa"}})
			}
		}
		if s.ReadinessSigned && s.FailureSigned && !gaveUp {
			t.Fatalf("seed %d: both intents without the chain giving up: %+v", seed, s)
		}
	}
}

// TestRollbackByAnOperator: a rollback outside the state machine moves
// the host to the old stage; it votes failure only if it never signed
// readiness.
func TestRollbackByAnOperator(t *testing.T) {
	o := Observation{Now: at(time.Minute), Schedule: sched(), Running: "1.0.0", Upgrade: &Upgrade{To: v2, Phase: PhaseRolledBack}, Chain: &Chain{Outcome: OutcomePending}}
	s, as := Decide(cfg, proved(), o)
	wantActions(t, as, ActVoteFailure)
	if s.Stage != StageOld || !s.FailureSigned {
		t.Fatalf("state %+v", s)
	}
	signed := proved()
	signed.ReadinessSigned, signed.Stage, signed.ReadyAt = true, StageReady, at(50*time.Second)
	s, as = Decide(cfg, signed, o)
	wantActions(t, as)
	if s.Stage != StageOld || s.FailureSigned {
		t.Fatalf("state %+v", s)
	}
}

// TestReadyBeforeOwnRecord: the chain became ready on other hosts'
// records; this host still proves its new node and records readiness
// (so it is not marked absent), without a ready deadline.
func TestReadyBeforeOwnRecord(t *testing.T) {
	s := State{Version: v2, ActivationHeight: h, Stage: StageProving, HandedOverAt: t0}
	o := Observation{Now: t0.Add(cfg.ReadyTimeout + time.Second), Schedule: sched(), Running: v2, Chain: &Chain{Outcome: OutcomeReady}}
	s, as := Decide(cfg, s, o)
	wantActions(t, as, ActAttestPeers)
	s = Apply(s, Result{Kind: ActAttestPeers})
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActTestPayments)
	s = Apply(s, Result{Kind: ActTestPayments})
	s, as = Decide(cfg, s, o)
	wantActions(t, as, ActSubmitReadiness)
	s, as = Decide(cfg, s, o)
	wantActions(t, as)
	if s.Stage != StageReady {
		t.Fatalf("stage %s after signing readiness on a ready chain", s.Stage)
	}
}

// TestNextPoll: the driver polls fast only near the moments that make
// client downtime — its node a few blocks short of H, and readiness
// submitted while the ready block is awaited.
func TestNextPoll(t *testing.T) {
	base := 500 * time.Millisecond
	tracking := func(stage Stage) State { return State{Version: "2.0.0", ActivationHeight: 100, Stage: stage} }
	late := tracking(StageWatching)
	late.Late = true
	signed := tracking(StageProving)
	signed.ReadinessSigned = true
	for _, c := range []struct {
		name string
		s    State
		o    Observation
		base time.Duration
		want time.Duration
	}{
		{"no schedule tracked", State{}, Observation{NodeHeight: 99}, base, base},
		{"far from H", tracking(StageWatching), Observation{NodeHeight: 96}, base, base},
		{"3 blocks short of H", tracking(StageWatching), Observation{NodeHeight: 97}, base, FastPoll},
		{"one block short of H", tracking(StageWatching), Observation{NodeHeight: 99}, base, FastPoll},
		{"at H, not yet seen halted", tracking(StageWatching), Observation{NodeHeight: 100}, base, FastPoll},
		{"late handover (network moved on)", late, Observation{NodeHeight: 100}, base, base},
		{"handing over (the upgrade itself waits)", tracking(StageHandingOver), Observation{NodeHeight: 100}, base, base},
		{"proving, readiness not yet signed", tracking(StageProving), Observation{NodeHeight: 101}, base, base},
		{"readiness submitted, awaiting ready", signed, Observation{NodeHeight: 101}, base, FastPoll},
		{"ready: live period", tracking(StageReady), Observation{NodeHeight: 110}, base, base},
		{"old release again", tracking(StageOld), Observation{NodeHeight: 100}, base, base},
		{"base already faster", tracking(StageWatching), Observation{NodeHeight: 99}, 10 * time.Millisecond, 10 * time.Millisecond},
	} {
		if got := NextPoll(c.s, c.o, c.base); got != c.want {
			t.Errorf("%s: NextPoll = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestPrehashDue(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	recent, old := now.Add(-time.Second), now.Add(-PrehashEvery)
	cases := []struct {
		name                string
		last                time.Time
		running             bool
		schedule, hashedFor string
		want                bool
	}{
		{name: "first pass after start", want: true},
		{name: "a pass runs", last: old, running: true, schedule: "2.0.0@90", want: false},
		{name: "recent pass, nothing scheduled", last: recent, want: false},
		{name: "interval passed", last: old, want: true},
		{name: "a new schedule hashes at once", last: recent, schedule: "2.0.0@90", want: true},
		{name: "that schedule's pass started", last: recent, schedule: "2.0.0@90", hashedFor: "2.0.0@90", want: false},
		{name: "rescheduled to another height", last: recent, schedule: "2.0.0@120", hashedFor: "2.0.0@90", want: true},
		{name: "scheduled and hashed, interval passed", last: old, schedule: "2.0.0@90", hashedFor: "2.0.0@90", want: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := PrehashDue(now, tc.last, tc.running, tc.schedule, tc.hashedFor); got != tc.want {
				t.Fatalf("PrehashDue = %v, want %v", got, tc.want)
			}
		})
	}
}
