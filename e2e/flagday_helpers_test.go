package e2e

import (
	"github.com/teeup/teeup/demo"

	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/internal/proc"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
)

// The two node versions a flag day moves between, as the demo builds them:
// the version and the ledger schema are stamped into the binary, so their
// MRENCLAVEs differ and 2.0.0 migrates the ledger from schema 1 to the
// newest (the account history, then the at-rest encryption).
const (
	flagdayV1     = "1.0.0"
	flagdayV2     = "2.0.0"
	flagdaySchema = demo.V2Schema // the schema 2.0.0 runs at (1.0.0 runs at demo.V1Schema)
)

// flagdayBuilds are the release directories of the flag-day tests: each
// holds a teeup-node of its version beside TestMain's teeup-agent and
// teeup-distribute (a flag day changes the node, not the agent).
type flagdayBuilds struct {
	v1Dir, v2Dir string
}

var (
	flagdayBuildOnce sync.Once
	flagdayBuilt     flagdayBuilds
	flagdayBuildErr  error
)

// flagdayBinaries builds (once) and returns the flag-day tests' releases.
func flagdayBinaries(t *testing.T) flagdayBuilds {
	t.Helper()
	flagdayBuildOnce.Do(func() { flagdayBuilt, flagdayBuildErr = buildFlagdayBinaries(filepath.Join(bins.dir, "flagday")) })
	if flagdayBuildErr != nil {
		t.Fatalf("build flag-day binaries: %v", flagdayBuildErr)
	}
	return flagdayBuilt
}

// buildFlagdayBinaries builds the demo's two node versions (1.0.0 at
// schema 1, 2.0.0 at demo.V2Schema) into dir/v1 and dir/v2.
func buildFlagdayBinaries(dir string) (flagdayBuilds, error) {
	root, err := moduleRoot()
	if err != nil {
		return flagdayBuilds{}, err
	}
	v1, v2, err := demo.BuildNodeVersions(context.Background(), root, bins.dir, dir, testBuildTags)
	return flagdayBuilds{v1Dir: v1, v2Dir: v2}, err
}

// flagdayNet is a devnet of agent-managed hosts running 1.0.0, with 2.0.0
// staged as a release, signed by the Key Management Group and approved on
// chain by the Node Operators Group: the eve of a flag day.
type flagdayNet struct {
	*testNet
	v1, v2   devnet.Release
	agents   []*agentapi.Client // by host index
	progress *syncBuffer        // the coordinator's progress output
}

// upFlagdayNet starts a devnet of agent-managed hosts as a flagdayNet
// (with one agent client per host) and registers its cleanups, which run
// last-registered first: logs, then devnet down, then a sweep for
// processes that escaped their pid files.
func upFlagdayNet(ctx context.Context, t *testing.T, opts devnet.UpOptions) *flagdayNet {
	t.Helper()
	n, err := devnet.Up(ctx, opts)
	if n == nil {
		t.Fatalf("devnet up: %v", err)
	}
	tn := &testNet{t: t, net: n}
	fn := &flagdayNet{testNet: tn, v1: n.Release, progress: &syncBuffer{}}
	t.Cleanup(fn.killStrays)
	t.Cleanup(tn.stop)
	t.Cleanup(fn.dumpOnFailure)
	for _, h := range n.Hosts {
		fn.agents = append(fn.agents, agentapi.NewClient(h.AgentSocket))
	}
	if err != nil {
		t.Fatalf("devnet up: %v", err)
	}
	return fn
}

