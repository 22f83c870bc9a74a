// Package node is the teeup-node program: a consensus node running as an
// enclave. It holds the application keys (sealed to its MRENCLAVE), the
// ledger (Pebble), raft over mutual attested TLS with peers of identical
// MRENCLAVE, the client API (attested TLS) and the admin API (unix socket),
// and serves its keys to the upgrade agent through the handover protocol.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/consensus"
	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/statetransfer"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/boot"
)

// Node is a running teeup-node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	faults   Faults
	genesis  *ledger.Genesis
	self     ledger.GenesisNode
	platform *boot.Platform
	identity tee.Identity

	creds        *attest.Credentials
	peerVerifier *attest.Verifier

	// phase is what the node is doing, for status while it is not serving.
	phase atomic.Pointer[string]
	// admin is the admin API's handler: a minimal status until the node
	// runs, the whole API afterwards.
	admin atomic.Pointer[http.Handler]

	keys  atomic.Pointer[Keys]
	store *ledger.Store
	// storeRef is store for code that may run before it is open (the
	// transport's authorizer, the early admin status).
	storeRef atomic.Pointer[ledger.Store]
	raftRef  atomic.Pointer[consensus.Raft]
	tr       *consensus.Transport
	raft     *consensus.Raft
	snaps    *consensus.Snapshots
	sync     *syncTracker

	applied *notifier
	waiters *waiters
	ingress *ingressState
	// refusedBlocks counts committed blocks the apply refused.
	refusedBlocks atomic.Uint64
	// flushedFor is the scheduled upgrade ("version@height") whose
	// activation the ledger's memtable was last flushed ahead of.
	flushedFor atomic.Pointer[string]
	// compactedFor is the scheduled upgrade at whose activation height the
	// raft log was last compacted (compactAtHalt).
	compactedFor atomic.Pointer[string]
	producer     *producer
	// mempool holds the payments this node admitted while it leads
	// (admission.go); recent remembers statuses of payments not on chain.
	mempool *mempool
	recent  *recentStatuses
	// verified holds ids of payments whose signatures this node verified
	// when a client submitted them: their block's apply skips them.
	verified *ledger.VerifiedSigs

	startedAt time.Time
	stopOnce  sync.Once
	stopReq   chan struct{}
}

// Options carries what a Node needs besides its configuration.
type Options struct {
	// Stderr receives the simulation warning (default os.Stderr).
	Stderr io.Writer
	// Logger receives logs (default: JSON to Stderr at cfg.LogLevel).
	Logger *slog.Logger
	// Faults are failure-injection points (tests only; nil means none).
	Faults Faults
}

// TargetSchema returns the ledger schema this binary runs at: the build's
// pinned schema, or the newest the registry knows.
func TargetSchema() int {
	var v int
	if _, err := fmt.Sscan(buildinfo.Schema, &v); err == nil && v > 0 {
		return v
	}
	return ledger.NewestSchema(ledger.DefaultMigrations())
}

// Phases of a node's start, reported by the admin status before it serves.
const (
	phaseStarting      = "starting"
	phaseWaitingForKey = "waiting for the network ledger key"
	phaseInstalling    = "installing a state snapshot received from a peer"
	phaseRunning       = nodeapi.PhaseRunning
)

// Run starts the node and serves until ctx is cancelled, a graceful stop
// is requested through the admin API, or a fatal error occurs. When raft
// restores a state snapshot received from a peer, the node stops its
// components, installs the snapshot and starts them again, in-process.
func Run(ctx context.Context, cfg Config, opts Options) error {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Logger == nil {
		opts.Logger = newLogger(opts.Stderr, cfg.LogLevel)
	}
	if opts.Faults == nil {
		opts.Faults = noFaults{}
	}
	n := &Node{
		cfg:       cfg,
		log:       opts.Logger.With("node", cfg.NodeID),
		faults:    opts.Faults,
		startedAt: time.Now(),
		stopReq:   make(chan struct{}),
		recent:    newRecentStatuses(recentStatusSize),
		verified:  ledger.NewVerifiedSigs(verifiedSigsSize),
	}
	n.setPhase(phaseStarting)
	for {
		err := n.run(ctx, opts)
		if !errors.Is(err, consensus.ErrInstallSnapshot) {
			return err
		}
		n.setPhase(phaseInstalling)
		n.log.Info("restarting the node's components to install the state received from a peer")
	}
}

func (n *Node) setPhase(p string) { n.phase.Store(&p) }

