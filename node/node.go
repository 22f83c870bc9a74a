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
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/consensus"
	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
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

	keys  atomic.Pointer[Keys]
	store *ledger.Store
	tr    *consensus.Transport
	raft  *consensus.Raft

	applied  *notifier
	waiters  *waiters
	ingress  *ingressState
	producer *producer

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

// Run starts the node and serves until ctx is cancelled, a graceful stop
// is requested through the admin API, or a fatal error occurs.
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
		applied:   newNotifier(),
		waiters:   newWaiters(),
		startedAt: time.Now(),
		stopReq:   make(chan struct{}),
	}
	return n.run(ctx, opts)
}

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

	g, err := ledger.LoadGenesis(n.cfg.Genesis)
	if err != nil {
		return fmt.Errorf("genesis: %w", err)
	}
	self, ok := g.Node(n.cfg.NodeID)
	if !ok {
		return fmt.Errorf("node %d is not in the genesis of %s", n.cfg.NodeID, g.ChainID)
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

	peers := make(map[uint64]string, len(g.Nodes))
	members := make([]uint64, 0, len(g.Nodes))
	for _, gn := range g.Nodes {
		peers[gn.ID] = gn.PeerAddr
		members = append(members, gn.ID)
	}
	n.tr, err = consensus.NewTransport(consensus.TransportConfig{
		ID: n.cfg.NodeID, Listen: n.cfg.PeerListen, Peers: peers, Creds: n.creds, Verifier: n.peerVerifier,
		Keys:   n.ledgerKeyForPeer,
		Logger: n.log,
	})
	if err != nil {
		return err
	}
	var rf atomic.Pointer[consensus.Raft]
	deliver := func(m *raftpb.Message) {
		if r := rf.Load(); r != nil {
			r.Step(m)
		}
	}
	unreachable := func(id uint64) {
		if r := rf.Load(); r != nil {
			r.ReportUnreachable(id)
		}
	}
	if err := n.tr.Start(ctx, deliver, unreachable); err != nil {
		return err
	}
	defer n.tr.Stop()

	keys, err := n.obtainKeys(ctx)
	if err != nil {
		return err
	}
	n.keys.Store(keys)

	if err := n.migrate(ctx, keys); err != nil {
		return err
	}
	n.store, err = ledger.Open(layout.Node(n.cfg.DataDir).Ledger(), ledger.Options{
		Genesis: g, LedgerKey: keys.LedgerKey, SelfMeasurement: n.identity.UniqueID,
		TargetSchema: TargetSchema(), Logger: n.log,
	})
	if err != nil {
		return fmt.Errorf("open ledger: %w", err)
	}
	defer n.store.Close()
	h, hash := n.store.Head()
	n.log.Info("ledger open", "height", h, "head", hash.String(), "schema", n.store.Schema(), "applied_index", n.store.AppliedIndex())

	r, err := consensus.Start(consensus.Config{
		ID: n.cfg.NodeID, Members: members, DB: n.store.DB(), Applied: n.store.AppliedIndex(),
		Apply: n.apply, Transport: n.tr, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.raft = r
	rf.Store(r)
	raftDone := make(chan error, 1)
	go func() { raftDone <- r.Run(ctx) }()

	n.producer = newProducer(n)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); n.producer.run(ctx) }()
	go func() { defer wg.Done(); n.ensureRegistered(ctx) }()
	go func() { defer wg.Done(); n.compactor(ctx) }()

	stops, err := n.startServers(ctx)
	if err != nil {
		cancel()
		<-raftDone
		wg.Wait()
		return err
	}
	n.log.Info("node serving", "client", n.cfg.ClientListen, "peer", n.cfg.PeerListen, "admin", n.cfg.AdminSocket, "ingress", n.ingress.String())

	var runErr error
	select {
	case <-ctx.Done():
		n.log.Info("stopping: signal")
	case <-n.stopReq:
		n.log.Info("stopping: admin request")
	case runErr = <-raftDone:
		if runErr == nil {
			runErr = errors.New("raft stopped")
		}
		n.log.Error("stopping: consensus failed", "err", runErr)
	}
	for _, stop := range stops {
		stop()
	}
	cancel()
	wg.Wait()
	if runErr == nil {
		<-raftDone
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

// ledgerKeyForPeer gives the ledger key to an attested peer (the transport
// only calls it after the peering policy passed).
func (n *Node) ledgerKeyForPeer() ([]byte, bool) {
	k := n.keys.Load()
	if k == nil {
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
