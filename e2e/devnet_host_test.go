package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
)

// mustCLI runs the teeup CLI and fails the test unless it succeeds.
func mustCLI(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	out, errOut, err := runTeeup(ctx, args...)
	if err != nil {
		t.Fatalf("teeup %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// hostPrograms returns the pids of the host's agent, distribution and
// node; ok is false unless all three run.
func hostPrograms(h *devnet.Host) (map[string]int, bool) {
	got := devnet.HostRunning(h)
	return got, len(got) == 3
}

// snapshotFiles returns the contents of every regular file under the
// given paths.
func snapshotFiles(t *testing.T, paths ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			raw, err := os.ReadFile(p)
			out[p] = string(raw)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestDevnetHostStopStartWipe drives 'teeup devnet host stop|start|wipe'
// on a 4-host devnet with agents and distribution: stop ends the host's
// agent, distribution and node (and nothing of the other hosts) while the
// other three keep committing; start brings all three programs back and the
// node catches up and serves; wipe stops the host and empties its node data
// directory (ledger and sealed keys gone, reported), leaving its platform,
// agent directory and configurations byte for byte, and the others go on.
func TestDevnetHostStopStartWipe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-host devnet with agents")
	}
	tn := startNetWith(t, devnet.UpOptions{Nodes: 4})
	ctx := testCtx(t, 3*time.Minute)
	dir := tn.net.Dir
	h2, h3 := tn.host(2), tn.host(3)
	for _, h := range tn.net.Hosts {
		eventually(t, 30*time.Second, fmt.Sprintf("host %d runs agent, distribution and node", h.ID), func() (bool, string) {
			got, ok := hostPrograms(&h)
			return ok, fmt.Sprint(got)
		})
	}
	before, _ := hostPrograms(h2)
	others := map[uint64]map[string]int{}
	for _, id := range []int{1, 3, 4} {
		others[uint64(id)], _ = hostPrograms(tn.host(id))
	}

	// Stop host 2.
	out := mustCLI(t, ctx, "devnet", "host", "stop", "2", "--dir", dir)
	for prog, pid := range before {
		if !strings.Contains(out, fmt.Sprintf("%s (pid %d)", prog, pid)) {
			t.Errorf("stop output does not name %s (pid %d):\n%s", prog, pid, out)
		}
	}
	if got := devnet.HostRunning(h2); len(got) != 0 {
		t.Fatalf("host 2 runs %v after 'host stop 2'", got)
	}
	for id, want := range others {
		if got, _ := hostPrograms(tn.host(int(id))); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("host %d's programs changed when host 2 stopped: %v → %v", id, want, got)
		}
	}
	tn.runLoad(ctx, tn.load(40, 1, 3, 4))
	top := tn.minHeight(ctx, 1, 3, 4)

	// Start it again: the agent brings back node and distribution, the
	// node catches up and serves a payment.
	out = mustCLI(t, ctx, "devnet", "host", "start", "2", "--dir", dir)
	if !strings.Contains(out, "host 2 started") {
		t.Fatalf("start output:\n%s", out)
	}
	eventually(t, 30*time.Second, "host 2 runs agent, distribution and node again", func() (bool, string) {
		got, ok := hostPrograms(h2)
		return ok, fmt.Sprint(got)
	})
	after, _ := hostPrograms(h2)
	for prog, pid := range after {
		if pid == before[prog] {
			t.Errorf("%s of host 2 has its old pid %d", prog, pid)
		}
	}
	tn.waitHeight(ctx, top, 2)
	tn.runLoad(ctx, tn.load(10, 2))

	// Wipe host 3.
	keep := snapshotFiles(t, h3.PlatformDir, h3.AgentConfig, h3.NodeConfig)
	for _, sub := range []string{"ledger", "keys"} {
		if _, err := os.Stat(filepath.Join(h3.DataDir, sub)); err != nil {
			t.Fatalf("host 3 before the wipe: %v", err)
		}
	}
	raw := mustCLI(t, ctx, "devnet", "host", "wipe", "3", "--dir", dir, "--json")
	var w devnet.Wiped
	if err := json.Unmarshal([]byte(raw), &w); err != nil {
		t.Fatalf("wipe --json: %v\n%s", err, raw)
	}
	deleted := map[string]devnet.WipedEntry{}
	for _, e := range w.Deleted {
		deleted[filepath.Base(e.Path)] = e
	}
	if e := deleted["ledger"]; e.Bytes == 0 {
		t.Errorf("wipe report: ledger %+v", e)
	}
	if e := deleted["keys"]; e.Bytes == 0 || !strings.Contains(e.What, "sealed") {
		t.Errorf("wipe report: keys %+v", e)
	}
	if got := devnet.HostRunning(h3); len(got) != 0 {
		t.Fatalf("host 3 runs %v after 'host wipe 3'", got)
	}
	if entries, err := os.ReadDir(h3.DataDir); err != nil || len(entries) != 0 {
		t.Fatalf("host 3 data dir after the wipe: %v, %v; want it empty", entries, err)
	}
	for p, body := range snapshotFiles(t, h3.PlatformDir, h3.AgentConfig, h3.NodeConfig) {
		if keep[p] != body {
			t.Errorf("wipe changed %s", p)
		}
	}
	if len(keep) != len(snapshotFiles(t, h3.PlatformDir, h3.AgentConfig, h3.NodeConfig)) {
		t.Error("wipe added or removed platform or configuration files")
	}
	if _, err := os.Stat(h3.AgentDir); err != nil {
		t.Errorf("agent directory: %v", err)
	}
	// Three of four nodes still hold a quorum.
	tn.runLoad(ctx, tn.load(20, 1, 2, 4))
}
