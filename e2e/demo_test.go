package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/demo"
	"github.com/teeup/teeup/devnet"
)

// TestDemoCommand runs the README's main command, `teeup demo`, as an
// operator would (one process that starts the network, the agents and the
// load, casts the operators' schedule votes and observes the
// coordinator-free flag day), and checks its exit code, its last line and
// its JSON report: every check passed, every host settled the flag day
// ready, the client downtime was measured with a breakdown that adds up to
// it, and the load ended with every payment answered.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo builds two node versions and runs a 4-node flag day")
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "demo")
	code, out, err := teeupCLI(ctx, nil, "demo", "--dir", dir, "--source", root, "--bin", bins.dir, "--live-period", "2s")
	if err != nil {
		t.Fatalf("teeup demo: %v\n%s", err, out)
	}
	if code != 0 || !strings.Contains(out, "every check passed") {
		t.Fatalf("teeup demo exited %d:\n%s", code, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "demo-report.json"))
	if err != nil {
		t.Fatalf("the demo wrote no report: %v", err)
	}
	var rep demo.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("demo-report.json: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("report has failed checks: %+v", rep.Checks)
	}
	if o := rep.FlagDay; o == nil || !o.Settled || o.Outcome != decide.OutcomeReady || len(o.Hosts) != 4 {
		t.Fatalf("report's flag-day observation %+v: want 4 hosts settled ready", o)
	}
	if len(rep.Votes) != devnet.NOGQuorum {
		t.Fatalf("schedule votes %+v: want one per operator of the quorum (%d)", rep.Votes, devnet.NOGQuorum)
	}
	if _, err := os.Stat(rep.ObserverReport); err != nil {
		t.Fatalf("observer report: %v", err)
	}
	d := rep.Downtime
	if d == nil || d.Client <= 0 || len(d.Steps) != 5 || len(d.Hosts) != 4 {
		t.Fatalf("downtime %+v: want a client downtime with 5 segments and 4 hosts", d)
	}
	var sum time.Duration
	for _, s := range d.Steps {
		sum += s.Duration
	}
	if sum != d.Client || !strings.Contains(out, "client downtime") {
		t.Fatalf("downtime segments add up to %s, client downtime %s; output:\n%s", sum, d.Client, out)
	}
	l := rep.Load
	if l == nil || l.Acknowledged == 0 || l.Unresolved != 0 || l.Rejected != 0 {
		t.Fatalf("load %+v: want payments acknowledged, none rejected or left unanswered", l)
	}
	t.Logf("demo: %d payments acknowledged, %d answered \"closed for upgrade\"; client downtime %s; %s", l.Acknowledged, l.ClosedForUpgrade, d.Client.Round(time.Millisecond), rep.Elapsed.Round(time.Millisecond))
}
