// Package demo runs teeup's end-to-end demonstration: it builds the node at
// two versions (their MRENCLAVEs differ), starts a 4-node devnet with
// agents and distribution, sends payments under continuous load, approves
// the upgrade on chain, and has the operators vote its schedule one at a
// time; the coordinator-free agents then run the flag day by themselves
// while the demo only observes (flagday.Observe). It measures the client
// downtime from the clients' side with its breakdown, verifies balances
// and block hashes on every node and that no acknowledged payment was
// lost, and prints a report.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
)

// Options configures the demo.
type Options struct {
	// Dir is the working directory (builds, devnet, reports).
	Dir string
	// Source is the teeup module root to build from ("" = found from the
	// working directory with 'go env GOMOD').
	Source string
	// BinDir holds the teeup-agent and teeup-distribute binaries to use
	// (default: next to this executable).
	BinDir string
	// Nodes in the devnet (default 4).
	Nodes int
	// Rate of payments per second during the demo (default 40).
	Rate float64
	// LivePeriod is how long the load keeps running on the new release
	// after every host settled the flag day (default 5s). The agents' own
	// live period (before they finalize) is the devnet's.
	LivePeriod time.Duration
	// LedgerSize, when set, fills every node's ledger to at least that
	// many bytes (payments from fresh funded accounts, before the release
	// is staged) so that the flag day runs on a ledger of that size.
	LedgerSize int64
	// NoMigration builds 1.0.0 at 2.0.0's ledger schema, so the flag day
	// changes the enclave only and runs no data migration.
	NoMigration bool
	// Keep leaves the devnet running at the end.
	Keep bool
	// Out receives the narrative and the report; Detail the flag day's
	// live progress table (default: discarded).
	Out, Detail io.Writer
}

