package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
)

// driveFunc runs a flag day with opt on fn and returns its final record.
type driveFunc func(ctx context.Context, t *testing.T, fn *flagdayNet, opt flagday.Options) *flagday.Record

// flagdayCase is one flag day with an injected failure.
type flagdayCase struct {
	name  string
	short bool // run under -short
	// env is TEEUP_FAULTS for every agent and node process: set before
	// devnet.Up, the agents inherit it and pass it to the nodes they start.
	env string
	// faults are the in-process coordinator's (flagday.Options.Faults).
	faults string
	// stepTimeout bounds each coordinator step (0: the default 2m).
	stepTimeout time.Duration
	// drive runs the flag day (nil: flagday.Run in this process).
	drive driveFunc
	// want is the outcome: completed or rolled-back.
	want flagday.Outcome
	// failedStep is the step that fails in a rolled-back case.
	failedStep string
	// evidence checks that the injected failure really happened (a case
	// whose fault never fired proves nothing).
	evidence func(t *testing.T, fn *flagdayNet, rec *flagday.Record)
	// after runs extra checks once the common ones passed.
	after func(ctx context.Context, t *testing.T, fn *flagdayNet, opt flagday.Options, rec *flagday.Record, res *loadgen.Result)
}

// TestFlagDay runs the whole flag day from 1.0.0 (schema 1) to 2.0.0
// (schema 3: every migration, the at-rest encryption included) on a 4-node devnet of separate node, agent and distribution
// processes, under continuous client load, with a failure injected at a
// different place in each case: the coordinator fails a step or is killed,
// a migration fails, the new nodes fail attestation, a node or an agent is
// killed with SIGKILL, and a completed flag day is rolled back. Each case
// ends in a completed upgrade or a rollback, and then: no acknowledged
// payment is lost (clients were told "closed for upgrade" and retried),
// every node holds the same blocks and balances, every node runs the
// expected version with its keys, and after a rollback the abort is on
// chain, heights advance past the activation height, ingress is open and a
// client payment commits. -short runs two cases.
func TestFlagDay(t *testing.T) {
	cases := []flagdayCase{
		{
			name: "happy path under load", short: true, want: flagday.OutcomeCompleted,
		},
		{
			name: "coordinator fails test-payments", short: true,
			faults: "fail:flagday." + flagday.StepPayments, want: flagday.OutcomeRolledBack, failedStep: flagday.StepPayments,
			evidence: func(t *testing.T, fn *flagdayNet, rec *flagday.Record) {
				if !strings.Contains(rec.Error, "injected failure at flagday."+flagday.StepPayments) {
					t.Errorf("the flag day failed with %q, not the injected failure", rec.Error)
				}
				// The test payments were committed by 2.0.0 above the
				// activation height before the step failed: every host's
				// rollback discards them and says so, and they are gone.
				if len(rec.TestTxs) != 2 || rec.Rollback == nil || len(rec.Rollback.Discarded) != len(fn.net.Hosts) {
					t.Fatalf("test payments %+v, rollback %+v: want 2 test payments discarded on every host", rec.TestTxs, rec.Rollback)
				}
				for _, d := range rec.Rollback.Discarded {
					if d.Loss.Transactions != 2 {
						t.Errorf("host %d's rollback discarded %+v, want the 2 test payments", d.Host, d.Loss)
					}
				}
				ctx := testCtx(t, time.Minute)
				for _, tx := range rec.TestTxs {
					var ts nodeapi.TxStatus
					err := fn.admins[0].Get(ctx, nodeapi.PathTx+"/"+tx.TxID, &ts)
					if err == nil && ts.Status == ledger.StateCommitted && ts.Height == tx.Height {
						t.Errorf("test payment %s of the failed flag day is still committed at %d after the rollback", tx.TxID, tx.Height)
					}
				}
			},
		},
		{
			name: "migration fails on every 2.0.0 start", env: "fail:migration",
			stepTimeout: 20 * time.Second, want: flagday.OutcomeRolledBack, failedStep: flagday.StepUpgrade,
			evidence: func(t *testing.T, fn *flagdayNet, rec *flagday.Record) {
				fn.requireNodeLog(t, "injected failure at migration")
				// The agents give up on a node that keeps exiting at start
				// instead of waiting out the serve or step timeout.
				if !strings.Contains(rec.Error, "times in a row") {
					t.Errorf("flag day error %q does not say the new node kept exiting", rec.Error)
				}
			},
		},
		{
			name: "2.0.0 nodes fail attestation", env: "fail:node.attest=" + flagdayV2,
			stepTimeout: 20 * time.Second, want: flagday.OutcomeRolledBack, failedStep: flagday.StepVerifyChain,
			evidence: func(t *testing.T, fn *flagdayNet, rec *flagday.Record) {
				fn.requireNodeLog(t, "FAULT INJECTION: peer attestation will fail")
			},
		},
		{
			name: "coordinator process killed after halt-at-height", drive: crashCoordinatorAfter(flagday.StepHalt),
			want: flagday.OutcomeCompleted,
		},
		{
			name: "coordinator process killed after upgrade-hosts", drive: crashCoordinatorAfter(flagday.StepUpgrade),
			want: flagday.OutcomeCompleted,
		},
		{
			name: "kill -9 a 1.0.0 node before the halt and a 2.0.0 node in verify-chain", drive: killNodesDuringFlagDay,
			want: flagday.OutcomeCompleted,
		},
		{
			name: "kill -9 an agent at keys-held", drive: killAgentDuringUpgrade(2, agentapi.PhaseKeysHeld),
			want: flagday.OutcomeCompleted,
		},
		{
			name: "roll back a completed flag day", want: flagday.OutcomeCompleted, after: rollbackCompleted,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && !tc.short {
				t.Skip("-short runs two flag days")
			}
			start := time.Now()
			if tc.env != "" {
				t.Setenv(fault.EnvVar, tc.env)
			}
			fn := startFlagdayNet(t, 4)
			upAt := time.Now()
			ctx := testCtx(t, 6*time.Minute)

			load := fn.startLoad(ctx)
			load.waitAcks(t, 20)
			opt := fn.options(tc.faults, tc.stepTimeout)
			drive := tc.drive
			if drive == nil {
				drive = runInProcess
			}
			rec := drive(ctx, t, fn, opt)
			flagdayAt := time.Now()
			t.Logf("flag day %s: %s in %s, activation height %d, downtime %s (error %q)",
				rec.ID, rec.Outcome, rec.FinishedAt.Sub(rec.StartedAt).Round(time.Millisecond), rec.ActivationHeight, rec.Downtime().Round(time.Millisecond), rec.Error)
			if rec.Outcome != tc.want {
				t.Fatalf("flag day ended %s (error %q), want %s", rec.Outcome, rec.Error, tc.want)
			}
			if got := failedStep(rec); got != tc.failedStep {
				t.Fatalf("failed step %q, want %q (error %q)", got, tc.failedStep, rec.Error)
			}
			if tc.evidence != nil {
				tc.evidence(t, fn, rec)
			}

			// Clients are served again, above the activation height, by
			// whichever version the network runs now.
			load.waitAckAbove(t, rec.ActivationHeight)
			res := load.stop(t)
			fn.checkLoad(ctx, res)
			switch tc.want {
			case flagday.OutcomeCompleted:
				fn.checkCompleted(ctx, rec)
			case flagday.OutcomeRolledBack:
				fn.checkRolledBack(ctx, rec)
			}
			fn.checkConsistent(ctx)
			if tc.after != nil && !t.Failed() {
				tc.after(ctx, t, fn, opt, rec, res)
			}
			t.Logf("timing: devnet up %s, load + flag day %s, checks %s, total %s",
				upAt.Sub(start).Round(100*time.Millisecond), flagdayAt.Sub(upAt).Round(100*time.Millisecond),
				time.Since(flagdayAt).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
		})
	}
}

