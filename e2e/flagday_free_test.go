package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/demo"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// flagdayV3 is the release of the second flag day in a row (schema 2, no
// migration).
const flagdayV3 = "3.0.0"

// startFreeNet starts a coordinator-free devnet (the default: every agent
// decides its host's part of a flag day from the chain) on 1.0.0 with 2.0.0 and 3.0.0
// staged (clients accept all three) and 2.0.0 approved.
func startFreeNet(t *testing.T, nodes int) (*flagdayNet, devnet.Release) {
	t.Helper()
	return startFreeNetWith(t, devnet.UpOptions{Nodes: nodes})
}

// startFreeNetWith is startFreeNet with more devnet options (Isolate).
func startFreeNetWith(t *testing.T, opts devnet.UpOptions) (*flagdayNet, devnet.Release) {
	t.Helper()
	b := flagdayBinaries(t)
	v3Dir := buildV3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts.Dir, opts.BinDir = devnetDir(t), b.v1Dir
	if opts.Isolate {
		dir := opts.Dir
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := devnet.RemoveNetwork(cctx, dir); err != nil {
				t.Errorf("remove the devnet's namespaces: %v", err)
			}
		})
	}
	fn := upFlagdayNet(ctx, t, opts)
	n := fn.net
	rel, err := devnet.StageDirRelease(n, b.v2Dir, flagdayV2)
	if err != nil {
		t.Fatalf("stage %s: %v", flagdayV2, err)
	}
	fn.v2 = *rel
	r3, err := devnet.StageDirRelease(n, v3Dir, flagdayV3)
	if err != nil {
		t.Fatalf("stage %s: %v", flagdayV3, err)
	}
	if err := fn.approve(ctx, rel.ReleaseFile()); err != nil {
		t.Fatalf("approve %s: %v", flagdayV2, err)
	}
	fn.dial()
	return fn, *r3
}

