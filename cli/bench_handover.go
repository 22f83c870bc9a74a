package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/handover"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/node"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// handoverBenchOptions are the flags of 'teeup bench handover'.
type handoverBenchOptions struct {
	devnetDir  string
	nodeID     uint64
	version    string
	iterations int
	runs       int
	restore    bool
	asJSON     bool
}

func (o handoverBenchOptions) validate() error {
	var errs []error
	if o.devnetDir == "" {
		errs = append(errs, errors.New("--devnet DIR is required"))
	}
	if o.nodeID == 0 {
		errs = append(errs, errors.New("--node-id must be positive"))
	}
	if o.version != "" {
		if err := release.ValidateVersion(o.version); err != nil {
			errs = append(errs, fmt.Errorf("--version: %w", err))
		}
	}
	if o.iterations < 1 {
		errs = append(errs, fmt.Errorf("--iterations %d: want at least 1", o.iterations))
	}
	if o.runs < 0 {
		errs = append(errs, fmt.Errorf("--runs %d: want 0 or more", o.runs))
	}
	if o.runs == 0 && o.restore {
		errs = append(errs, errors.New("--restore needs at least one --runs"))
	}
	return errors.Join(errs...)
}

func newBenchHandoverCmd() *cobra.Command {
	o := handoverBenchOptions{devnetDir: os.Getenv("TEEUP_DEVNET"), nodeID: 1, iterations: 100, runs: 1}
	cmd := &cobra.Command{
		Use:   "handover --devnet DIR [--version V] [--iterations N] [--runs N] [--restore] [--json]",
		Short: "Time the key handover: the key exchange alone, and the whole node swap through the agent",
		Long: `Measure one host's key handover on a devnet whose agent has staged an approved release newer
than the one it runs (default: the newest such release; --version picks one).

The key exchange alone: the old node's, the agent's and the new node's enclaves are loaded in
this process on the host's simulated platform, from the installed, agent and staged binaries,
and run both legs of the handover over unix sockets --iterations times: old node -> agent, the
agent sealing and unsealing what it holds, agent -> new node, the new node sealing. The secret
is synthetic keys of the node's key format, never the node's. Process starts are excluded.

The whole swap: the agent performs the upgrade --runs times (rolling back in between), and
the steps' timings are read from its journal. The swap is the time from the start of stopping
the old node to the new node serving with its keys sealed; the observed gap is the same seen
from outside, polling the node's admin socket. With --runs 0 nothing is upgraded. The devnet is
left upgraded (not finalized) unless --restore rolls the last run back.

Simulated platforms only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return fmt.Errorf("bench handover: %w", err)
			}
			r, err := runHandoverBench(cmd.Context(), o, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("bench handover: %w", err)
			}
			out := stdoutOf(cmd)
			if o.asJSON {
				return printJSON(out, r)
			}
			return writeHandoverBench(out, r)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.devnetDir, "devnet", o.devnetDir, "devnet directory (env TEEUP_DEVNET)")
	f.Uint64Var(&o.nodeID, "node-id", o.nodeID, "which host of the devnet")
	f.StringVar(&o.version, "version", "", "staged release to upgrade to (default: the newest staged release newer than the installed one)")
	f.IntVar(&o.iterations, "iterations", o.iterations, "key exchanges to time")
	f.IntVar(&o.runs, "runs", o.runs, "whole upgrades to time (rolled back in between; 0: none)")
	f.BoolVar(&o.restore, "restore", false, "roll the last upgrade back, so the devnet runs the old version again")
	f.BoolVar(&o.asJSON, "json", false, "print JSON")
	return cmd
}

// handoverBenchReport is what 'teeup bench handover' measured.
type handoverBenchReport struct {
	Devnet   string                  `json:"devnet"`
	NodeID   uint64                  `json:"node_id"`
	From     agentapi.Installation   `json:"from"`
	To       agentapi.Installation   `json:"to"`
	Exchange *handoverExchangeReport `json:"exchange"`
	Swaps    []handoverSwapRun       `json:"swaps"`
	// Final is what the host runs afterwards.
	Final string `json:"final"`
}

// handoverExchangeReport times the key exchange without process starts.
type handoverExchangeReport struct {
	Platform    string          `json:"platform"`
	Iterations  int             `json:"iterations"`
	SecretBytes int             `json:"secret_bytes"`
	Steps       []durationStats `json:"steps"`
}

// durationStats summarises one step's durations.
type durationStats struct {
	Step string        `json:"step"`
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Min  time.Duration `json:"min_ns"`
	Max  time.Duration `json:"max_ns"`
}

// newDurationStats summarises ds (at least one).
func newDurationStats(step string, ds []time.Duration) durationStats {
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	p := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return durationStats{Step: step, Mean: sum / time.Duration(len(s)), P50: p(0.5), P99: p(0.99), Min: s[0], Max: s[len(s)-1]}
}

// handoverSwapRun is one whole upgrade through the agent.
type handoverSwapRun struct {
	UpgradeID string `json:"upgrade_id"`
	// Swap runs from the start of stopping the old node to the end of
	// waiting for the new node to serve (journal).
	Swap time.Duration `json:"swap_ns"`
	// ObservedGap runs from the old node's last answer to the new node's
	// first, polling the admin socket; 0 if not observed.
	ObservedGap time.Duration `json:"observed_gap_ns"`
	// Upgrade runs from the first step's start to the last step's end.
	Upgrade time.Duration         `json:"upgrade_ns"`
	Steps   []agentapi.StepTiming `json:"steps"`
}

// handoverBenchHost is what the benchmark needs of the devnet host.
type handoverBenchHost struct {
	net     *devnet.Network
	host    *devnet.Host
	genesis *ledger.Genesis
	agent   *agentapi.Client
	admin   *nodeapi.AdminClient
}

func runHandoverBench(ctx context.Context, o handoverBenchOptions, progress io.Writer) (*handoverBenchReport, error) {
	n, err := devnet.Load(o.devnetDir)
	if err != nil {
		return nil, err
	}
	h, err := n.Host(o.nodeID)
	if err != nil {
		return nil, err
	}
	if !h.AgentManaged {
		return nil, fmt.Errorf("host %d of %s runs without an upgrade agent: there is no handover to time", h.ID, n.Dir)
	}
	g, err := ledger.LoadGenesis(n.GenesisPath())
	if err != nil {
		return nil, err
	}
	bh := &handoverBenchHost{net: n, host: h, genesis: g, agent: agentapi.NewClient(h.AgentSocket), admin: nodeapi.NewAdminClient(h.AdminSocket)}
	defer bh.agent.Close()
	defer bh.admin.Close()

	st, err := bh.agent.Status(ctx)
	if err != nil {
		return nil, err
	}
	if up := st.Upgrade; up != nil && !up.Terminal() {
		return nil, fmt.Errorf("upgrade %s is at phase %s: finalize or roll it back first ('teeup upgrade finalize' or 'teeup upgrade rollback')", up.ID, up.Phase)
	}
	target, err := bh.target(st, o.version)
	if err != nil {
		return nil, err
	}
	r := &handoverBenchReport{Devnet: n.Dir, NodeID: h.ID, From: st.Installed, To: target, Final: st.Installed.Version}

	fmt.Fprintf(progress, "timing %d key exchanges %s -> %s on %s\n", o.iterations, st.Installed.Version, target.Version, h.PlatformDir)
	if r.Exchange, err = bh.measureExchange(ctx, st, target, o.iterations); err != nil {
		return nil, err
	}
	for i := 0; i < o.runs; i++ {
		if i > 0 {
			if err := bh.rollback(ctx, r.Swaps[i-1].UpgradeID); err != nil {
				return r, err
			}
		}
		fmt.Fprintf(progress, "upgrade %d of %d: %s -> %s through the agent\n", i+1, o.runs, st.Installed.Version, target.Version)
		run, err := bh.swap(ctx, st.Installed, target)
		if err != nil {
			return r, err
		}
		r.Swaps = append(r.Swaps, *run)
		r.Final = target.Version
	}
	if o.restore && len(r.Swaps) > 0 {
		if err := bh.rollback(ctx, r.Swaps[len(r.Swaps)-1].UpgradeID); err != nil {
			return r, err
		}
		r.Final = st.Installed.Version
	}
	return r, nil
}

// target returns the staged release to upgrade to: version, or the newest
// staged release newer than the installed one.
func (bh *handoverBenchHost) target(st *agentapi.Status, version string) (agentapi.Installation, error) {
	if version == "" {
		for _, v := range st.Staged {
			if c, err := release.CompareVersions(v, st.Installed.Version); err != nil || c <= 0 {
				continue
			}
			if version == "" {
				version = v
			} else if c, err := release.CompareVersions(v, version); err == nil && c > 0 {
				version = v
			}
		}
		if version == "" {
			return agentapi.Installation{}, fmt.Errorf("the agent of host %d has no staged release newer than the installed %s (staged: %v): stage and approve one first",
				bh.host.ID, st.Installed.Version, st.Staged)
		}
	}
	if version == st.Installed.Version {
		return agentapi.Installation{}, fmt.Errorf("host %d already runs %s", bh.host.ID, version)
	}
	if !slices.Contains(st.Staged, version) {
		return agentapi.Installation{}, fmt.Errorf("release %s is not staged on host %d (staged: %v)", version, bh.host.ID, st.Staged)
	}
	staged := layout.Agent(bh.host.AgentDir).Release(version)
	sr, err := release.Load(staged.Manifest())
	if err != nil {
		return agentapi.Installation{}, err
	}
	return agentapi.Installation{Version: version, ReleaseFile: staged.Manifest(),
		NodeBinary: staged.NodeBinary(), NodeMREnclave: sr.Manifest.Node.MREnclave}, nil
}

// benchEnclaves are the handover's three enclaves, loaded in this process.
type benchEnclaves struct {
	oldNode, agent, newNode tee.Enclave
	agentID, nodeID         release.EnclaveID
}

// loadEnclaves loads the installed node, the running agent and the target
// node on the host's platform, with the agent's and the target node's
// network-signed enclave IDs.
func (bh *handoverBenchHost) loadEnclaves(st *agentapi.Status, target agentapi.Installation) (*benchEnclaves, *sim.Platform, error) {
	plat, err := sim.OpenPlatform(bh.host.PlatformDir)
	if err != nil {
		return nil, nil, err
	}
	load := func(what, bin string, want tee.Measurement) (tee.Enclave, error) {
		e, err := plat.Load(bin, sim.LoadOptions{})
		if err != nil {
			return nil, fmt.Errorf("load the %s enclave %s: %w", what, bin, err)
		}
		if got := e.Identity().UniqueID; got != want {
			return nil, fmt.Errorf("the %s binary %s measures %s, expected %s", what, bin, got.Short(), want.Short())
		}
		return e, nil
	}
	var be benchEnclaves
	if be.oldNode, err = load("installed node", st.Installed.NodeBinary, st.Installed.NodeMREnclave); err != nil {
		return nil, nil, err
	}
	if be.agent, err = load("agent", layout.Release(bh.net.Release.Dir).AgentBinary(), st.MREnclave); err != nil {
		return nil, nil, err
	}
	if be.newNode, err = load("new node", target.NodeBinary, target.NodeMREnclave); err != nil {
		return nil, nil, err
	}
	found := false
	for _, f := range []string{st.Installed.ReleaseFile, target.ReleaseFile} {
		sr, err := release.Load(f)
		if err != nil {
			return nil, nil, err
		}
		if sr.AgentID.MREnclave == st.MREnclave && !found {
			be.agentID, found = sr.AgentID, true
		}
		if f == target.ReleaseFile {
			be.nodeID = sr.NodeID
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("no release signs the running agent %s", st.MREnclave.Short())
	}
	return &be, plat, nil
}

// measureExchange times the handover's steps in this process.
func (bh *handoverBenchHost) measureExchange(ctx context.Context, st *agentapi.Status, target agentapi.Installation, iterations int) (*handoverExchangeReport, error) {
	be, plat, err := bh.loadEnclaves(st, target)
	if err != nil {
		return nil, err
	}
	secret, err := syntheticKeys(bh.genesis.ChainID, bh.host.ID)
	if err != nil {
		return nil, err
	}
	// The two legs listen where a host's node and agent serve handovers:
	// a stand-in node data directory and agent directory.
	nodeDir, err := os.MkdirTemp("", "teeup-bench-handover-node-")
	if err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	defer os.RemoveAll(nodeDir)
	agentDir, err := os.MkdirTemp("", "teeup-bench-handover-agent-")
	if err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	defer os.RemoveAll(agentDir)
	oldSock, agentSock := layout.Node(nodeDir).HandoverSocket(), layout.Agent(agentDir).HandoverSocket()
	oldLn, err := net.Listen("unix", oldSock)
	if err != nil {
		return nil, err
	}
	defer oldLn.Close()
	agentLn, err := net.Listen("unix", agentSock)
	if err != nil {
		return nil, err
	}
	defer agentLn.Close()

	chain, kmg := bh.genesis.ChainID, bh.genesis.KMG
	oldMR, newMR := be.oldNode.Identity().UniqueID, be.newNode.Identity().UniqueID
	// The old node's provider lives as long as the node (made once).
	oldProvider, err := handover.NewProvider(handover.ProviderConfig{
		Enclave: be.oldNode, ChainID: chain, KMG: kmg, Role: release.RoleNode, Secret: secret,
		AcceptRequester: handover.AgentPeer(false).AcceptRequester,
	})
	if err != nil {
		return nil, err
	}
	const agentAD, nodeAD = "teeup bench handover agent", "teeup bench handover node"
	names := []string{"old node to agent", "agent seals + unseals", "agent to new node", "new node seals", "total"}
	times := make([][]time.Duration, len(names))
	for range iterations {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var step [4]time.Duration
		t0 := time.Now()
		r1, err := handover.NewRequester(handover.RequesterConfig{
			Enclave: be.agent, ChainID: chain, KMG: kmg, Role: release.RoleAgent, ID: be.agentID,
			AcceptProvider: handover.NodePeer(oldMR, false).AcceptProvider,
		})
		if err != nil {
			return nil, err
		}
		held, err := benchLeg(ctx, oldLn, oldSock, oldProvider, r1)
		if err != nil {
			return nil, fmt.Errorf("old node to agent: %w", err)
		}
		t1 := time.Now()
		blob, err := tee.Seal(be.agent, tee.SealUnique, held, []byte(agentAD))
		if err != nil {
			return nil, err
		}
		held, err = tee.Unseal(be.agent, blob, []byte(agentAD))
		if err != nil {
			return nil, err
		}
		t2 := time.Now()
		p2, err := handover.NewProvider(handover.ProviderConfig{
			Enclave: be.agent, ChainID: chain, KMG: kmg, Role: release.RoleAgent, ID: &be.agentID, Secret: held,
			AcceptRequester: handover.NodePeer(newMR, false).AcceptRequester,
		})
		if err != nil {
			return nil, err
		}
		r2, err := handover.NewRequester(handover.RequesterConfig{
			Enclave: be.newNode, ChainID: chain, KMG: kmg, Role: release.RoleNode, ID: be.nodeID,
			AcceptProvider: handover.AgentPeer(false).AcceptProvider,
		})
		if err != nil {
			return nil, err
		}
		got, err := benchLeg(ctx, agentLn, agentSock, p2, r2)
		if err != nil {
			return nil, fmt.Errorf("agent to new node: %w", err)
		}
		t3 := time.Now()
		if _, err := tee.Seal(be.newNode, tee.SealUnique, got, []byte(nodeAD)); err != nil {
			return nil, err
		}
		t4 := time.Now()
		if string(got) != string(secret) {
			return nil, errors.New("the new node received other keys than the old node sent")
		}
		step = [4]time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3)}
		for i, d := range step {
			times[i] = append(times[i], d)
		}
		times[4] = append(times[4], t4.Sub(t0))
	}
	rep := &handoverExchangeReport{Platform: plat.Dir(), Iterations: iterations, SecretBytes: len(secret)}
	for i, name := range names {
		rep.Steps = append(rep.Steps, newDurationStats(name, times[i]))
	}
	return rep, nil
}

// syntheticKeys returns encoded node keys of random value: the handover's
// secret at its real size, never the node's.
func syntheticKeys(chainID string, nodeID uint64) ([]byte, error) {
	_, nk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	lk, err := ledger.NewLedgerKey()
	if err != nil {
		return nil, err
	}
	return (&node.Keys{ChainID: chainID, NodeID: nodeID, NodeKey: nk, LedgerKey: lk}).Encode(), nil
}

// benchLeg runs one exchange: p serves the next connection on ln while r
// fetches over a new connection to path.
func benchLeg(ctx context.Context, ln net.Listener, path string, p *handover.Provider, r *handover.Requester) ([]byte, error) {
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		served <- handover.Serve(ctx, c, p)
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	secret, err := handover.Fetch(ctx, c, r)
	c.Close()
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	return secret, err
}

// swap performs one upgrade through the agent and reads its timings from
// the journal, while watching the node's admin socket from outside.
func (bh *handoverBenchHost) swap(ctx context.Context, from, to agentapi.Installation) (*handoverSwapRun, error) {
	watchCtx, stopWatch := context.WithCancel(ctx)
	gap := make(chan time.Duration, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		gap <- bh.watchGap(watchCtx, from.NodeMREnclave, to.NodeMREnclave)
	}()
	rec, err := bh.agent.Upgrade(ctx, agentapi.UpgradeRequest{Version: to.Version})
	if err != nil {
		stopWatch()
		wg.Wait()
		return nil, fmt.Errorf("upgrade to %s: %w", to.Version, err)
	}
	// The watcher stops by itself once it saw the new node, or after a while.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var observed time.Duration
	select {
	case observed = <-gap:
	case <-wctx.Done():
		stopWatch()
		observed = <-gap
	}
	stopWatch()
	wg.Wait()

	run := &handoverSwapRun{UpgradeID: rec.ID, ObservedGap: observed, Steps: rec.Steps}
	var swapStart, swapEnd, first, last time.Time
	for i, s := range rec.Steps {
		end := s.Started.Add(s.Duration)
		if i == 0 || s.Started.Before(first) {
			first = s.Started
		}
		if end.After(last) {
			last = end
		}
		switch s.Phase {
		case agentapi.PhaseOldStopped:
			swapStart = s.Started
		case agentapi.PhaseNewServing:
			swapEnd = end
		}
	}
	if swapStart.IsZero() || swapEnd.IsZero() {
		return nil, fmt.Errorf("upgrade %s journalled no %s or %s step (phase %s)", rec.ID, agentapi.PhaseOldStopped, agentapi.PhaseNewServing, rec.Phase)
	}
	run.Swap, run.Upgrade = swapEnd.Sub(swapStart), last.Sub(first)
	return run, nil
}

// watchGap polls the node's admin status until it sees measurement to,
// and returns the time from the last answer as from to the first as to (0
// if it saw neither, or ctx ended first).
func (bh *handoverBenchHost) watchGap(ctx context.Context, from, to tee.Measurement) time.Duration {
	var lastOld time.Time
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		st, err := bh.admin.Status(rctx)
		now := time.Now()
		cancel()
		if err == nil {
			switch st.MREnclave {
			case from:
				lastOld = now
			case to:
				if lastOld.IsZero() {
					return 0
				}
				return now.Sub(lastOld)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Millisecond):
		}
	}
	return 0
}

// rollback rolls upgrade id back, and waits until the next second so the
// next upgrade's id (which names the second it began) differs.
func (bh *handoverBenchHost) rollback(ctx context.Context, id string) error {
	rec, err := bh.agent.Rollback(ctx, agentapi.RollbackRequest{Reason: "teeup bench handover"})
	if err != nil {
		return fmt.Errorf("roll back %s: %w", id, err)
	}
	if rec.ID != id || rec.Phase != agentapi.PhaseRolledBack {
		return fmt.Errorf("roll back %s: the agent reports upgrade %s at phase %s", id, rec.ID, rec.Phase)
	}
	next := time.Now().Truncate(time.Second).Add(time.Second)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(next)):
	}
	return nil
}

// writeHandoverBench prints the report as tables.
func writeHandoverBench(w io.Writer, r *handoverBenchReport) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "key handover on host %d of %s: %s -> %s\n\n", r.NodeID, r.Devnet, r.From.Version, r.To.Version)
	e := r.Exchange
	fmt.Fprintf(w, "key exchange alone: %d iterations in this process, the three enclaves on %s,\na synthetic %d-byte secret, both legs over unix sockets (no process start)\n",
		e.Iterations, e.Platform, e.SecretBytes)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "STEP\tMEAN\tP50\tP99\tMIN\tMAX\t")
	for _, s := range e.Steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Step, ms(s.Mean), ms(s.P50), ms(s.P99), ms(s.Min), ms(s.Max))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Swaps) == 0 {
		fmt.Fprintln(w, "\nwhole swap: not measured (--runs 0)")
		return nil
	}
	fmt.Fprintf(w, "\nwhole swap through the agent: %d run(s), step timings from its journal\n", len(r.Swaps))
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	head := []string{"STEP"}
	for i := range r.Swaps {
		head = append(head, fmt.Sprintf("RUN %d", i+1))
	}
	fmt.Fprintln(tw, strings.Join(append(head, "MEAN"), "\t")+"\t")
	row := func(name string, get func(handoverSwapRun) (time.Duration, bool)) {
		cells := []string{name}
		var sum time.Duration
		n := 0
		for _, run := range r.Swaps {
			d, ok := get(run)
			if !ok {
				cells = append(cells, "-")
				continue
			}
			cells = append(cells, ms(d))
			sum += d
			n++
		}
		mean := "-"
		if n > 0 {
			mean = ms(sum / time.Duration(n))
		}
		fmt.Fprintln(tw, strings.Join(append(cells, mean), "\t")+"\t")
	}
	for _, p := range []agentapi.Phase{agentapi.PhaseDistributionStopped, agentapi.PhaseSnapshotTaken, agentapi.PhaseKeysHeld,
		agentapi.PhaseOldStopped, agentapi.PhaseNewStarted, agentapi.PhaseNewServing, agentapi.PhaseCompleted} {
		row(string(p), func(run handoverSwapRun) (time.Duration, bool) {
			for _, s := range run.Steps {
				if s.Phase == p {
					return s.Duration, true
				}
			}
			return 0, false
		})
	}
	row("swap: old stops -> new serves", func(run handoverSwapRun) (time.Duration, bool) { return run.Swap, true })
	row("observed gap (admin socket)", func(run handoverSwapRun) (time.Duration, bool) { return run.ObservedGap, run.ObservedGap > 0 })
	row("whole upgrade", func(run handoverSwapRun) (time.Duration, bool) { return run.Upgrade, true })
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nhost %d now runs %s", r.NodeID, r.Final)
	if r.Final == r.To.Version {
		fmt.Fprint(w, " (upgrade completed, not finalized: 'teeup upgrade finalize' or 'teeup upgrade rollback')")
	}
	fmt.Fprintln(w)
	return nil
}