// runInProcess runs the flag day with flagday.Run in the test process.
func runInProcess(ctx context.Context, t *testing.T, fn *flagdayNet, opt flagday.Options) *flagday.Record {
	t.Helper()
	rec, err := flagday.Run(ctx, opt)
	return checkRunResult(t, rec, err)
}

// checkRunResult fails the test unless flagday.Run returned a record, and
// an error exactly when the flag day did not complete.
func checkRunResult(t *testing.T, rec *flagday.Record, err error) *flagday.Record {
	t.Helper()
	if rec == nil {
		t.Fatalf("the flag day did not run: %v", err)
	}
	if err != nil {
		t.Logf("flagday.Run: %v", err)
	}
	if (err == nil) != (rec.Outcome == flagday.OutcomeCompleted) {
		t.Fatalf("flag day %s returned error %v", rec.Outcome, err)
	}
	return rec
}

// requireNodeLog fails the test unless some node's log has a line
// containing s.
func (fn *flagdayNet) requireNodeLog(t *testing.T, s string) {
	t.Helper()
	for _, h := range fn.net.Hosts {
		if logContains(filepath.Join(h.LogDir, "node.log"), s) {
			return
		}
	}
	t.Errorf("no node log says %q: the injected fault never fired", s)
}

// teeupCLI runs the teeup CLI with the test's environment minus any fault
// settings, plus env; it returns the exit code and the combined output.
func teeupCLI(ctx context.Context, env []string, args ...string) (int, string, error) {
	cmd := teeupCommand(ctx, env, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), nil
	}
	if err != nil {
		return -1, out.String(), err
	}
	return 0, out.String(), nil
}

