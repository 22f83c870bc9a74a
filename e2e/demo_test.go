package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/demo"
)

// TestDemoCommand runs the README's main command, `teeup demo`, as an
// operator would (one process that starts the network, the agents, the
// load and the flag day), and checks its exit code, its last line and its
// JSON report: every check passed, and the load ended with every payment
// answered.
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
	if rep.FlagDay == nil {
		t.Fatal("report has no flag-day record")
	}
	l := rep.Load
	if l == nil || l.Acknowledged == 0 || l.Unresolved != 0 || l.Rejected != 0 {
		t.Fatalf("load %+v: want payments acknowledged, none rejected or left unanswered", l)
	}
	t.Logf("demo: %d payments acknowledged, %d answered \"closed for upgrade\"; %s", l.Acknowledged, l.ClosedForUpgrade, rep.Elapsed.Round(time.Millisecond))
}