// startFlagdayNet starts the eve of a flag day on nodes hosts whose agents
// leave it to the coordinator (devnet Coordinated: these tests drive it
// with flagday.Run or the CLI). Every process is stopped when the test
// ends; on failure the agents' logs and the coordinator's progress are
// printed.
func startFlagdayNet(t *testing.T, nodes int) *flagdayNet {
	t.Helper()
	b := flagdayBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fn := upFlagdayNet(ctx, t, devnet.UpOptions{Dir: devnetDir(t), Nodes: nodes, BinDir: b.v1Dir, Coordinated: true})
	n := fn.net
	if n.Release.Version != flagdayV1 {
		t.Fatalf("the devnet runs %s, want %s", n.Release.Version, flagdayV1)
	}
	rel, err := devnet.StageDirRelease(n, b.v2Dir, flagdayV2)
	if err != nil {
		t.Fatalf("stage release %s: %v", flagdayV2, err)
	}
	fn.v2 = *rel
	if fn.v1.NodeMREnclave == fn.v2.NodeMREnclave {
		t.Fatalf("%s and %s have the same node MRENCLAVE %s", flagdayV1, flagdayV2, fn.v1.NodeMREnclave.Short())
	}
	if err := fn.approve(ctx, rel.ReleaseFile()); err != nil {
		t.Fatalf("approve %s on chain: %v", flagdayV2, err)
	}
	// Clients accept both measurements (StageDirRelease added 2.0.0's),
	// so they keep working across the upgrade and a rollback.
	fn.dial()
	return fn
}

// approve proposes the signed release with nog-1 and approves it with
// nog-2, as the demo does.
func (fn *flagdayNet) approve(ctx context.Context, releaseFile string) error {
	return demo.Approve(ctx, fn.net, releaseFile)
}

// options returns the coordinator's options for a flag day to 2.0.0 with
// the given coordinator faults.
func (fn *flagdayNet) options(faults string, stepTimeout time.Duration) flagday.Options {
	fn.t.Helper()
	fs, err := fault.Parse(faults)
	if err != nil {
		fn.t.Fatal(err)
	}
	return flagday.Options{
		Root: fn.net.Dir, Topology: flagday.FromDevnet(fn.net), Version: flagdayV2, Mode: flagday.Scheduled,
		LivePeriod: 2 * time.Second, StepTimeout: stepTimeout, Progress: fn.progress, Faults: fs,
	}
}

// dumpOnFailure prints the agents' logs and the coordinator's progress
// (the node and distribution logs are printed by testNet.stop).
func (fn *flagdayNet) dumpOnFailure() {
	if !fn.t.Failed() {
		return
	}
	for _, h := range fn.net.Hosts {
		fn.t.Logf("---- %s agent.log (last lines) ----\n%s", h.Name, tail(filepath.Join(h.LogDir, "agent.log"), 25))
	}
	fn.t.Logf("---- coordinator progress (last lines) ----\n%s", lastLines(fn.progress.String(), 80))
	if rec, err := flagday.Current(fn.net.Dir); err == nil {
		var b bytes.Buffer
		flagday.Summarize(&b, rec)
		fn.t.Logf("---- flag-day journal ----\n%s", b.String())
	}
}