// teeupCommand is the teeup CLI with the test's environment minus any
// fault settings, plus env.
func teeupCommand(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(bins.dir, "teeup"), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, fault.EnvVar+"=") && !strings.HasPrefix(kv, fault.OnceDirEnvVar+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// crashCoordinatorAfter runs the coordinator as a separate process, 'teeup
// flagday coordinate', with the crash fault "crash:flagday.after-<step>": it dies
// like kill -9 (exit 137) right after journalling step done. Run again
// without the fault, it resumes the same flag day and completes it.
func crashCoordinatorAfter(step string) driveFunc {
	return func(ctx context.Context, t *testing.T, fn *flagdayNet, opt flagday.Options) *flagday.Record {
		t.Helper()
		args := []string{"flagday", "coordinate", "--devnet", fn.net.Dir, "--version", flagdayV2, "--live-period", opt.LivePeriod.String()}
		code, out, err := teeupCLI(ctx, []string{fault.EnvVar + "=crash:flagday.after-" + step}, args...)
		if err != nil {
			t.Fatalf("teeup flagday run: %v", err)
		}
		fn.progress.Write([]byte(out))
		if code != 137 || !strings.Contains(out, "FAULT INJECTION: crashing at flagday.after-"+step) {
			t.Fatalf("teeup flagday run with crash:flagday.after-%s exited %d, want 137 after the crash point; output:\n%s", step, code, lastLines(out, 30))
		}
		crashed, err := flagday.Current(fn.net.Dir)
		if err != nil {
			t.Fatalf("journal after the crash: %v", err)
		}
		if crashed.Outcome != flagday.OutcomeRunning || stepStatus(crashed, step) != flagday.StepDone {
			t.Fatalf("after the crash the journal says %s with %s %s, want running with %s done", crashed.Outcome, step, stepStatus(crashed, step), step)
		}
		for i, s := range crashed.Steps {
			if s.Name == step && i+1 < len(crashed.Steps) && crashed.Steps[i+1].Status != flagday.StepPending {
				t.Fatalf("the step after %s is %s: the coordinator did not stop at the crash point", step, crashed.Steps[i+1].Status)
			}
		}
		t.Logf("coordinator killed after %s (exit %d); running it again", step, code)

		code, out, err = teeupCLI(ctx, nil, args...)
		if err != nil {
			t.Fatalf("teeup flagday run (resume): %v", err)
		}
		fn.progress.Write([]byte(out))
		if code != 0 {
			t.Fatalf("resumed teeup flagday run exited %d:\n%s", code, lastLines(out, 40))
		}
		if !strings.Contains(out, "resuming flag day "+crashed.ID) {
			t.Fatalf("the second run did not resume flag day %s:\n%s", crashed.ID, lastLines(out, 40))
		}
		rec, err := flagday.Current(fn.net.Dir)
		if err != nil {
			t.Fatalf("journal after the resumed run: %v", err)
		}
		if rec.ID != crashed.ID {
			t.Fatalf("the resumed run finished flag day %s, the crashed one was %s", rec.ID, crashed.ID)
		}
		return rec
	}
}

// runResult is flagday.Run's outcome, from a goroutine.
type runResult struct {
	rec *flagday.Record
	err error
}

// runInBackground starts flagday.Run in a goroutine.
func runInBackground(ctx context.Context, opt flagday.Options) <-chan runResult {
	done := make(chan runResult, 1)
	go func() {
		rec, err := flagday.Run(ctx, opt)
		done <- runResult{rec, err}
	}()
	return done
}

// awaitJournal polls the flag-day journal every few milliseconds until
// cond holds, and fails the test if the flag day ends first.
func (fn *flagdayNet) awaitJournal(t *testing.T, done <-chan runResult, what string, cond func(*flagday.Record) bool) *flagday.Record {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if rec, err := flagday.Current(fn.net.Dir); err == nil && cond(rec) {
			return rec
		}
		select {
		case r := <-done:
			t.Fatalf("the flag day ended (%v) before %s", r.err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 2m", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// killNodesDuringFlagDay runs the flag day in the test process and kills
// with SIGKILL the 1.0.0 node of host 2 once the upgrade is scheduled on
// chain (before its halt), and the 2.0.0 node of host 3 while the
// coordinator verifies the new chain. The agents restart them.
func killNodesDuringFlagDay(ctx context.Context, t *testing.T, fn *flagdayNet, opt flagday.Options) *flagday.Record {
	t.Helper()
	done := runInBackground(ctx, opt)

	sched := fn.awaitJournal(t, done, "the upgrade is scheduled", func(r *flagday.Record) bool {
		return stepStatus(r, flagday.StepSchedule) == flagday.StepDone
	})
	H := sched.ActivationHeight
	if st := fn.status(ctx, 2); st.MREnclave != fn.v1.NodeMREnclave || st.Height >= H {
		t.Fatalf("node 2 runs %s at height %d: too late to kill it as %s before the halt at %d", st.Version, st.Height, flagdayV1, H)
	}
	p := fn.kill9AndAwaitRestart(2, devnet.NodeBin)
	t.Logf("killed node 2 (%s, pid %d) before the halt at %d; the agent restarted it as pid %d", flagdayV1, p.old, H, p.restarted)

	fn.awaitJournal(t, done, "verify-chain runs", func(r *flagday.Record) bool {
		return stepStatus(r, flagday.StepVerifyChain) == flagday.StepRunning
	})
	st := fn.status(ctx, 3)
	if st.MREnclave != fn.v2.NodeMREnclave {
		t.Fatalf("node 3 runs %s during verify-chain, want %s", st.Version, flagdayV2)
	}
	p = fn.kill9AndAwaitRestart(3, devnet.NodeBin)
	rec, err := flagday.Current(fn.net.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed node 3 (%s, pid %d) during verify-chain (now %s); the agent restarted it as pid %d", flagdayV2, p.old, stepStatus(rec, flagday.StepVerifyChain), p.restarted)
	r := <-done
	return checkRunResult(t, r.rec, r.err)
}

// agentJournal reads host id's agent journal from disk (the agent may be
// dead).
func (fn *flagdayNet) agentJournal(id int) (*agent.Journal, error) {
	raw, err := os.ReadFile(layout.Agent(fn.host(id).AgentDir).Journal())
	if err != nil {
		return nil, err
	}
	var j agent.Journal
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("agent %d journal: %w", id, err)
	}
	return &j, nil
}

// killAgentDuringUpgrade runs the flag day in the test process, kills host
// id's agent with SIGKILL as soon as its journal reaches phase in the
// upgrade to 2.0.0, and starts it again: it resumes its upgrade, and the
// coordinator waits for it.
func killAgentDuringUpgrade(id int, phase agentapi.Phase) driveFunc {
	return func(ctx context.Context, t *testing.T, fn *flagdayNet, opt flagday.Options) *flagday.Record {
		t.Helper()
		h := fn.host(id)
		pid, ok := devnet.ProcessAlive(h, devnet.AgentBin)
		if !ok {
			t.Fatalf("agent %d does not run", id)
		}
		done := runInBackground(ctx, opt)
		// Phases from phase on, until the upgrade completes: a kill there
		// interrupts the handover.
		order := []agentapi.Phase{agentapi.PhaseKeysHeld, agentapi.PhaseOldStopped, agentapi.PhaseNewStarted, agentapi.PhaseNewServing}
		from := slices.Index(order, phase)
		if from < 0 {
			t.Fatalf("no kill at phase %s", phase)
		}
		var at agentapi.Phase
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if j, err := fn.agentJournal(id); err == nil && j.Upgrade != nil && j.Upgrade.To.Version == flagdayV2 {
				if j.Upgrade.Phase == agentapi.PhaseCompleted {
					t.Fatalf("agent %d completed its upgrade before it could be killed at %s", id, phase)
				}
				if slices.Contains(order[from:], j.Upgrade.Phase) {
					at = j.Upgrade.Phase
					break
				}
			}
			select {
			case r := <-done:
				t.Fatalf("the flag day ended (%v) before agent %d reached %s", r.err, id, phase)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent %d did not reach %s in 2m", id, phase)
			}
			time.Sleep(200 * time.Microsecond)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 agent %d: %v", id, err)
		}
		eventually(t, 10*time.Second, fmt.Sprintf("agent %d gone after kill -9", id), func() (bool, string) {
			_, alive := devnet.ProcessAlive(h, devnet.AgentBin)
			return !alive, "still alive"
		})
		j, err := fn.agentJournal(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("agent %d killed with its journal at phase %s (seen at %s)", id, j.Upgrade.Phase, at)
		if j.Upgrade.Phase == agentapi.PhaseCompleted {
			t.Fatalf("agent %d completed its upgrade before the kill landed: the case proves nothing", id)
		}
		if err := devnet.StartAgent(fn.net, h); err != nil {
			t.Fatalf("restart agent %d: %v", id, err)
		}
		r := <-done
		return checkRunResult(t, r.rec, r.err)
	}
}

// rollbackCompleted rolls back the completed flag day: without force it
// refuses and reports exactly the transactions committed above the
// activation height (the operator test payments and the client payments);
// with force every node runs 1.0.0 again, the abort is on chain, what was
// committed up to the activation height is still there and what was
// committed above it is gone, as reported.
func rollbackCompleted(ctx context.Context, t *testing.T, fn *flagdayNet, opt flagday.Options, rec *flagday.Record, res *loadgen.Result) {
	H := rec.ActivationHeight
	var below, above []loadgen.Payment
	heights := map[ledger.Hash]uint64{}
	for _, a := range res.Acked {
		heights[a.TxID] = a.Height
		if a.Height <= H {
			below = append(below, a.Payment)
		} else {
			above = append(above, a.Payment)
		}
	}
	// Payments left unresolved when the load stopped may have committed.
	for _, p := range res.Unresolved {
		st, err := fn.clients[0].TxStatus(ctx, p.TxID.String())
		if nodeapi.IsCode(err, nodeapi.CodeNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("unresolved payment %s: %v", p.TxID, err)
		}
		if st.Status == ledger.StateCommitted {
			heights[p.TxID] = st.Height
			if st.Height <= H {
				below = append(below, p)
			} else {
				above = append(above, p)
			}
		}
	}
	if len(above) == 0 {
		t.Fatal("no client payment committed above the activation height: nothing for a rollback to lose")
	}
	want := len(rec.TestTxs) + len(above)

	_, loss, err := flagday.RollbackCompleted(ctx, opt, false, "e2e: unforced rollback")
	if !errors.Is(err, agentapi.ErrWouldLoseTransactions) {
		t.Fatalf("unforced rollback of a completed flag day: error %v, want a refusal saying what would be discarded", err)
	}
	if loss == nil || loss.Transactions != want || loss.FromHeight != H+1 || loss.TestTxs != len(rec.TestTxs) || len(rec.TestTxs) != 2 {
		t.Fatalf("refused rollback reports loss %+v, want %d transactions (%d test payments + %d client payments) from height %d", loss, want, len(rec.TestTxs), len(above), H+1)
	}
	t.Logf("unforced rollback refused: %v", err)
	fn.checkRuns(ctx, fn.v2, flagdaySchema) // the refusal changed nothing

	rb, loss, err := flagday.RollbackCompleted(ctx, opt, true, "e2e: forced rollback")
	if err != nil {
		t.Fatalf("forced rollback: %v", err)
	}
	if rb.Outcome != flagday.OutcomeRolledBack || loss == nil || loss.Transactions != want {
		t.Fatalf("forced rollback ended %s with loss %+v, want rolled-back losing %d", rb.Outcome, loss, want)
	}
	fn.checkRolledBack(ctx, rb)
	fn.checkConsistent(ctx)
	for _, p := range below {
		st, err := fn.clients[0].TxStatus(ctx, p.TxID.String())
		if err != nil || st.Status != ledger.StateCommitted || st.Height != heights[p.TxID] {
			t.Errorf("payment %s committed at %d (≤ activation %d) is not there after the rollback: %+v %v", p.TxID, heights[p.TxID], H, st, err)
		}
	}
	for _, p := range above {
		st, err := fn.clients[0].TxStatus(ctx, p.TxID.String())
		if err == nil && st.Status == ledger.StateCommitted && st.Height == heights[p.TxID] {
			t.Errorf("payment %s committed by %s at %d is still committed after the forced rollback that discarded it", p.TxID, flagdayV2, heights[p.TxID])
		}
	}
	t.Logf("forced rollback discarded %d transactions in blocks %d..%d; %d client payments at or below %d intact", loss.Transactions, loss.FromHeight, loss.ToHeight, len(below), H)
}