// Check is one verified claim of the demo.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Report is the demo's outcome.
type Report struct {
	Dir     string        `json:"dir"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Checks  []Check       `json:"checks"`
	// FlagDay is the observer's last observation: every host settled,
	// from the chain's readiness records and the agents' journals (also
	// written to ObserverReport).
	FlagDay        *flagday.Observation `json:"flag_day,omitempty"`
	ObserverReport string               `json:"observer_report,omitempty"`
	// Votes are the schedule votes, one per operator.
	Votes []Vote `json:"schedule_votes,omitempty"`
	// Downtime is the client downtime with its breakdown.
	Downtime *Downtime    `json:"downtime,omitempty"`
	Load     *LoadSummary `json:"load,omitempty"`
	// Fill is what filling the ledger took (Options.LedgerSize only).
	Fill      *FillResult `json:"fill,omitempty"`
	V1, V2    string      `json:"-"`
	StepTimes []StepTime  `json:"phases"`
}

// StepTime is how long a phase of the demo took.
type StepTime struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// LoadSummary summarises the client load.
type LoadSummary struct {
	Sent, Acknowledged, Rejected, ClosedForUpgrade, Retries, Unresolved int
	Throughput                                                          float64
	P50, P99, Max                                                       time.Duration
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

func (r *Report) check(name string, err error, ok string) {
	c := Check{Name: name, OK: err == nil, Detail: ok}
	if err != nil {
		c.Detail = err.Error()
	}
	r.Checks = append(r.Checks, c)
}

// Run runs the demo and returns its report; the error is set when the
// demo could not run at all (checks that fail are in the report).
func Run(ctx context.Context, opt Options) (*Report, error) {
	if opt.Nodes == 0 {
		opt.Nodes = 4
	}
	if opt.Rate == 0 {
		opt.Rate = 40
	}
	if opt.LivePeriod == 0 {
		opt.LivePeriod = 5 * time.Second
	}
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	if opt.Detail == nil {
		opt.Detail = io.Discard
	}
	start := time.Now()
	rep := &Report{Dir: opt.Dir}
	phase := func(name string, since time.Time) {
		rep.StepTimes = append(rep.StepTimes, StepTime{Name: name, Duration: time.Since(since)})
	}
	say := func(format string, a ...any) {
		fmt.Fprintf(opt.Out, "[%5.1fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
	}
	if _, err := os.Stat(filepath.Join(opt.Dir, "net", devnet.FileName)); err == nil {
		return nil, fmt.Errorf("demo: %s already holds a demo network; remove it or pass another --dir", opt.Dir)
	}

	// 1. Build the node at two versions.
	t := time.Now()
	schemas := [2]int{V1Schema, V2Schema}
	if opt.NoMigration {
		schemas[0] = V2Schema
	}
	say("building teeup-node 1.0.0 (ledger schema %d) and 2.0.0 (schema %d) from source", schemas[0], schemas[1])
	b, err := buildVersions(ctx, opt, schemas)
	if err != nil {
		return nil, err
	}
	phase("build two node versions", t)
	say("  1.0.0 MRENCLAVE differs from 2.0.0: %t", b.v1Hash != b.v2Hash)

	// 2. A devnet of 4 hosts on version 1, supervised by agents.
	t = time.Now()
	say("starting a %d-node devnet (simulated SGX hosts, agents, ledger distribution)", opt.Nodes)
	net, err := devnet.Up(ctx, devnet.UpOptions{Dir: filepath.Join(opt.Dir, "net"), Nodes: opt.Nodes, BinDir: b.v1Dir})
	if err != nil {
		return nil, fmt.Errorf("demo: devnet: %w", err)
	}
	if !opt.Keep {
		defer func() { _ = devnet.Down(context.WithoutCancel(ctx), net) }()
	}
	phase("devnet up", t)
	say("  network %q up, node MRENCLAVE %s", net.ChainID, net.Release.NodeMREnclave.Short())
	if opt.LedgerSize > 0 {
		t = time.Now()
		say("filling every node's ledger to %d MB (payments from %d fresh accounts, as 'teeup bench payments')", opt.LedgerSize>>20, fillSenders)
		fill, err := FillLedger(ctx, net, opt.LedgerSize, opt.Out)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		rep.Fill = fill
		phase("fill the ledger", t)
		say("  every node's ledger holds at least %d MB: %d payments in %s", fill.Bytes>>20, fill.Payments, fill.Elapsed.Round(time.Second))
	}

	// 3. The new release: signed by the Key Management Group, proposed and
	// approved on chain by the Node Operators Group.
	t = time.Now()
	rel, err := devnet.StageDirRelease(net, b.v2Dir, "2.0.0")
	if err != nil {
		return nil, fmt.Errorf("demo: stage release 2.0.0: %w", err)
	}
	if err := Approve(ctx, net, rel.ReleaseFile()); err != nil {
		return nil, fmt.Errorf("demo: approve 2.0.0: %w", err)
	}
	phase("release signed, proposed, approved", t)
	say("release 2.0.0 (node MRENCLAVE %s) signed by 2 of 3 KMG keys, approved on chain by 2 of 3 node operators", rel.NodeMREnclave.Short())

	// 4. Client load during the whole upgrade.
	clients, err := clientsFor(net)
	if err != nil {
		return nil, err
	}
	users, recipients, err := userKeys(net)
	if err != nil {
		return nil, err
	}
	endLoad := make(chan struct{}) // closed: start no new payment, deliver those in flight
	type loadOut struct {
		res *loadgen.Result
		err error
	}
	loadDone := make(chan loadOut, 1)
	nodes := make([]loadgen.Node, len(clients))
	for i, c := range clients {
		nodes[i] = c
	}
	acks := &ackLog{}
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Config{
			Nodes: nodes, ChainID: net.ChainID, Accounts: users, Recipients: recipients,
			Rate: opt.Rate, Stop: endLoad, Amount: 1, DrainTimeout: 20 * time.Second,
			// Clients refused "closed for upgrade" try again within 250 ms
			// (the default backs off to 2 s): the downtime the demo reports
			// is then the network's, not the clients' own backoff.
			MaxBackoff: 250 * time.Millisecond,
			OnAck:      func(loadgen.Ack) { acks.add(time.Now()) },
		})
		loadDone <- loadOut{res, err}
	}()
	say("client load started: %d senders, %.0f payments/s, clients retry on \"closed for upgrade\"", len(users), opt.Rate)
	select {
	case <-ctx.Done(): // the load ends with ctx
		return nil, ctx.Err()
	case <-time.After(3 * time.Second):
	}

	// 5. The flag day: the operators vote its schedule one at a time, each
	// through its own host; the agents do the rest and the demo observes.
	t = time.Now()
	votesAt := time.Now()
	h, votes, err := ScheduleVotes(ctx, net, "2.0.0", ledger.MinScheduleLead+10)
	rep.Votes = votes
	for _, v := range votes {
		say("  %s voted (through host %d): schedule 2.0.0 at height %d — tx %s at height %d, %s", v.Key, v.Host, h, shortID(v.TxID), v.Height, v.Result)
	}
	if err != nil {
		return nil, fmt.Errorf("demo: schedule 2.0.0: %w", err)
	}
	phase("schedule votes (one operator at a time)", t)
	closes := ingressClosesAt(ctx, net)
	t = time.Now()
	say("flag day to 2.0.0 at height %d: no coordinator — every agent hands over at H, proves its new node, records readiness; observing (progress in %s)", h, filepath.Join(opt.Dir, "flagday-progress.log"))
	octx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	obs, obsErr := flagday.Observe(octx, flagday.ObserveOptions{Topology: flagday.FromDevnet(net), Interval: 500 * time.Millisecond, Progress: opt.Detail})
	cancel()
	phase("flag day (schedule in force → every host settled)", t)
	rep.FlagDay = obs
	if obs != nil {
		if raw, err := obs.MarshalReport(); err == nil {
			rep.ObserverReport = filepath.Join(opt.Dir, "flagday-observe.json")
			if err := os.WriteFile(rep.ObserverReport, append(raw, '\n'), 0o644); err != nil {
				rep.ObserverReport = ""
			}
		}
	}
	rep.check("flag day settled ready on every host", errors.Join(obsErr, settledReady(obs, "2.0.0", h)),
		fmt.Sprintf("observed: %s; readiness records %s", observedOutcome(obs), readinessOf(obs)))

	// 6. Stop the load; verify nothing acknowledged was lost.
	say("flag day %s on every host; letting the load run %s more on 2.0.0", observedOutcome(obs), opt.LivePeriod)
	select {
	case <-ctx.Done():
	case <-time.After(opt.LivePeriod):
	}
	close(endLoad)
	lo := <-loadDone
	rep.Downtime = BreakDown(acks.snapshot(), votesAt, time.Now(), milestones(ctx, net, obs, h, closes))
	rep.check("clients served again after the flag day", servedAgain(rep.Downtime), fmt.Sprintf("client downtime %s", rep.Downtime.Client.Round(time.Millisecond)))
	t = time.Now()
	if lo.res != nil {
		rep.Load = summarize(lo.res)
		vctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := errors.Join(lo.err, lo.res.Verify(vctx, clients[0]))
		cancel()
		rep.check("no acknowledged payment lost", err, fmt.Sprintf("%d payments acknowledged (%d retried after \"closed for upgrade\"), all committed at their receipt's height; every sender's nonce and balance exact",
			lo.res.Acknowledged, lo.res.ClosedForUpgrade))
	} else {
		rep.check("no acknowledged payment lost", fmt.Errorf("load generator: %v", lo.err), "")
	}

	// 7. Every node: the new enclave, identical blocks and balances.
	rep.check("every node runs 2.0.0", verifyVersions(ctx, net, rel), fmt.Sprintf("MRENCLAVE %s, ledger schema %d (%s)", rel.NodeMREnclave.Short(), V2Schema, migrated(schemas)))
	top, err := verifyBlocks(ctx, net)
	rep.check("identical block hashes on every node", err, fmt.Sprintf("heights 0..%d compared on %d nodes", top, len(net.Hosts)))
	n, err := verifyBalances(ctx, net)
	rep.check("identical balances on every node", err, fmt.Sprintf("%d accounts compared on %d nodes", n, len(net.Hosts)))
	d, err := verifyDistribution(ctx, net)
	rep.check("ledger distribution resumed", err, d)
	phase("verification", t)
	rep.Elapsed = time.Since(start)
	return rep, nil
}

func summarize(r *loadgen.Result) *LoadSummary {
	return &LoadSummary{Sent: r.Sent, Acknowledged: r.Acknowledged, Rejected: r.Rejected, ClosedForUpgrade: r.ClosedForUpgrade,
		Retries: r.Retries, Unresolved: len(r.Unresolved), Throughput: r.Throughput(),
		P50: r.Percentile(50), P99: r.Percentile(99), Max: r.Percentile(100)}
}

type builds struct {
	v1Dir, v2Dir   string
	v1Hash, v2Hash string
}

// buildVersions builds teeup-node twice with different version stamps and
// ledger schemas, and pairs each with the agent and distribution binaries.
func buildVersions(ctx context.Context, opt Options, schemas [2]int) (*builds, error) {
	src := opt.Source
	if src == "" {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		gomod := strings.TrimSpace(string(out))
		if err != nil || gomod == "" || gomod == os.DevNull {
			return nil, errors.New("demo: builds the node from source at two versions: run it from the teeup checkout (Go 1.26 on PATH), or pass --source")
		}
		src = filepath.Dir(gomod)
	}
	binDir := opt.BinDir
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		binDir = filepath.Dir(exe)
	}
	v1, v2, err := buildNodeVersionsAt(ctx, src, binDir, filepath.Join(opt.Dir, "build"), "", schemas)
	if err != nil {
		return nil, err
	}
	b := &builds{v1Dir: v1, v2Dir: v2}
	if b.v1Hash, err = fileHash(filepath.Join(b.v1Dir, devnet.NodeBin)); err != nil {
		return nil, err
	}
	if b.v2Hash, err = fileHash(filepath.Join(b.v2Dir, devnet.NodeBin)); err != nil {
		return nil, err
	}
	return b, nil
}

// migrated says whether the flag day between the two schemas migrated the
// ledger.
func migrated(schemas [2]int) string {
	if schemas[0] == schemas[1] {
		return "no migration"
	}
	return fmt.Sprintf("migrated from %d", schemas[0])
}

// Ledger schemas of the two node versions the demo builds: 1.0.0 runs the
// initial layout and 2.0.0 the newest this source knows, so a flag day
// runs every forward migration (the account history index, the at-rest
// encryption of user records).
const (
	V1Schema = 1
	V2Schema = 3
)

// BuildNodeVersions builds teeup-node from the module at src twice —
// 1.0.0 pinned to ledger schema V1Schema and 2.0.0 at V2Schema, so their
// MRENCLAVEs differ and 2.0.0 migrates — into dir/v1 and dir/v2, each
// beside copies of binDir's teeup-agent and teeup-distribute (a flag day
// changes the node, not the agent). tags are go build tags ("" for a
// default build; the e2e tests pass "faults"). It returns the two
// directories.
func BuildNodeVersions(ctx context.Context, src, binDir, dir, tags string) (v1Dir, v2Dir string, err error) {
	return buildNodeVersionsAt(ctx, src, binDir, dir, tags, [2]int{V1Schema, V2Schema})
}

// buildNodeVersionsAt is BuildNodeVersions with the two versions' ledger
// schemas given.
func buildNodeVersionsAt(ctx context.Context, src, binDir, dir, tags string, schemas [2]int) (v1Dir, v2Dir string, err error) {
	v1Dir, v2Dir = filepath.Join(dir, "v1"), filepath.Join(dir, "v2")
	for i, out := range []string{v1Dir, v2Dir} {
		v := fmt.Sprintf("%d.0.0", i+1)
		schema := schemas[i]
		if err := os.MkdirAll(out, 0o755); err != nil {
			return "", "", err
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", tags,
			"-ldflags", fmt.Sprintf("-X github.com/teeup/teeup/internal/buildinfo.Version=%s -X github.com/teeup/teeup/internal/buildinfo.Schema=%d", v, schema),
			"-o", filepath.Join(out, devnet.NodeBin), "./cmd/teeup-node")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("demo: build teeup-node %s: %w\n%s", v, err, b)
		}
		for _, prog := range []string{devnet.AgentBin, devnet.DistributeBin} {
			if err := fsutil.CopyFile(filepath.Join(binDir, prog), filepath.Join(out, prog), 0o755); err != nil {
				return "", "", fmt.Errorf("demo: %w (run 'make build' first, or pass --bin)", err)
			}
		}
	}
	return v1Dir, v2Dir, nil
}

// Approve proposes a signed release on chain with the devnet's nog-1 key
// and approves it with nog-2 (the quorum), through node 1's admin socket.
func Approve(ctx context.Context, net *devnet.Network, releaseFile string) error {
	sr, err := release.Load(releaseFile)
	if err != nil {
		return err
	}
	raw, err := sr.Marshal()
	if err != nil {
		return err
	}
	hash, err := ledger.ManifestHash(sr)
	if err != nil {
		return err
	}
	h, err := net.Host(1)
	if err != nil {
		return err
	}
	a := nodeapi.NewAdminClient(h.AdminSocket)
	defer a.Close()
	for i, step := range []struct {
		kind    ledger.TxKind
		payload []byte
	}{
		{ledger.TxProposeRelease, raw},
		{ledger.TxApproveRelease, ledger.EncodeReleaseApproval(ledger.ReleaseApproval{Version: sr.Manifest.Version, ManifestHash: hash})},
	} {
		if _, err := castVote(ctx, net, a, fmt.Sprintf("nog-%d", i+1), step.kind, step.payload); err != nil {
			return err
		}
	}
	return nil
}
