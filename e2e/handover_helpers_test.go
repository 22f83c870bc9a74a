package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/handover"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// Versions of the releases the handover tests build. The devnet starts at
// the version TestMain's binaries carry (0.1.0-dev).
const (
	versionNext  = "0.2.0" // the upgrade target
	versionPatch = "0.1.5" // an older release, approved before versionNext (downgrade test)
)

// handoverBuilds are the binaries the handover tests need besides
// TestMain's, built once on first use into bins.dir (which TestMain
// removes).
type handoverBuilds struct {
	// releases maps a version to a directory holding a teeup-node built
	// with that version (so its MRENCLAVE differs) beside TestMain's
	// teeup-agent and teeup-distribute: releases change the node, not the
	// agent.
	releases map[string]string
	// rogueAgent is a teeup-agent built with another version string: an
	// agent MRENCLAVE that no release signs.
	rogueAgent string
}

var (
	handoverBuildOnce sync.Once
	handoverBuilt     handoverBuilds
	handoverBuildErr  error
)

// handoverBinaries builds (once) and returns the handover tests' binaries.
func handoverBinaries(t *testing.T) handoverBuilds {
	t.Helper()
	handoverBuildOnce.Do(func() { handoverBuilt, handoverBuildErr = buildHandoverBinaries(filepath.Join(bins.dir, "handover")) })
	if handoverBuildErr != nil {
		t.Fatalf("build handover binaries: %v", handoverBuildErr)
	}
	return handoverBuilt
}

func buildHandoverBinaries(dir string) (handoverBuilds, error) {
	root, err := moduleRoot()
	if err != nil {
		return handoverBuilds{}, err
	}
	out := handoverBuilds{releases: map[string]string{}, rogueAgent: filepath.Join(dir, "rogue", devnet.AgentBin)}
	build := func(version, pkg, dst string) error {
		args := []string{"build", "-trimpath", "-tags", testBuildTags, "-ldflags", "-X github.com/teeup/teeup/internal/buildinfo.Version=" + version, "-o", dst, pkg}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, msg)
		}
		return nil
	}
	for _, v := range []string{versionPatch, versionNext} {
		rd := filepath.Join(dir, v)
		if err := build(v, "./cmd/teeup-node", filepath.Join(rd, devnet.NodeBin)); err != nil {
			return handoverBuilds{}, err
		}
		for _, b := range []string{devnet.AgentBin, devnet.DistributeBin} {
			if err := copyExecutable(filepath.Join(bins.dir, b), filepath.Join(rd, b)); err != nil {
				return handoverBuilds{}, err
			}
		}
		out.releases[v] = rd
	}
	if err := build("0.1.0-rogue", "./cmd/teeup-agent", out.rogueAgent); err != nil {
		return handoverBuilds{}, err
	}
	return out, nil
}

// handoverNet is a running one-node devnet whose node runs under its
// upgrade agent: the setting of a single host's key handover.
type handoverNet struct {
	t     *testing.T
	net   *devnet.Network
	host  *devnet.Host
	admin *nodeapi.AdminClient
	agent *agentapi.Client
	bins  handoverBuilds

	payer ed25519.PrivateKey // operator-1
	payee ledger.Address     // user-1
}

// startHandoverNet starts a one-node devnet with an agent, with the
// handover tests' extra binaries; it is stopped when the test ends, and on
// failure the logs' tails are printed.
func startHandoverNet(t *testing.T) *handoverNet {
	t.Helper()
	b := handoverBinaries(t)
	hn := startAgentNet(t)
	hn.bins = b
	return hn
}