// Phase returns what the node is doing.
func (n *Node) Phase() string { return *n.phase.Load() }

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func (n *Node) run(ctx context.Context, opts Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.applied, n.waiters = newNotifier(), newWaiters()
	n.store, n.raft, n.tr, n.producer = nil, nil, nil, nil
	n.storeRef.Store(nil)
	n.raftRef.Store(nil)

	g, err := ledger.LoadGenesis(n.cfg.Genesis)
	if err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	self, ok := g.Node(n.cfg.NodeID)
	if !ok {
		// A member added by governance after the genesis: its addresses
		// come from its configuration, its peers from "peers" (or the
		// genesis nodes) until it has the ledger.
		if n.cfg.PeerListen == "" || n.cfg.ClientListen == "" {
			return fmt.Errorf("node %d is not in the genesis of %s: a node added on chain needs peer_listen and client_listen in its configuration", n.cfg.NodeID, g.ChainID)
		}
		self = ledger.GenesisNode{ID: n.cfg.NodeID, PeerAddr: n.cfg.PeerListen, ClientAddr: n.cfg.ClientListen}
	}
	n.genesis, n.self = g, self
	if n.cfg.PeerListen == "" {
		n.cfg.PeerListen = self.PeerAddr
	}
	if n.cfg.ClientListen == "" {
		n.cfg.ClientListen = self.ClientAddr
	}
	if err := fsutil.PrivateDir(n.cfg.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	plat, err := boot.Open(boot.Options{Program: "teeup-node", PlatformDir: n.cfg.Platform, Debug: n.cfg.EnclaveDebug, Warnings: opts.Stderr})
	if err != nil {
		return err
	}
	n.platform, n.identity = plat, plat.Enclave.Identity()
	n.log.Info("enclave started", "mrenclave", n.identity.UniqueID.String(), "mrsigner", n.identity.SignerID.Short(),
		"svn", n.identity.SecurityVersion, "debug", n.identity.Debug, "platform", plat.Name, "version", buildinfo.Version)
	opts.Stderr = io.Discard // the simulation warning is printed once, not at every in-process restart

	policy := attest.Exact(n.identity.UniqueID)
	if n.identity.Debug || n.cfg.AllowDebugPeers {
		policy = policy.AllowingDebug()
	}
	if n.faults.Has("fail:node.attest") && (n.faults.Value("fail:node.attest") == "" || n.faults.Value("fail:node.attest") == buildinfo.Version) {
		// Fault injection (tests): this version fails peer attestation.
		n.log.Warn("FAULT INJECTION: peer attestation will fail")
		policy = attest.Exact(tee.Measurement{0xfa, 0x11})
	}
	if _, err := attest.ForPeering(policy); err != nil {
		return err
	}
	n.peerVerifier = &attest.Verifier{Quotes: plat.Verifier, Policy: policy}
	if n.creds, err = attest.NewCredentials(plat.Enclave, [attest.ExtraSize]byte{}); err != nil {
		return err
	}
	n.ingress, err = loadIngress(layout.Node(n.cfg.DataDir).Ingress())
	if err != nil {
		return err
	}
	stopAdmin, err := n.startAdmin()
	if err != nil {
		return err
	}
	defer stopAdmin()

	// The node's identity key signs every peer hello, so it is needed
	// before the transport starts; the ledger key may come from a peer.
	keys, err := n.obtainIdentity(ctx)
	if err != nil {
		return err
	}
	n.keys.Store(keys) // the ledger key may still be missing: status shows the node key meanwhile
	n.snaps = &consensus.Snapshots{
		Paths:    statetransfer.Paths{Ledger: layout.Node(n.cfg.DataDir).Ledger(), Incoming: layout.Node(n.cfg.DataDir).Incoming()},
		Outgoing: layout.Node(n.cfg.DataDir).Outgoing(),
		Open:     ledger.OpenRaw,
		Logger:   n.log.With("component", "statetransfer"),
		Faults: func(point string) error {
			n.faults.CrashPoint(point)
			return n.faults.Error(point)
		},
	}
	if err := n.snaps.CleanOutgoing(); err != nil {
		return err
	}
	n.sync = newSyncTracker(n)
	n.tr, err = consensus.NewTransport(consensus.TransportConfig{
		ID: n.cfg.NodeID, Listen: n.cfg.PeerListen, Peers: n.peerAddrs(), Creds: n.creds, Verifier: n.peerVerifier,
		NodeKey: keys.NodeKey, Authorize: n.authorizePeer, Keys: n.ledgerKeyForPeer, Status: n.peerStatus,
		Source: n.snaps, Sink: n.snaps, Logger: n.log, Forwarded: n.forwarded,
		Faults: func(point string) { n.faults.CrashPoint(point) },
	})
	if err != nil {
		return err
	}
	if err := n.tr.Start(ctx); err != nil {
		return err
	}
	defer n.tr.Stop()

	if keys.LedgerKey.IsZero() {
		n.setPhase(phaseWaitingForKey)
		if keys, err = n.completeKeys(ctx, keys); err != nil {
			return err
		}
	}
	n.keys.Store(keys)

	outcome, marker, err := n.snaps.Recover()
	if err != nil {
		return fmt.Errorf("state transfer: %w", err)
	}
	if outcome == statetransfer.OutcomeInstalled {
		n.log.Info("installed the state received from a peer", "index", marker.Index, "term", marker.Term)
	}
	if err := n.migrate(ctx, keys); err != nil {
		return err
	}
	n.store, err = ledger.Open(layout.Node(n.cfg.DataDir).Ledger(), ledger.Options{
		Genesis: g, LedgerKey: keys.LedgerKey, SelfMeasurement: n.identity.UniqueID,
		TargetSchema: TargetSchema(), Logger: n.log, Verified: n.verified,
	})
	if err != nil {
		return fmt.Errorf("open ledger: %w", err)
	}
	defer n.store.Close()
	n.storeRef.Store(n.store)
	defer n.storeRef.Store(nil)
	h, hash := n.store.Head()
	n.log.Info("ledger open", "height", h, "head", hash.String(), "schema", n.store.Schema(), "applied_index", n.store.AppliedIndex())

	n.mempool = newMempool(n.store.Params().MaxPool, maxPendingPerAccount)
	conf, err := n.raftConf()
	if err != nil {
		return err
	}
	r, err := consensus.Start(consensus.Config{
		ID: n.cfg.NodeID, Members: n.genesisMembers(), DB: n.store.DB(), Applied: n.store.AppliedIndex(), ConfState: conf,
		Machine: (*stateMachine)(n), Transport: n.tr, Logger: n.log,
		CompactEvery: n.cfg.RaftCompactEvery, CompactKeep: n.cfg.RaftCompactKeep,
		CampaignFirst: n.campaignFirst(),
	})
	if err != nil {
		return err
	}
	n.raft = r
	n.raftRef.Store(r)
	defer n.raftRef.Store(nil)
	n.snaps.MakeCheckpoint = n.checkpointForPeer
	n.snaps.Term = r.TermAt
	n.snaps.Committed = r.CommitIndex
	n.snaps.Verify = n.verifySnapshot
	n.producer = newProducer(n)
	n.tr.StartRaft(r.Boot(), r.Hooks())
	raftDone := make(chan error, 1)
	go func() { raftDone <- r.Run(ctx) }()

	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); n.producer.run(ctx) }()
	go func() { defer wg.Done(); n.ensureRegistered(ctx) }()
	go func() { defer wg.Done(); n.sync.run(ctx) }()
	go func() { defer wg.Done(); n.followMembership(ctx) }()

	stops, err := n.startServers(ctx)
	if err != nil {
		cancel()
		<-raftDone
		wg.Wait()
		return err
	}
	n.setPhase(phaseRunning)
	n.log.Info("node serving", "client", n.cfg.ClientListen, "peer", n.cfg.PeerListen, "admin", n.cfg.AdminSocket, "ingress", n.ingress.String())

	var runErr error
	select {
	case <-ctx.Done():
		n.log.Info("stopping: signal")
	case <-n.stopReq:
		n.log.Info("stopping: admin request")
	case runErr = <-raftDone:
		switch {
		case errors.Is(runErr, consensus.ErrInstallSnapshot):
		case runErr == nil:
			runErr = errors.New("raft stopped")
			n.log.Error("stopping: consensus failed", "err", runErr)
		default:
			n.log.Error("stopping: consensus failed", "err", runErr)
		}
	}
	for _, stop := range stops {
		stop()
	}
	cancel()
	wg.Wait()
	if runErr == nil {
		<-raftDone
	}
	if errors.Is(runErr, consensus.ErrInstallSnapshot) {
		return runErr
	}
	n.log.Info("node stopped")
	return runErr
}