// killStrays kills any teeup-node or teeup-agent of this devnet that still
// runs after devnet down (a failure: the test says so).
func (fn *flagdayNet) killStrays() {
	for _, c := range fn.agents {
		c.Close()
	}
	for _, h := range fn.net.Hosts {
		for _, p := range []struct{ prog, config string }{{devnet.AgentBin, h.AgentConfig}, {devnet.NodeBin, h.NodeConfig}} {
			for _, pid := range liveProcesses(p.prog, p.config) {
				fn.t.Errorf("%s pid %d of %s still runs after devnet down: killing it", p.prog, pid, h.Name)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// syncBuffer is a bytes.Buffer safe for concurrent writers: the
// coordinator prints its progress from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// loadRun is client load running in the background: user-1..user-8 pay
// each other through every node's attested client API, retrying "closed
// for upgrade" and unreachable nodes with the same signed transaction.
type loadRun struct {
	cancel  context.CancelFunc
	done    chan loadOutcome
	acks    atomic.Int64
	maxAckH atomic.Uint64 // highest block height of an acknowledged payment

	mu       sync.Mutex
	ackTimes []time.Time // when each acknowledgment arrived
}

// longestGap returns the longest time between two acknowledgments that
// arrived in [from, to]: the client downtime of a flag day in that window.
func (l *loadRun) longestGap(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var gap time.Duration
	var prev time.Time
	for _, t := range l.ackTimes {
		if t.Before(from) || t.After(to) {
			continue
		}
		if !prev.IsZero() && t.Sub(prev) > gap {
			gap = t.Sub(prev)
		}
		prev = t
	}
	return gap
}

type loadOutcome struct {
	res *loadgen.Result
	err error
}

// startLoad starts 40 payments/s of client load until stop.
func (fn *flagdayNet) startLoad(ctx context.Context) *loadRun {
	users := fn.users(devnet.UserCount)
	lctx, cancel := context.WithCancel(ctx)
	l := &loadRun{cancel: cancel, done: make(chan loadOutcome, 1)}
	cfg := loadgen.Config{
		Nodes: fn.nodes(), ChainID: fn.net.ChainID, Accounts: users, Recipients: addresses(users),
		Rate: 40, Duration: time.Hour, Amount: 1, DrainTimeout: 20 * time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second,
		OnAck: func(a loadgen.Ack) {
			l.mu.Lock()
			l.ackTimes = append(l.ackTimes, time.Now())
			l.mu.Unlock()
			l.acks.Add(1)
			for {
				h := l.maxAckH.Load()
				if a.Height <= h || l.maxAckH.CompareAndSwap(h, a.Height) {
					return
				}
			}
		},
	}
	go func() {
		res, err := loadgen.Run(lctx, cfg)
		l.done <- loadOutcome{res, err}
	}()
	return l
}

// waitAcks waits until the load has n acknowledged payments.
func (l *loadRun) waitAcks(t *testing.T, n int64) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("%d client payments acknowledged", n), func() (bool, string) {
		return l.acks.Load() >= n, fmt.Sprintf("%d acknowledged", l.acks.Load())
	})
}

// waitAckAbove waits until a client payment is acknowledged in a block
// above height h: clients are served again after the flag day.
func (l *loadRun) waitAckAbove(t *testing.T, h uint64) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("a client payment acknowledged above height %d", h), func() (bool, string) {
		return l.maxAckH.Load() > h, fmt.Sprintf("highest acknowledged height %d", l.maxAckH.Load())
	})
}

// stop stops the load and returns its accounting.
func (l *loadRun) stop(t *testing.T) *loadgen.Result {
	t.Helper()
	l.cancel()
	out := <-l.done
	if out.res == nil {
		t.Fatalf("load generator: %v", out.err)
	}
	if out.err != nil && !errors.Is(out.err, context.Canceled) {
		t.Fatalf("load generator: %v", out.err)
	}
	r := out.res
	t.Logf("client load: %d sent, %d acknowledged, %d rejected, %d unresolved; %d attempts answered \"closed for upgrade\", %d retries; p50 %s, max %s",
		r.Sent, r.Acknowledged, r.Rejected, len(r.Unresolved), r.ClosedForUpgrade, r.Retries, r.Percentile(50), r.Percentile(100))
	return r
}

// checkLoad checks the load's accounting against a live node: clients were
// told "closed for upgrade" and retried, nothing was rejected, and no
// acknowledged payment was lost (loadgen.Result.Verify).
func (fn *flagdayNet) checkLoad(ctx context.Context, res *loadgen.Result) {
	fn.t.Helper()
	if res.ClosedForUpgrade == 0 {
		fn.t.Errorf("no client attempt was answered \"closed for upgrade\": the load did not span the flag day")
	}
	if res.Rejected != 0 {
		fn.t.Errorf("%d client payments rejected: %v", res.Rejected, res.RejectedTxs)
	}
	vctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := res.Verify(vctx, fn.clients[0]); err != nil {
		fn.t.Errorf("acknowledged payments: %v", err)
	}
}

