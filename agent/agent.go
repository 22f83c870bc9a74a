// Package agent is teeup-agent, the seed's "DCUpgrade": an enclave on each
// host that supervises the node (and ledger distribution), watches the
// chain through its node for network-signed, operator-approved releases,
// downloads and verifies them, and moves the node's application keys from
// the old node enclave to the new one through the key handover, with every
// step journalled so that a crash at any point ends, after restart, in a
// completed upgrade or a rollback.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/unixsock"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/boot"
)

// Options carries what Run needs besides the configuration.
type Options struct {
	Stderr io.Writer
	Logger *slog.Logger
	// Faults are failure-injection points (tests only; nil means none).
	Faults Faults
}

// Agent is a running teeup-agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	faults   Faults
	network  *release.Network
	dir      layout.Agent
	nodeAt   nodeFiles
	enclave  tee.Enclave
	identity tee.Identity
	journal  *journalStore
	host     *realHost
	upgrader *Upgrader
	chain    chainView
	// flagDay drives this host's part of a flag day (agent/decide).
	flagDay *flagDay
	metrics *metrics
	self    *selfDriver // the agent's own upgrade (self.go)
	// prehashed is the schedule (version@height) for which a pass of
	// hashing the ledger ahead last started, prehashStarted when the last
	// pass started (watch.go; only the watcher touches them); prehashing
	// is set while a pass runs.
	prehashed      string
	prehashStarted time.Time
	prehashing     atomic.Bool

	opMu    sync.Mutex // serialises upgrade operations (API, watcher, resume)
	stageMu sync.Mutex // serialises staging (API and watcher)

	// inflight cancels the upgrade attempt currently running, so that a
	// rollback request preempts it instead of waiting for it to time out.
	inflightMu sync.Mutex
	inflight   context.CancelFunc
}

// Run starts the agent and serves until ctx ends.
func Run(ctx context.Context, cfg Config, opts Options) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(opts.Stderr, &slog.HandlerOptions{Level: logLevel(cfg.LogLevel)}))
	}
	if opts.Faults == nil {
		opts.Faults = noFaults{}
	}
	a := &Agent{cfg: cfg, log: opts.Logger.With("agent", cfg.NodeID), faults: opts.Faults}
	return a.run(ctx, opts)
}

func logLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *Agent) run(ctx context.Context, opts Options) error {
	netw, err := release.LoadNetwork(a.cfg.Genesis)
	if err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	a.network = netw
	if a.nodeAt, err = a.cfg.resolveNode(); err != nil {
		return err
	}
	a.dir = layout.Agent(a.cfg.Dir)
	if err := fsutil.PrivateDir(a.dir.Dir()); err != nil {
		return fmt.Errorf("agent dir: %w", err)
	}
	plat, err := boot.Open(boot.Options{Program: "teeup-agent", PlatformDir: a.cfg.Platform, Debug: a.cfg.EnclaveDebug, Warnings: opts.Stderr})
	if err != nil {
		return err
	}
	a.enclave, a.identity = plat.Enclave, plat.Enclave.Identity()
	a.log.Info("agent enclave started", "mrenclave", a.identity.UniqueID.String(), "version", buildinfo.Version, "platform", plat.Name)

	j, existed, err := openJournal(a.dir.Journal())
	if err != nil {
		return err
	}
	a.journal = j
	if !existed {
		inst, err := a.installInitial()
		if err != nil {
			return err
		}
		if err := j.update(func(jj *Journal) error { jj.Installed = inst; return nil }); err != nil {
			return err
		}
		a.log.Info("initial release installed", "version", inst.Version, "mrenclave", inst.NodeMREnclave.Short())
	}
	if a.metrics, err = newMetrics(); err != nil {
		return err
	}
	a.metrics.info.WithLabelValues(a.identity.UniqueID.String(), buildinfo.Version).Set(1)
	// A self-upgrade in flight first: hand the process to the new agent,
	// or, as the new agent, install the state handed to it.
	a.self = newSelfDriver(a, a.metrics)
	if err := a.self.atStart(ctx); err != nil {
		return err
	}
	if _, err := a.ownEnclaveID(); err != nil {
		return err
	}

	a.host = &realHost{
		cfg: a.cfg, dir: a.dir, nodeAt: a.nodeAt, log: a.log, faults: a.faults, enclave: a.enclave, network: netw,
		node:         newSupervisor(layout.NodeProgram, a.dir.NodePID(), a.log),
		agentID:      a.ownEnclaveID,
		serveTimeout: time.Duration(a.cfg.ServeTimeout),
	}
	if a.cfg.Distribute != nil {
		a.host.dist = newSupervisor(layout.DistributeProgram, a.dir.DistributePID(), a.log)
	}
	a.upgrader = newUpgrader(a.journal, a.host, a.log)
	a.chain = newNodeChain(a.nodeAt.adminSocket)

	// Desired processes follow the journal: during an upgrade, the node to
	// run depends on how far it came.
	jj := a.journal.get()
	nodeInst := jj.Installed
	runDist := true
	if up := jj.Upgrade; up != nil && !up.Terminal() && up.Phase != PhaseCompleted {
		i := phaseIndex(up.Phase)
		switch {
		case i >= phaseIndex(PhaseOldStopped):
			nodeInst = up.To
		default:
			nodeInst = up.From
		}
		runDist = i < phaseIndex(PhaseDistributionStopped)
		if i >= phaseIndex(PhaseOldStopped) {
			if err := a.host.serveKeys(ctx, up.ID, up.To); err != nil {
				a.log.Warn("serve held keys", "err", err)
			}
		}
	}
	// The supervisor verifies the binary before it starts it; one that does
	// not verify stays stopped, reported in the status, and the agent
	// serves on.
	if !(jj.Upgrade != nil && jj.Upgrade.Phase == PhaseOldStopped) {
		a.host.node.set(a.host.nodeSpec(nodeInst))
	}
	if a.host.dist != nil && runDist {
		a.host.dist.set(a.host.distSpec(jj.Installed))
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.host.node.run(ctx, 500*time.Millisecond) }()
	if a.host.dist != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.host.dist.run(ctx, time.Second) }()
	}

	ln, err := unixsock.Listen(a.dir.Socket())
	if err != nil {
		return err
	}
	fd, err := a.newFlagDay()
	if err != nil {
		return err
	}
	a.flagDay = fd
	srv := &http.Server{Handler: a.mux(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent API stopped", "err", err)
		}
	}()
	a.log.Info("agent serving", "socket", a.dir.Socket(), "installed", jj.Installed.Version)
	auth, err := newChainAuth(a.cfg.NodeID, a.cfg.AdminOperators, nodeapi.NewAdminClient(a.nodeAt.adminSocket).Releases, a.log)
	if err != nil {
		return err
	}
	stopRemote, err := a.startRemote(auth.Policy)
	if err != nil {
		_ = srv.Close()
		return err
	}
	defer stopRemote()

	// An upgrade interrupted by a crash is resumed (or rolled back).
	if up := jj.Upgrade; up != nil && !up.Terminal() && up.Phase != PhaseCompleted {
		wg.Add(1)
		go func() { defer wg.Done(); a.resumeAfterRestart(ctx) }()
	}
	if *a.cfg.AutoUpgrade {
		wg.Add(1)
		go func() { defer wg.Done(); a.watch(ctx) }()
		if !a.cfg.FlagDay.Coordinated {
			wg.Add(1)
			go func() { defer wg.Done(); a.runFlagDay(ctx, fd) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.self.follow(ctx, time.Duration(a.cfg.PollInterval)) }()
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_ = srv.Shutdown(sctx)
	cancel()
	wg.Wait()
	a.stopChildren(context.Cause(ctx))
	return nil
}

// resumeAfterRestart finishes an interrupted upgrade; if it cannot be
// finished, it rolls back, so a crash ends in one or the other.
func (a *Agent) resumeAfterRestart(ctx context.Context) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	a.log.Info("resuming an interrupted upgrade", "id", a.journal.get().Upgrade.ID, "phase", a.journal.get().Upgrade.Phase)
	for attempt := 1; attempt <= 3; attempt++ {
		rec, err := a.upgrader.Resume(ctx)
		if err == nil {
			a.host.stopServing(rec.ID)
			return
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("resume failed", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	if _, err := a.upgrader.Rollback(ctx, "could not resume after restart: "+a.journal.get().Upgrade.Error, false); err != nil {
		a.log.Error("rollback after failed resume", "err", err)
	}
}

// installInitial verifies the configured initial release and its binary.
func (a *Agent) installInitial() (Installation, error) {
	sr, err := release.Load(a.cfg.InitialRelease)
	if err != nil {
		return Installation{}, fmt.Errorf("initial release: %w", err)
	}
	if err := sr.Verify(a.network.KMG); err != nil {
		return Installation{}, fmt.Errorf("initial release: %w", err)
	}
	if sr.Manifest.NetworkID != a.network.ChainID {
		return Installation{}, fmt.Errorf("initial release is for network %q, this is %q", sr.Manifest.NetworkID, a.network.ChainID)
	}
	id, err := release.VerifyBinary(a.cfg.InitialNodeBinary, sr.Manifest.Node)
	if err != nil {
		return Installation{}, fmt.Errorf("initial node binary: %w", err)
	}
	return Installation{Version: sr.Manifest.Version, ReleaseFile: a.cfg.InitialRelease, NodeBinary: a.cfg.InitialNodeBinary, NodeMREnclave: id.UniqueID}, nil
}

// ownEnclaveID returns this agent's network-signed enclave ID: the Key
// Management Group's statement that this MRENCLAVE is the network's agent.
// Without it no node hands keys over. It is found once in a release the
// agent knows (installed, staged, or part of an upgrade), verified, and
// kept in the agent directory (layout.Agent.EnclaveIDCache), so later releases may ship another agent
// build without stranding this one.
func (a *Agent) ownEnclaveID() (*release.EnclaveID, error) {
	cache := a.dir.EnclaveIDCache()
	if raw, err := os.ReadFile(cache); err == nil {
		var id release.EnclaveID
		if err := json.Unmarshal(raw, &id); err == nil && id.MREnclave == a.identity.UniqueID &&
			id.Verify(a.network.KMG, a.network.ChainID, release.RoleAgent, a.identity.UniqueID) == nil {
			return &id, nil
		}
	}
	j := a.journal.get()
	files := []string{j.Installed.ReleaseFile}
	if j.Upgrade != nil {
		files = append(files, j.Upgrade.To.ReleaseFile, j.Upgrade.From.ReleaseFile)
	}
	for _, h := range j.History {
		files = append(files, h.From.ReleaseFile, h.To.ReleaseFile)
	}
	for _, v := range a.staged() {
		files = append(files, a.dir.Release(v).Manifest())
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		sr, err := release.Load(f)
		if err != nil || sr.AgentID.MREnclave != a.identity.UniqueID {
			continue
		}
		if err := sr.AgentID.Verify(a.network.KMG, a.network.ChainID, release.RoleAgent, a.identity.UniqueID); err != nil {
			return nil, fmt.Errorf("agent enclave ID in %s: %w", f, err)
		}
		id := sr.AgentID
		if raw, err := json.Marshal(id); err == nil {
			_ = fsutil.WriteFileAtomic(cache, raw, 0o600)
		}
		return &id, nil
	}
	return nil, fmt.Errorf("this agent's MRENCLAVE %s is not the network-signed agent of any release it knows (installed %s): nodes will not hand it keys",
		a.identity.UniqueID.Short(), j.Installed.Version)
}
