package e2e

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// TestFlagDayObserverKilledMidway: on a coordinator-free devnet operator
// 1 runs the real 'teeup flagday run' with its own NOG key (preflight,
// its schedule vote, observing); operator 2 casts its vote with 'teeup
// release schedule', as each operator would. Once every agent is past the
// halt the observer is killed with SIGKILL. Every host still completes the
// flag day by itself (the agents are the only rollback owners; the
// observer triggers nothing), and a restarted 'teeup flagday observe
// --once --report F' reports it completed with every host's rows.
func TestFlagDayObserverKilledMidway(t *testing.T) {
	fn, _ := startFreeNet(t, 3)
	ctx := testCtx(t, 4*time.Minute)
	dir := fn.net.Dir
	// Agents stage an approved release by themselves (following the
	// chain); the preflight refuses until every one has, and the observer
	// stages nothing.
	eventually(t, time.Minute, "every agent staged "+flagdayV2, func() (bool, string) {
		for id := 1; id <= len(fn.net.Hosts); id++ {
			if st := fn.agentStatus(ctx, id); !slices.Contains(st.Staged, flagdayV2) {
				return false, fmt.Sprintf("host %d staged %v", id, st.Staged)
			}
		}
		return true, ""
	})
	h := fn.status(ctx, 1).Height + 20
	height := strconv.FormatUint(h, 10)

	cmd := teeupCommand(ctx, nil, "flagday", "run", "--devnet", dir, "--version", flagdayV2, "--height", height, "--key", "nog-1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start teeup flagday run: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	stillRunning := func(what string) {
		t.Helper()
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("teeup flagday run exited (%v) %s:\n%s", err, what, lastLines(out.String(), 30))
		default:
		}
	}

	// Operator 1's vote (and only that one) lands; operator 2 votes as
	// operator 2 would.
	nog1 := nogAddress(t, fn, 1)
	eventually(t, time.Minute, "the observer's own schedule vote on chain", func() (bool, string) {
		stillRunning("before its vote was on chain")
		g, err := fn.admins[0].Releases(ctx)
		if err != nil {
			return false, err.Error()
		}
		if g.Schedule != nil {
			return false, fmt.Sprintf("the schedule is in force with one vote cast: %+v", g.Schedule)
		}
		return slices.ContainsFunc(g.PendingSchedules, func(v nodeapi.ScheduleVote) bool {
			return v.Member == nog1 && v.Version == flagdayV2 && v.ActivationHeight == h
		}), fmt.Sprintf("pending votes %+v", g.PendingSchedules)
	})
	if s := out.String(); !strings.Contains(s, "preflight: every host staged "+flagdayV2) || !strings.Contains(s, "voted to schedule "+flagdayV2+" at height "+height) {
		t.Fatalf("the observer did not report its preflight and vote:\n%s", lastLines(s, 30))
	}
	code, vote, err := teeupCLI(ctx, nil, "release", "schedule", flagdayV2, "--height", height, "--key", "nog-2", "--devnet", dir, "--admin")
	if err != nil || code != 0 || !strings.Contains(vote, "SCHEDULED") {
		t.Fatalf("operator 2's schedule vote: exit %d %v\n%s", code, err, vote)
	}

	eventually(t, 2*time.Minute, "every agent past the halt", func() (bool, string) {
		stillRunning("before the agents handed over")
		for id := 1; id <= len(fn.net.Hosts); id++ {
			s := fn.flagDayState(id)
			if !s.Tracks(flagdayV2, h) || s.Stage == "" || s.Stage == decide.StageWatching {
				return false, fmt.Sprintf("host %d: flag day %s at %d, stage %q", id, s.Version, s.ActivationHeight, s.Stage)
			}
		}
		return true, ""
	})
	stillRunning("while the flag day runs")
	if !strings.Contains(out.String(), fmt.Sprintf("flag day to %s at height %d", flagdayV2, h)) {
		t.Fatalf("the observer drew no progress table:\n%s", lastLines(out.String(), 30))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 the observer: %v", err)
	}
	var ee *exec.ExitError
	if err := <-exited; !errors.As(err, &ee) || ee.ProcessState.Success() {
		t.Fatalf("the killed observer ended with %v", err)
	}
	exited <- nil // for the cleanup
	t.Logf("observer killed after the halt; its last output:\n%s", lastLines(out.String(), 8))

	fn.awaitOutcome(ctx, flagdayV2, h, decide.OutcomeReady, fn.v2, 3*time.Minute)

	report := filepath.Join(t.TempDir(), "report.json")
	code, table, err := teeupCLI(ctx, nil, "flagday", "observe", "--devnet", dir, "--once", "--report", report)
	if err != nil || code != 0 {
		t.Fatalf("restarted observer: exit %d %v\n%s", code, err, table)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var o flagday.Observation
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("report: %v\n%s", err, raw)
	}
	if !o.Settled || o.Outcome != decide.OutcomeReady || o.Version != flagdayV2 || o.ActivationHeight != h ||
		o.Readiness == nil || len(o.Readiness.Records) < o.Readiness.Quorum || len(o.Hosts) != len(fn.net.Hosts) {
		t.Fatalf("report: settled %v outcome %q, %s at %d, readiness %+v, %d hosts", o.Settled, o.Outcome, o.Version, o.ActivationHeight, o.Readiness, len(o.Hosts))
	}
	for i, hv := range o.Hosts {
		if hv.ID != uint64(i+1) || hv.Err != "" || hv.Node == nil || hv.Node.MREnclave != fn.v2.NodeMREnclave || hv.Agent == nil ||
			hv.Agent.Stage != decide.StageDone || hv.Agent.Outcome != decide.OutcomeReady || hv.Chain == nil {
			t.Fatalf("report row %d: %+v", i+1, hv)
		}
		if !strings.Contains(table, fmt.Sprintf("\n%d  ", hv.ID)) {
			t.Fatalf("the table has no row for host %d:\n%s", hv.ID, table)
		}
	}
}

// nogAddress is the ledger address of the devnet's NOG member i.
func nogAddress(t *testing.T, fn *flagdayNet, i int) string {
	t.Helper()
	key, err := keyfile.ReadPrivate(fn.net.KeyPath(fmt.Sprintf("nog-%d", i)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}