// checkBalances holds every node at one common height through the admin
// API (blocks keep coming), compares every genesis account's balance and
// nonce across nodes, and clears the halt.
func (fn *flagdayNet) checkBalances(ctx context.Context) {
	fn.t.Helper()
	head, err := fn.admins[0].Head(ctx)
	if err != nil {
		fn.t.Fatalf("node 1 head: %v", err)
	}
	target := head.Height + 2
	if _, err := fn.admins[0].Halt(ctx, target); err != nil {
		fn.t.Fatalf("hold the network at height %d for the comparison: %v", target, err)
	}
	defer func() {
		if _, err := fn.admins[0].Halt(context.WithoutCancel(ctx), 0); err != nil {
			fn.t.Errorf("clear the halt height: %v", err)
		}
	}()
	eventually(fn.t, 30*time.Second, fmt.Sprintf("every node halted at height %d", target), func() (bool, string) {
		for i, a := range fn.admins {
			st, err := a.Status(ctx)
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", i+1, err)
			}
			if st.Height != target || !st.Halted {
				return false, fmt.Sprintf("node %d at %d (halted %t)", i+1, st.Height, st.Halted)
			}
		}
		return true, ""
	})
	accounts := fn.genesisAccounts()
	ref := fn.balances(ctx, 1, accounts)
	for id := 2; id <= len(fn.admins); id++ {
		got := fn.balances(ctx, id, accounts)
		for _, a := range accounts {
			if got[a].Balance != ref[a].Balance || got[a].Nonce != ref[a].Nonce {
				fn.t.Errorf("account %s: node %d has balance %d nonce %d, node 1 has %d/%d", a.String()[:12], id, got[a].Balance, got[a].Nonce, ref[a].Balance, ref[a].Nonce)
			}
		}
	}
}

// checkConsistent checks identical blocks (bytes and hashes, linked) on
// every node up to the lowest head, and identical balances.
func (fn *flagdayNet) checkConsistent(ctx context.Context) {
	fn.t.Helper()
	low := fn.minHeight(ctx)
	fn.checkSameChain(ctx, low)
	fn.checkBalances(ctx)
	fn.checkProposerKeys(ctx, low)
}

// checkProposerKeys checks that every node signed every block it proposed
// with one identity key, before and after the flag day: a node whose keys
// were lost would come back with a new one.
func (fn *flagdayNet) checkProposerKeys(ctx context.Context, upTo uint64) {
	fn.t.Helper()
	keys := map[uint64]ledger.Address{}
	for h := uint64(1); h <= upTo; h++ {
		b, err := fn.admins[0].Block(ctx, h)
		if err != nil {
			fn.t.Fatalf("block %d: %v", h, err)
		}
		raw, err := nodeapiRaw(b)
		if err != nil {
			fn.t.Fatalf("block %d: %v", h, err)
		}
		blk, err := ledger.DecodeBlock(raw)
		if err != nil {
			fn.t.Fatalf("block %d: %v", h, err)
		}
		k, seen := keys[b.Proposer]
		if !seen {
			keys[b.Proposer] = blk.Header.ProposerKey
			continue
		}
		if k != blk.Header.ProposerKey {
			fn.t.Fatalf("node %d signed block %d with key %s, earlier blocks with %s: its identity key changed", b.Proposer, h, blk.Header.ProposerKey.String()[:12], k.String()[:12])
		}
	}
}

// status returns node id's status (1-based).
func (fn *flagdayNet) status(ctx context.Context, id int) *nodeapi.Status {
	fn.t.Helper()
	st, err := fn.admins[id-1].Status(ctx)
	if err != nil {
		fn.t.Fatalf("node %d status: %v", id, err)
	}
	return st
}

// agentStatus returns host id's agent status (1-based).
func (fn *flagdayNet) agentStatus(ctx context.Context, id int) *agentapi.Status {
	fn.t.Helper()
	st, err := fn.agents[id-1].Status(ctx)
	if err != nil {
		fn.t.Fatalf("agent %d status: %v", id, err)
	}
	return st
}