// startAgentNet starts a one-node devnet whose node runs under its agent.
func startAgentNet(t *testing.T) *handoverNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := devnet.Up(ctx, devnet.UpOptions{Dir: devnetDir(t), Nodes: 1, BinDir: bins.dir})
	if n == nil {
		t.Fatalf("devnet up: %v", err)
	}
	h := &n.Hosts[0]
	hn := &handoverNet{t: t, net: n, host: h,
		admin: nodeapi.NewAdminClient(h.AdminSocket), agent: agentapi.NewClient(h.AgentSocket)}
	t.Cleanup(hn.stop)
	if err != nil {
		t.Fatalf("devnet up: %v", err)
	}
	if !h.AgentManaged {
		t.Fatal("the devnet host is not agent-managed")
	}
	hn.payer = hn.key("operator-1")
	payee, err := ledger.AddressOf(hn.key("user-1").Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	hn.payee = payee
	return hn
}

// with returns a copy of hn that reports to t (a subtest's).
func (hn *handoverNet) with(t *testing.T) *handoverNet {
	c := *hn
	c.t = t
	return &c
}

// checkUnharmed checks that an attack changed nothing: the same node
// process still serves inst's version, the agent's upgrade record is still
// upgradeID's ("" for none), and a payment commits.
func (hn *handoverNet) checkUnharmed(ctx context.Context, inst agentapi.Installation, nodePID int, upgradeID string) {
	hn.t.Helper()
	hn.checkServing(ctx, inst)
	if pid, alive := devnet.ProcessAlive(hn.host, devnet.NodeBin); !alive || pid != nodePID {
		hn.t.Fatalf("the node process is %d (alive %v), was %d: the node was stopped or replaced", pid, alive, nodePID)
	}
	st := hn.status(ctx)
	switch {
	case st.Installed.Version != inst.Version:
		hn.t.Fatalf("the agent has %s installed, want %s", st.Installed.Version, inst.Version)
	case upgradeID == "" && st.Upgrade != nil:
		hn.t.Fatalf("an upgrade was journalled: %s phase %s", st.Upgrade.ID, st.Upgrade.Phase)
	case upgradeID != "" && (st.Upgrade == nil || st.Upgrade.ID != upgradeID):
		hn.t.Fatalf("the agent's upgrade record is %+v, want %s", st.Upgrade, upgradeID)
	}
	hn.pay(ctx, inst.NodeMREnclave, 1)
}