func shutdown(s *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
}

// requestStop asks Run to stop gracefully.
func (n *Node) requestStop() {
	n.stopOnce.Do(func() { close(n.stopReq) })
}

// ledgerKeyForPeer gives the ledger key to an attested member (the
// transport only calls it after the peering policy and the authorizer
// passed).
func (n *Node) ledgerKeyForPeer() ([]byte, bool) {
	k := n.keys.Load()
	if k == nil || k.LedgerKey.IsZero() {
		return nil, false
	}
	return append([]byte(nil), k.LedgerKey[:]...), true
}

// migrate runs the forward schema migrations this binary ships before the
// ledger is opened (and before this node joins consensus).
func (n *Node) migrate(ctx context.Context, keys *Keys) error {
	dir := layout.Node(n.cfg.DataDir).Ledger()
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil // a new ledger is created at the target schema
	}
	from, to, steps, err := ledger.Migrate(ctx, dir, ledger.MigrateOptions{
		Key: keys.LedgerKey, Target: TargetSchema(), Logger: n.log.With("component", "migrate"),
		Before: func(m ledger.Migration) error {
			n.log.Info("running migration", "version", m.Version, "name", m.Name)
			if v := n.faults.Value("fail:migration.nodes"); n.faults.Has("fail:migration.nodes") && slices.Contains(strings.Split(v, "+"), strconv.FormatUint(n.cfg.NodeID, 10)) {
				return fmt.Errorf("injected failure at migration on node %d", n.cfg.NodeID) // fail:migration.nodes=3+4
			}
			return n.faults.Error("migration")
		},
	})
	if err != nil {
		return fmt.Errorf("migrate ledger: %w", err)
	}
	if from != to {
		n.log.Info("ledger migrated", "from", from, "to", to, "steps", len(steps))
	}
	return nil
}