// checkRuns checks that every node serves rel at schema, that its agent
// has rel installed, and that its keys are sealed for rel's MRENCLAVE
// (serving at all means it unsealed them) while the 1.0.0 keys are still
// on disk (no flag day here finalizes).
func (fn *flagdayNet) checkRuns(ctx context.Context, rel devnet.Release, schema int) {
	fn.t.Helper()
	for i, h := range fn.net.Hosts {
		id := i + 1
		st := fn.status(ctx, id)
		if st.MREnclave != rel.NodeMREnclave || st.Version != rel.Version || st.SchemaVersion != schema {
			fn.t.Errorf("node %d runs %s (%s) at schema %d, want %s (%s) at schema %d",
				id, st.Version, st.MREnclave.Short(), st.SchemaVersion, rel.Version, rel.NodeMREnclave.Short(), schema)
		}
		if ast := fn.agentStatus(ctx, id); ast.Installed.Version != rel.Version || ast.Installed.NodeMREnclave != rel.NodeMREnclave {
			fn.t.Errorf("agent %d has %s installed, want %s", id, ast.Installed.Version, rel.Version)
		}
		for _, m := range []devnet.Release{rel, fn.v1} {
			if _, err := os.Stat(layout.Node(h.DataDir).SealedKeys(m.NodeMREnclave)); err != nil {
				fn.t.Errorf("node %d: no keys sealed for %s (%s): %v", id, m.Version, m.NodeMREnclave.Short(), err)
			}
		}
	}
}

// checkCompleted checks a completed flag day: every node runs 2.0.0 at
// schema 2 with ingress open, and every agent's upgrade completed.
func (fn *flagdayNet) checkCompleted(ctx context.Context, rec *flagday.Record) {
	fn.t.Helper()
	fn.checkRuns(ctx, fn.v2, flagdaySchema)
	for i := range fn.net.Hosts {
		if st := fn.status(ctx, i+1); st.Ingress != nodeapi.IngressOpen || st.Height <= rec.ActivationHeight {
			fn.t.Errorf("node %d: ingress %s at height %d after the flag day (activation %d)", i+1, st.Ingress, st.Height, rec.ActivationHeight)
		}
		if up := fn.agentStatus(ctx, i+1).Upgrade; up == nil || up.Phase != agentapi.PhaseCompleted || up.To.Version != flagdayV2 {
			fn.t.Errorf("agent %d upgrade record %+v, want completed to %s", i+1, up, flagdayV2)
		}
	}
	for _, s := range rec.Steps {
		if s.Status != flagday.StepDone {
			fn.t.Errorf("step %s is %s in a completed flag day", s.Name, s.Status)
		}
	}
	// The chain runs 2.0.0 now (the devnet's genesis named 1.0.0):
	// scheduling it again is a downgrade, refused at admission.
	g, err := fn.admins[0].Releases(ctx)
	if err != nil || g.RunningRelease != flagdayV2 {
		fn.t.Fatalf("running release %q after the flag day (%v), want %s", g.RunningRelease, err, flagdayV2)
	}
	sched := ledger.EncodeUpgradeSchedule(ledger.UpgradeSchedule{Version: flagdayV2, ActivationHeight: g.Height + 2*ledger.MinScheduleLead})
	_, err = fn.govTx(ctx, 1, fn.key("nog-1"), ledger.TxScheduleUpgrade, sched)
	if !nodeapi.IsCode(err, nodeapi.CodeRejected) || nodeapi.TxCode(err) != string(ledger.CodeDowngrade) {
		fn.t.Errorf("scheduling the running release %s again: %v (tx code %q), want a downgrade rejection", flagdayV2, err, nodeapi.TxCode(err))
	}
}