// buildV3 builds teeup-node 3.0.0 beside the flag-day builds, at the
// schema 2.0.0 runs (demo.V2Schema: a node refuses a newer ledger).
func buildV3(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(bins.dir, "flagday", "v3")
	if _, err := os.Stat(filepath.Join(dir, devnet.NodeBin)); err == nil {
		return dir
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-tags", testBuildTags,
		"-ldflags", "-X github.com/teeup/teeup/internal/buildinfo.Version="+flagdayV3+" -X github.com/teeup/teeup/internal/buildinfo.Schema="+strconv.Itoa(demo.V2Schema),
		"-o", filepath.Join(dir, devnet.NodeBin), "./cmd/teeup-node")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build teeup-node %s: %v\n%s", flagdayV3, err, out)
	}
	for _, prog := range []string{devnet.AgentBin, devnet.DistributeBin} {
		if err := fsutil.CopyFile(filepath.Join(bins.dir, prog), filepath.Join(dir, prog), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// schedule votes (nog-1, nog-2) for version at the head + 20 and returns
// the activation height.
func (fn *flagdayNet) schedule(ctx context.Context, version string) uint64 {
	fn.t.Helper()
	h := fn.status(ctx, 1).Height + 20
	payload := ledger.EncodeUpgradeSchedule(ledger.UpgradeSchedule{Version: version, ActivationHeight: h})
	for i := 1; i <= 2; i++ {
		key, err := keyfile.ReadPrivate(fn.net.KeyPath(fmt.Sprintf("nog-%d", i)))
		if err != nil {
			fn.t.Fatal(err)
		}
		addr, _ := ledger.AddressOf(key.Public().(ed25519.PublicKey))
		acct, err := fn.admins[0].Account(ctx, addr.String())
		if err != nil {
			fn.t.Fatal(err)
		}
		tx, err := ledger.NewGovernanceTx(fn.net.ChainID, ledger.TxScheduleUpgrade, payload, acct.Nonce+1, key)
		if err != nil {
			fn.t.Fatal(err)
		}
		if _, err := fn.admins[0].Submit(ctx, tx.Encode()); err != nil {
			fn.t.Fatalf("schedule vote %d: %v", i, err)
		}
	}
	return h
}

// flagDayState reads host id's agent flag-day journal.
func (fn *flagdayNet) flagDayState(id int) decide.State {
	var s decide.State
	raw, err := os.ReadFile(layout.Agent(fn.net.Hosts[id-1].AgentDir).FlagDayJournal())
	if err == nil {
		_ = json.Unmarshal(raw, &s)
	}
	return s
}

// awaitOutcome waits until every host settled the flag day (version, h)
// with outcome, every node runs the MRENCLAVE it should and serves
// clients, and returns how long it took.
func (fn *flagdayNet) awaitOutcome(ctx context.Context, version string, h uint64, outcome string, runs devnet.Release, within time.Duration, only ...int) {
	fn.t.Helper()
	eventually(fn.t, within, fmt.Sprintf("flag day to %s at %d %s on hosts %v (none: every host)", version, h, outcome, only), func() (bool, string) {
		for i := range fn.net.Hosts {
			id := i + 1
			if len(only) > 0 && !slices.Contains(only, id) {
				continue
			}
			s := fn.flagDayState(id)
			if !s.Tracks(version, h) || s.Stage != decide.StageDone || s.Outcome != outcome {
				return false, fmt.Sprintf("host %d: flag day %s at %d stage %s outcome %q (%s)", id, s.Version, s.ActivationHeight, s.Stage, s.Outcome, s.Reason)
			}
			st, err := fn.admins[i].Status(ctx)
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", id, err)
			}
			if st.MREnclave != runs.NodeMREnclave || st.Ingress != nodeapi.IngressOpen || st.Height <= h {
				return false, fmt.Sprintf("node %d runs %s, ingress %s, height %d", id, st.MREnclave.Short(), st.Ingress, st.Height)
			}
			fd, err := fn.admins[i].FlagDay(ctx, version, h)
			if err != nil || fd.Outcome != outcome {
				return false, fmt.Sprintf("node %d: chain outcome %+v %v", id, fd, err)
			}
		}
		return true, ""
	})
}

// TestFlagDayWithoutCoordinator: two flag days in a row (1.0.0 → 2.0.0
// with a migration, then 2.0.0 → 3.0.0) under client load, with no
// coordinator or observer ever started and no manual step: the agents
// hand over at H, prove their new nodes, record readiness on chain, the
// nodes reopen ingress by the chain's rule and the agents finalize after
// the live period, so the second flag day does not stall. No
// acknowledged payment is lost.
func TestFlagDayWithoutCoordinator(t *testing.T) {
	fn, r3 := startFreeNet(t, 4)
	ctx := testCtx(t, 8*time.Minute)
	load := fn.startLoad(ctx)
	load.waitAcks(t, 20)

	start := time.Now()
	h2 := fn.schedule(ctx, flagdayV2)
	fn.awaitOutcome(ctx, flagdayV2, h2, decide.OutcomeReady, fn.v2, 4*time.Minute)
	load.waitAckAbove(t, h2)
	t.Logf("flag day 1 (%s at %d) settled in %s", flagdayV2, h2, time.Since(start).Round(100*time.Millisecond))
	fn.logBreakdown(ctx, load, start, flagdayV2)
	fd, err := fn.admins[0].FlagDay(ctx, flagdayV2, h2)
	if err != nil || len(fd.Records) < fd.Quorum || fd.ReadyAt == 0 {
		t.Fatalf("readiness on chain: %+v %v", fd, err)
	}
	for _, r := range fd.Records {
		if len(r.TestTxs) != 2 || len(r.Peers) != 3 {
			t.Errorf("node %d's readiness record: %d test payments, %d peer results", r.Node, len(r.TestTxs), len(r.Peers))
		}
	}
	// The observer, started only now, reads the whole flag day from the
	// chain and the agents' journals.
	obs, err := flagday.Observe(ctx, flagday.ObserveOptions{Topology: flagday.FromDevnet(fn.net), Once: true})
	if err != nil || !obs.Settled || obs.Outcome != decide.OutcomeReady || obs.Readiness == nil || len(obs.Readiness.Records) < obs.Readiness.Quorum ||
		obs.Version != flagdayV2 || obs.ActivationHeight != h2 {
		t.Fatalf("observer: %+v %v", obs, err)
	}
	for i := range fn.net.Hosts {
		if st := fn.agentStatus(ctx, i+1); st.Upgrade == nil || st.Upgrade.Phase != agentapi.PhaseFinalized {
			t.Fatalf("host %d's upgrade is not finalized: %+v", i+1, st.Upgrade)
		}
	}

	if err := demo.Approve(ctx, fn.net, r3.ReleaseFile()); err != nil {
		t.Fatalf("approve %s: %v", flagdayV3, err)
	}
	start = time.Now()
	h3 := fn.schedule(ctx, flagdayV3)
	fn.awaitOutcome(ctx, flagdayV3, h3, decide.OutcomeReady, r3, 4*time.Minute)
	load.waitAckAbove(t, h3)
	t.Logf("flag day 2 (%s at %d) settled in %s", flagdayV3, h3, time.Since(start).Round(100*time.Millisecond))
	fn.logBreakdown(ctx, load, start, flagdayV3)

	res := load.stop(t)
	fn.checkLoad(ctx, res)
	fn.checkConsistent(ctx)
}

// TestFlagDayNewNodeNeverServes: every 2.0.0 node fails its migration.
// With nobody acting, every host rolls itself back, votes failure, the
// abort lands on the old chain, the old nodes continue past H with
// ingress open, and no acknowledged payment is lost — within a bounded
// time.
func TestFlagDayNewNodeNeverServes(t *testing.T) {
	t.Setenv(fault.EnvVar, "fail:migration")
	runAbortedFlagDay(t, 3*time.Minute)
}

// TestFlagDaySplitTwoTwo: the 2.0.0 nodes of hosts 3 and 4 fail, those
// of hosts 1 and 2 serve: neither chain has a majority. Hosts 3 and 4
// roll back after the serve deadline and vote failure; hosts 1 and 2
// cannot get their test payments committed, so they never sign readiness,
// roll back after the ready deadline and vote failure too. The abort
// lands on the old chain and every host ends on 1.0.0, serving.
func TestFlagDaySplitTwoTwo(t *testing.T) {
	t.Setenv(fault.EnvVar, "fail:migration.nodes=3+4")
	runAbortedFlagDay(t, 4*time.Minute)
}

func runAbortedFlagDay(t *testing.T, within time.Duration) {
	fn, _ := startFreeNet(t, 4)
	ctx := testCtx(t, 8*time.Minute)
	load := fn.startLoad(ctx)
	load.waitAcks(t, 20)
	start := time.Now()
	h := fn.schedule(ctx, flagdayV2)
	fn.awaitOutcome(ctx, flagdayV2, h, decide.OutcomeAborted, fn.v1, within)
	t.Logf("flag day to %s at %d aborted on every host in %s", flagdayV2, h, time.Since(start).Round(100*time.Millisecond))
	load.waitAckAbove(t, h)
	aborts := 0
	g, err := fn.admins[0].Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range g.Aborts {
		if a.Version == flagdayV2 && a.ActivationHeight == h {
			aborts++
			if !strings.Contains(a.Reason, "readiness impossible") {
				t.Errorf("abort reason %q", a.Reason)
			}
		}
	}
	if aborts != 1 || g.Schedule != nil {
		t.Fatalf("aborts of the flag day %d, schedule %+v", aborts, g.Schedule)
	}
	res := load.stop(t)
	fn.checkLoad(ctx, res)
	fn.checkConsistent(ctx)
}

// logBreakdown logs the client downtime of the flag day to version (the
// longest gap between acknowledged payments since from) and, per host,
// where the time went: halt → handover start (the agent's poll), the
// handover, the proof (attestation and test payments, until readiness is
// submitted) and readiness → ready as the agent saw it.
func (fn *flagdayNet) logBreakdown(ctx context.Context, load *loadRun, from time.Time, version string) {
	fn.t.Helper()
	fn.t.Logf("flag day to %s: client downtime (longest gap between acknowledged payments) %s",
		version, load.longestGap(from, time.Now()).Round(time.Millisecond))
	for i := range fn.net.Hosts {
		s := fn.flagDayState(i + 1)
		st := fn.agentStatus(ctx, i+1)
		var handover time.Duration
		var steps []string
		if up := st.Upgrade; up != nil {
			for _, p := range up.Steps {
				handover += p.Duration
				steps = append(steps, fmt.Sprintf("%s %s", p.Phase, p.Duration.Round(time.Millisecond)))
			}
		}
		fn.t.Logf("  host %d: handover %s (%s); proof until readiness submitted %s; readiness → ready seen %s",
			i+1, handover.Round(time.Millisecond), strings.Join(steps, ", "),
			s.ReadinessSentAt.Sub(s.HandedOverAt).Round(time.Millisecond), s.ReadyAt.Sub(s.ReadinessSentAt).Round(time.Millisecond))
	}
}

// TestFlagDayPartitionedHostRejoins: host 4 is cut off after the schedule
// is in force, so its node never reaches H. Hosts 1–3 (a majority) hand
// over and become ready without it. Healed, host 4's agent learns from its
// peers that the network moved to 2.0.0 at H, hands over late, catches up
// on 2.0.0 and serves; nobody acts. Needs root (network namespaces).
func TestFlagDayPartitionedHostRejoins(t *testing.T) {
	needNetns(t)
	fn, _ := startFreeNetWith(t, devnet.UpOptions{Nodes: 4, Isolate: true, Subnet: netip.MustParsePrefix(isolatedSubnet)})
	ctx := testCtx(t, 8*time.Minute)
	load := fn.startLoad(ctx)
	load.waitAcks(t, 20)
	h := fn.schedule(ctx, flagdayV2)
	eventually(t, time.Minute, "host 4 sees the schedule", func() (bool, string) {
		s := fn.flagDayState(4)
		return s.Tracks(flagdayV2, h), fmt.Sprintf("%+v", s)
	})
	host4 := &fn.net.Hosts[3]
	if err := devnet.Partition(ctx, fn.net, host4); err != nil {
		t.Fatalf("partition host 4: %v", err)
	}
	fn.awaitOutcome(ctx, flagdayV2, h, decide.OutcomeReady, fn.v2, 3*time.Minute, 1, 2, 3)
	if st := fn.status(ctx, 4); st.Height >= h || st.MREnclave != fn.v1.NodeMREnclave {
		t.Fatalf("the partitioned node reached height %d on %s", st.Height, st.MREnclave.Short())
	}
	if err := devnet.Heal(ctx, fn.net, host4); err != nil {
		t.Fatalf("heal host 4: %v", err)
	}
	fn.awaitOutcome(ctx, flagdayV2, h, decide.OutcomeReady, fn.v2, 3*time.Minute)
	if s := fn.flagDayState(4); !s.Late {
		t.Fatalf("host 4 did not hand over late: %+v", s)
	}
	load.waitAckAbove(t, h)
	res := load.stop(t)
	fn.checkLoad(ctx, res)
	fn.checkConsistent(ctx)
}