// stop stops every process of the devnet, and kills any teeup-node or
// teeup-agent of this host that escaped its pid file (the test has
// already failed if one did).
func (hn *handoverNet) stop() {
	if hn.t.Failed() {
		for _, name := range []string{"agent.log", "node.log"} {
			hn.t.Logf("---- %s (last lines) ----\n%s", name, tail(filepath.Join(hn.host.LogDir, name), 30))
		}
	}
	hn.admin.Close()
	hn.agent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := devnet.Down(ctx, hn.net); err != nil {
		hn.t.Errorf("devnet down: %v", err)
	}
	for _, p := range []struct{ prog, config string }{{devnet.AgentBin, hn.host.AgentConfig}, {devnet.NodeBin, hn.host.NodeConfig}} {
		for _, pid := range liveProcesses(p.prog, p.config) {
			hn.t.Errorf("%s pid %d still runs after devnet down: killing it", p.prog, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// key reads a devnet key by name.
func (hn *handoverNet) key(name string) ed25519.PrivateKey {
	hn.t.Helper()
	k, err := keyfile.ReadPrivate(hn.net.KeyPath(name))
	if err != nil {
		hn.t.Fatal(err)
	}
	return k
}

// teeup runs the teeup CLI and returns its output; err is set when it
// exits non-zero.
func (hn *handoverNet) teeup(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return runTeeup(ctx, args...)
}

// runTeeup runs the teeup CLI TestMain built.
func runTeeup(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bins.dir, "teeup"), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustTeeup runs the teeup CLI and fails the test unless it succeeds.
func (hn *handoverNet) mustTeeup(ctx context.Context, args ...string) string {
	hn.t.Helper()
	out, errOut, err := hn.teeup(ctx, args...)
	if err != nil {
		hn.t.Fatalf("teeup %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// refusedTeeup runs the teeup CLI, expects it to fail, and checks that its
// error names every one of wants.
func (hn *handoverNet) refusedTeeup(ctx context.Context, wants []string, args ...string) string {
	hn.t.Helper()
	out, errOut, err := hn.teeup(ctx, args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		hn.t.Fatalf("teeup %s: succeeded or did not run (%v), want a refusal naming %q\n%s%s", strings.Join(args, " "), err, wants, out, errOut)
	}
	hn.t.Logf("teeup %s: %s", args[0]+" "+args[1], strings.TrimSpace(errOut))
	for _, w := range wants {
		if !strings.Contains(errOut, w) {
			hn.t.Fatalf("teeup %s: refusal %q does not say %q", strings.Join(args, " "), strings.TrimSpace(errOut), w)
		}
	}
	return errOut
}

// publish stages the binaries in binDir as a devnet release and has the
// Node Operators Group propose and approve it on chain.
func (hn *handoverNet) publish(ctx context.Context, binDir string) *devnet.Release {
	hn.t.Helper()
	rel, err := devnet.StageDirRelease(hn.net, binDir, "")
	if err != nil {
		hn.t.Fatal(err)
	}
	hn.mustTeeup(ctx, "release", "propose", rel.ReleaseFile(), "--key", "nog-1", "--devnet", hn.net.Dir)
	hn.mustTeeup(ctx, "release", "approve", rel.Version, "--key", "nog-2", "--devnet", hn.net.Dir)
	return rel
}

// status returns the agent's status.
func (hn *handoverNet) status(ctx context.Context) *agentapi.Status {
	hn.t.Helper()
	st, err := hn.agent.Status(ctx)
	if err != nil {
		hn.t.Fatalf("agent status: %v", err)
	}
	return st
}

// waitStaged waits until the agent has staged version (it stages approved
// releases by itself).
func (hn *handoverNet) waitStaged(ctx context.Context, version string) {
	hn.t.Helper()
	eventually(hn.t, 30*time.Second, "the agent stages "+version, func() (bool, string) {
		st, err := hn.agent.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(st.Staged, version), fmt.Sprintf("staged %v", st.Staged)
	})
}

// journal reads the agent's journal from disk (the agent may be dead).
func (hn *handoverNet) journal() (*agent.Journal, error) {
	raw, err := os.ReadFile(layout.Agent(hn.host.AgentDir).Journal())
	if err != nil {
		return nil, err
	}
	var j agent.Journal
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &j, nil
}

// agentPID returns the pid of the host's running agent.
func (hn *handoverNet) agentPID() (int, bool) { return devnet.ProcessAlive(hn.host, devnet.AgentBin) }

// waitAgentGone waits until the host's agent process has exited.
func (hn *handoverNet) waitAgentGone(timeout time.Duration) {
	hn.t.Helper()
	eventually(hn.t, timeout, "the agent exits", func() (bool, string) {
		pid, alive := hn.agentPID()
		return !alive, fmt.Sprintf("pid %d alive", pid)
	})
}

// startAgent starts the host's agent with the test process's environment
// and waits until it answers.
func (hn *handoverNet) startAgent(ctx context.Context) {
	hn.t.Helper()
	if err := devnet.StartAgent(hn.net, hn.host); err != nil {
		hn.t.Fatal(err)
	}
	eventually(hn.t, 30*time.Second, "the agent answers", func() (bool, string) {
		_, err := hn.agent.Status(ctx)
		if err != nil {
			return false, err.Error() + "; " + tail(filepath.Join(hn.host.LogDir, "agent.log"), 1)
		}
		return true, ""
	})
}

// stopAgent stops the host's agent with SIGUSR2 (the node runs on).
func (hn *handoverNet) stopAgent(ctx context.Context) {
	hn.t.Helper()
	if err := devnet.DetachAgent(ctx, hn.host, 10*time.Second); err != nil {
		hn.t.Fatal(err)
	}
}

// waitNodeServing waits until the node runs as measurement m and is
// current (so it serves clients).
func (hn *handoverNet) waitNodeServing(ctx context.Context, m tee.Measurement) {
	hn.t.Helper()
	eventually(hn.t, 60*time.Second, "the node serves as "+m.Short(), func() (bool, string) {
		st, err := hn.admin.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return st.MREnclave == m && st.Phase == nodeapi.PhaseRunning && st.Sync.State == nodeapi.SyncCurrent,
			fmt.Sprintf("node runs %s, %s, %s", st.MREnclave.Short(), st.Phase, st.Sync.Reason)
	})
}

// waitOutcome waits until the agent reports upgrade id (or, with id "",
// any upgrade) completed, rolled back or finalized.
func (hn *handoverNet) waitOutcome(ctx context.Context, id string) *agentapi.UpgradeRecord {
	hn.t.Helper()
	var rec *agentapi.UpgradeRecord
	eventually(hn.t, 3*time.Minute, "the upgrade ends in completion or rollback", func() (bool, string) {
		st, err := hn.agent.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		if st.Upgrade == nil {
			return false, "no upgrade journalled"
		}
		if id != "" && st.Upgrade.ID != id {
			return false, "upgrade " + st.Upgrade.ID
		}
		switch st.Upgrade.Phase {
		case agentapi.PhaseCompleted, agentapi.PhaseRolledBack, agentapi.PhaseFinalized:
			rec = st.Upgrade
			return true, ""
		}
		return false, fmt.Sprintf("phase %s (error %q)", st.Upgrade.Phase, st.Upgrade.Error)
	})
	return rec
}

// written is what the test wrote before an upgrade and expects to find
// after it.
type written struct {
	payeeBalance uint64         // the payee's balance after the payment
	height       uint64         // the payment's block
	proposerKey  ledger.Address // the node identity key that signed it
}

// client dials the node's client API, accepting only measurement m.
func (hn *handoverNet) client(m tee.Measurement) *nodeapi.Client {
	hn.t.Helper()
	c, err := nodeapi.Dial(nodeapi.DialConfig{Addr: hn.host.ClientAddr, RootPath: hn.net.RootCert(), MREnclaves: []string{m.String()}})
	if err != nil {
		hn.t.Fatal(err)
	}
	return c
}

// pay sends amount from operator-1 to user-1 through the attested client
// API of a node that must measure m, and returns what it wrote.
func (hn *handoverNet) pay(ctx context.Context, m tee.Measurement, amount uint64) written {
	hn.t.Helper()
	c := hn.client(m)
	defer c.Close()
	from, err := ledger.AddressOf(hn.payer.Public().(ed25519.PublicKey))
	if err != nil {
		hn.t.Fatal(err)
	}
	acct, err := c.Account(ctx, from.String())
	if err != nil {
		hn.t.Fatalf("payer account through the attested client API (node %s): %v", m.Short(), err)
	}
	before, err := c.Account(ctx, hn.payee.String())
	if err != nil {
		hn.t.Fatal(err)
	}
	tx := ledger.NewPayment(hn.net.ChainID, hn.payer, hn.payee, amount, acct.Nonce+1)
	rec, err := c.Submit(ctx, tx.Encode())
	if err != nil {
		hn.t.Fatalf("payment through the attested client API (node %s): %v", m.Short(), err)
	}
	after, err := c.Account(ctx, hn.payee.String())
	if err != nil {
		hn.t.Fatal(err)
	}
	if after.Balance != before.Balance+amount {
		hn.t.Fatalf("payee balance %d after a payment of %d, was %d", after.Balance, amount, before.Balance)
	}
	return written{payeeBalance: after.Balance, height: rec.Height, proposerKey: hn.proposerKey(ctx, rec.Height)}
}

// proposerKey returns the identity key that signed block height.
func (hn *handoverNet) proposerKey(ctx context.Context, height uint64) ledger.Address {
	hn.t.Helper()
	b, err := hn.admin.Block(ctx, height)
	if err != nil {
		hn.t.Fatal(err)
	}
	raw, err := nodeapiRaw(b)
	if err != nil {
		hn.t.Fatal(err)
	}
	blk, err := ledger.DecodeBlock(raw)
	if err != nil {
		hn.t.Fatal(err)
	}
	return blk.Header.ProposerKey
}

// checkServing fails unless the node answers as inst's version and
// measurement.
func (hn *handoverNet) checkServing(ctx context.Context, inst agentapi.Installation) {
	hn.t.Helper()
	st, err := hn.admin.Status(ctx)
	if err != nil {
		hn.t.Fatalf("the node does not serve: %v", err)
	}
	if st.MREnclave != inst.NodeMREnclave || st.Version != inst.Version {
		hn.t.Fatalf("the node runs %s (%s), want %s (%s)", st.Version, st.MREnclave.Short(), inst.Version, inst.NodeMREnclave.Short())
	}
}

// checkOutcome checks the host after an upgrade attempt ended in rec: the
// node serves the outcome's version; what was written before is readable;
// its keys are sealed for the running MRENCLAVE, unseal after a kill -9,
// and are the old node's (blocks are signed by the same identity key); the
// old version's sealed keys are still there until finalization; a payment
// commits; exactly one node and one agent run for the host, and the agent
// leaves no zombie child.
func (hn *handoverNet) checkOutcome(ctx context.Context, rec *agentapi.UpgradeRecord, before written) {
	hn.t.Helper()
	t := hn.t
	inst := rec.From
	switch rec.Phase {
	case agentapi.PhaseCompleted, agentapi.PhaseFinalized:
		inst = rec.To
	case agentapi.PhaseRolledBack:
	default:
		t.Fatalf("upgrade %s ended in phase %s", rec.ID, rec.Phase)
	}
	if st := hn.status(ctx); st.Installed.NodeMREnclave != inst.NodeMREnclave || st.Installed.Version != inst.Version {
		t.Fatalf("the agent has %s installed, the outcome %s is %s", st.Installed.Version, rec.Phase, inst.Version)
	}
	hn.checkServing(ctx, inst)
	hn.checkProcesses(inst)

	acct, err := hn.admin.Account(ctx, hn.payee.String())
	if err != nil {
		t.Fatal(err)
	}
	if acct.Balance != before.payeeBalance {
		t.Fatalf("%s reads the payee's balance as %d; %d was written before the upgrade", inst.Version, acct.Balance, before.payeeBalance)
	}

	sealed := layout.Node(hn.host.DataDir).SealedKeys(inst.NodeMREnclave)
	if _, err := os.Stat(sealed); err != nil {
		t.Fatalf("no keys sealed for the running MRENCLAVE: %v", err)
	}
	if rec.Phase != agentapi.PhaseFinalized {
		if _, err := os.Stat(layout.Node(hn.host.DataDir).SealedKeys(rec.From.NodeMREnclave)); err != nil {
			t.Fatalf("the old version's sealed keys are gone before finalization (no rollback possible): %v", err)
		}
	}

	// kill -9 the node: the agent restarts it, and it unseals its keys.
	nodeLog := filepath.Join(hn.host.LogDir, "node.log")
	unsealed := countOccurrences(nodeLog, `"msg":"keys unsealed"`)
	pid, alive := devnet.ProcessAlive(hn.host, devnet.NodeBin)
	if !alive {
		t.Fatal("no node process")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the agent restarts the killed node and it unseals its keys", func() (bool, string) {
		n := countOccurrences(nodeLog, `"msg":"keys unsealed"`)
		npid, alive := devnet.ProcessAlive(hn.host, devnet.NodeBin)
		return n > unsealed && alive && npid != pid, fmt.Sprintf("%d unseals (was %d), pid %d alive %v", n, unsealed, npid, alive)
	})
	hn.waitNodeServing(ctx, inst.NodeMREnclave)
	hn.checkServing(ctx, inst)
	hn.checkProcesses(inst)

	after := hn.pay(ctx, inst.NodeMREnclave, 3)
	if after.payeeBalance != before.payeeBalance+3 {
		t.Fatalf("payee balance %d after paying 3 more, want %d", after.payeeBalance, before.payeeBalance+3)
	}
	if after.proposerKey != before.proposerKey {
		t.Fatalf("block %d is signed by %s, block %d before the upgrade by %s: the node identity key was not handed over", after.height, after.proposerKey, before.height, before.proposerKey)
	}
}

// checkProcesses fails unless exactly one teeup-node (running inst's
// binary) and one teeup-agent run for the host, and the agent has no
// zombie node child.
func (hn *handoverNet) checkProcesses(inst agentapi.Installation) {
	hn.t.Helper()
	nodes := liveProcesses(devnet.NodeBin, hn.host.NodeConfig)
	if len(nodes) != 1 {
		hn.t.Fatalf("%d teeup-node processes run for the host (%v), want 1", len(nodes), nodes)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", nodes[0])); exe != inst.NodeBinary {
		hn.t.Fatalf("the node process runs %s, want %s", exe, inst.NodeBinary)
	}
	if pid, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin); !ok || pid != nodes[0] {
		hn.t.Fatalf("the node pid file names %d (alive %v), the node runs as %d", pid, ok, nodes[0])
	}
	agents := liveProcesses(devnet.AgentBin, hn.host.AgentConfig)
	if len(agents) != 1 {
		hn.t.Fatalf("%d teeup-agent processes run for the host (%v), want 1", len(agents), agents)
	}
	if z := zombieChildren(agents[0], devnet.NodeBin); len(z) > 0 {
		hn.t.Fatalf("the agent left zombie node processes %v", z)
	}
	if inst.DistributeBinary != "" && !hn.net.NoDistribute {
		// Distribution follows the installed release's binary.
		eventually(hn.t, 20*time.Second, "distribution runs "+inst.DistributeBinary, func() (bool, string) {
			pid, ok := devnet.ProcessAlive(hn.host, devnet.DistributeBin)
			if !ok {
				return false, "distribution not running"
			}
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			return exe == inst.DistributeBinary, "it runs " + exe
		})
	}
}

// procStat is what the handover tests read from /proc/PID/stat.
type procStat struct {
	comm  string
	state byte
	ppid  int
}

// readProcStat parses /proc/PID/stat.
func readProcStat(pid int) (procStat, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	open, closing := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
	if open < 0 || closing < open || closing+2 >= len(raw) {
		return procStat{}, false
	}
	rest := strings.Fields(string(raw[closing+2:]))
	if len(rest) < 2 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(rest[1])
	if err != nil {
		return procStat{}, false
	}
	return procStat{comm: string(raw[open+1 : closing]), state: rest[0][0], ppid: ppid}, true
}

// allPIDs lists the pids in /proc.
func allPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// liveProcesses returns the pids of live (non-zombie) processes named prog
// whose command line contains config: one host's processes.
func liveProcesses(prog, config string) []int {
	var out []int
	for _, pid := range allPIDs() {
		st, ok := readProcStat(pid)
		if !ok || st.comm != prog || st.state == 'Z' {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(cmdline), "\x00"), config) {
			out = append(out, pid)
		}
	}
	return out
}

// zombieChildren returns parent's children named prog that exited and
// were never reaped.
func zombieChildren(parent int, prog string) []int {
	var out []int
	for _, pid := range allPIDs() {
		if st, ok := readProcStat(pid); ok && st.comm == prog && st.state == 'Z' && st.ppid == parent {
			out = append(out, pid)
		}
	}
	return out
}

// onPlatform loads the enclave binary bin on the host's platform, as the
// test process: in simulation any process can, which is how these tests
// build requesters with real identities.
func (hn *handoverNet) onPlatform(bin string) *sim.Enclave {
	hn.t.Helper()
	p, err := sim.OpenPlatform(hn.host.PlatformDir)
	if err != nil {
		hn.t.Fatal(err)
	}
	e, err := p.Load(bin, sim.LoadOptions{})
	if err != nil {
		hn.t.Fatal(err)
	}
	return e
}

// impersonator is an enclave that claims another identity: it reports
// its own real identity in every local report, but Identity() returns the
// claimed one, so it can build a requester around an enclave ID that is
// not its own (NewRequester checks the ID against Identity()).
type impersonator struct {
	*sim.Enclave
	claimed tee.Identity
}

// Identity returns the claimed identity.
func (e impersonator) Identity() tee.Identity { return e.claimed }

// signedEnclaveID returns an enclave ID for (role, m) on the devnet's
// chain signed by the given Key Management Group members.
func (hn *handoverNet) signedEnclaveID(role release.Role, m tee.Measurement, signers ...string) release.EnclaveID {
	hn.t.Helper()
	id := release.EnclaveID{NetworkID: hn.net.ChainID, Role: role, MREnclave: m}
	for _, s := range signers {
		k := hn.key(s)
		id.Signatures = append(id.Signatures, release.Signature{
			Key: fmt.Sprintf("%x", k.Public().(ed25519.PublicKey)),
			Sig: fmt.Sprintf("%x", ed25519.Sign(k, id.SigningBytes())),
		})
	}
	return id
}

// requester builds a handover requester for enclave e, presenting id in
// role, that accepts any provider.
func (hn *handoverNet) requester(e tee.Enclave, role release.Role, id release.EnclaveID) *handover.Requester {
	hn.t.Helper()
	g, err := ledger.LoadGenesis(hn.net.GenesisPath())
	if err != nil {
		hn.t.Fatal(err)
	}
	r, err := handover.NewRequester(handover.RequesterConfig{
		Enclave: e, ChainID: hn.net.ChainID, KMG: g.KMG, Role: role, ID: id,
		AcceptProvider: func(release.Role, tee.Identity, *release.EnclaveID) error { return nil },
	})
	if err != nil {
		hn.t.Fatalf("new requester: %v", err)
	}
	return r
}

// fetchFrom runs one handover exchange as r against the unix socket path.
func fetchFrom(ctx context.Context, path string, r *handover.Requester) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return handover.Fetch(ctx, c, r)
}

// Frame types of the handover transport (see handover/transport.go:
// type u8 | length u32 big-endian | payload).
const (
	frameRequest   = 1
	frameChallenge = 2
	frameAnswer    = 3
	frameRefusal   = 5
)

// recordingConn records every byte written to it.
type recordingConn struct {
	net.Conn
	mu      sync.Mutex
	written bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.written.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// rawFrame is one recorded frame of the handover transport.
type rawFrame struct {
	typ byte
	raw []byte // the whole frame, header included
}

// payload returns the frame's encoded message.
func (f rawFrame) payload() []byte { return f.raw[5:] }

// frames splits recorded bytes into frames.
func frames(b []byte) ([]rawFrame, error) {
	var out []rawFrame
	for len(b) > 0 {
		if len(b) < 5 {
			return nil, fmt.Errorf("%d trailing bytes", len(b))
		}
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if len(b) < 5+n {
			return nil, fmt.Errorf("frame of %d bytes, %d left", n, len(b)-5)
		}
		out = append(out, rawFrame{typ: b[0], raw: b[:5+n]})
		b = b[5+n:]
	}
	return out, nil
}

// readRawFrame reads one frame and returns its type and payload.
func readRawFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > handover.MaxFrameSize {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}