// checkRolledBack checks a rolled-back flag day: every node runs 1.0.0
// again (keys intact), heights advance past the activation height, the
// abort is recorded on chain, ingress is open and a client payment
// commits.
func (fn *flagdayNet) checkRolledBack(ctx context.Context, rec *flagday.Record) {
	fn.t.Helper()
	H := rec.ActivationHeight
	if H == 0 {
		fn.t.Fatal("the rolled-back flag day recorded no activation height")
	}
	fn.checkRuns(ctx, fn.v1, 1)
	fn.waitHeight(ctx, H+3)
	for i := range fn.net.Hosts {
		if st := fn.status(ctx, i+1); st.Ingress != nodeapi.IngressOpen || st.Halted {
			fn.t.Errorf("node %d after the rollback: ingress %s, halted %t", i+1, st.Ingress, st.Halted)
		}
		if up := fn.agentStatus(ctx, i+1).Upgrade; up != nil && up.To.Version == flagdayV2 && up.Phase != agentapi.PhaseRolledBack {
			fn.t.Errorf("agent %d upgrade to %s is at phase %s, want rolled-back", i+1, flagdayV2, up.Phase)
		}
	}
	g, err := fn.admins[0].Releases(ctx)
	if err != nil {
		fn.t.Fatalf("governance: %v", err)
	}
	if g.Schedule != nil {
		fn.t.Errorf("an upgrade is still scheduled on chain after the rollback: %+v", g.Schedule)
	}
	if g.RunningRelease != flagdayV1 {
		fn.t.Errorf("running release %q after the rollback, want %s", g.RunningRelease, flagdayV1)
	}
	aborted := false
	for _, a := range g.Aborts {
		if a.Version == flagdayV2 && a.ActivationHeight == H {
			aborted = true
		}
	}
	if !aborted {
		fn.t.Errorf("no abort of %s at height %d recorded on chain (aborts: %+v)", flagdayV2, H, g.Aborts)
	}
	if rec.Rollback == nil || rec.Rollback.FinishedAt.IsZero() {
		fn.t.Errorf("the journal records no finished rollback: %+v", rec.Rollback)
	}
	fn.clientPayment(ctx, H)
}

// clientPayment pays 1 from operator-2 to operator-1 through every node's
// attested client API in turn (accounts the load does not use) and checks
// it commits above height h.
func (fn *flagdayNet) clientPayment(ctx context.Context, h uint64) {
	fn.t.Helper()
	payer := fn.key("operator-2")
	from, err := ledger.AddressOf(payer.Public().(ed25519.PublicKey))
	if err != nil {
		fn.t.Fatal(err)
	}
	to, err := ledger.AddressOf(fn.key("operator-1").Public().(ed25519.PublicKey))
	if err != nil {
		fn.t.Fatal(err)
	}
	for i, c := range fn.clients {
		acct, err := c.Account(ctx, from.String())
		if err != nil {
			fn.t.Fatalf("payer account through node %d's client API: %v", i+1, err)
		}
		tx := ledger.NewPayment(fn.net.ChainID, payer, to, 1, acct.Nonce+1)
		rec, err := c.Submit(ctx, tx.Encode())
		if err != nil {
			fn.t.Fatalf("client payment through node %d: %v", i+1, err)
		}
		if rec.Status != ledger.StateCommitted || rec.Height <= h {
			fn.t.Fatalf("client payment through node %d: %s at height %d, want committed above %d", i+1, rec.Status, rec.Height, h)
		}
	}
}

// failedStep returns the step of rec that failed ("" if none).
func failedStep(rec *flagday.Record) string {
	for _, s := range rec.Steps {
		if s.Status == flagday.StepFailed {
			return s.Name
		}
	}
	return ""
}

// stepStatus returns the status of step name in rec.
func stepStatus(rec *flagday.Record, name string) flagday.StepStatus {
	for _, s := range rec.Steps {
		if s.Name == name {
			return s.Status
		}
	}
	return ""
}

// hostProcess is a process a test killed: its old pid and the pid that
// replaced it.
type hostProcess struct {
	old, restarted int
}

// kill9AndAwaitRestart kills host id's prog with SIGKILL and waits until
// its supervisor (the agent) has started a new one.
func (fn *flagdayNet) kill9AndAwaitRestart(id int, prog string) hostProcess {
	fn.t.Helper()
	h := fn.host(id)
	pid, alive := devnet.ProcessAlive(h, prog)
	if !alive {
		fn.t.Fatalf("%s of %s does not run", prog, h.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		fn.t.Fatalf("kill -9 %s of %s (pid %d): %v", prog, h.Name, pid, err)
	}
	var p hostProcess
	p.old = pid
	eventually(fn.t, 30*time.Second, fmt.Sprintf("%s of %s restarted after kill -9", prog, h.Name), func() (bool, string) {
		if _, ok := proc.Executable(pid); ok {
			return false, fmt.Sprintf("pid %d still alive", pid)
		}
		np, ok := devnet.ProcessAlive(h, prog)
		if !ok || np == pid {
			return false, "no new process yet"
		}
		p.restarted = np
		return true, ""
	})
	return p
}
