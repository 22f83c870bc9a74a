package consensus

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/statetransfer"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// quietPebble discards Pebble's informational logs in tests.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func openDB(dir string) (*pebble.DB, error) {
	return pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
}

// testNode is one member of an in-process cluster. Its "state" is the list
// of applied entries, kept in its Pebble DB next to raft's, with the applied
// index and the membership, exactly as the ledger keeps them: so a
// checkpoint of the DB is a consistent snapshot.
type testNode struct {
	c    *cluster
	id   uint64
	m    tee.Measurement
	root string
	key  ed25519.PrivateKey
	logs *logBuffer

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex // guards the fields below and serialises apply/checkpoint
	db       *pebble.DB
	tr       *Transport
	raft     *Raft
	snaps    *Snapshots
	applied  [][]byte
	lastIdx  uint64
	conf     *pb.ConfState
	starts   int
	installs int
	runErr   error
	// fault makes the named point fail once.
	fault string
}

type cluster struct {
	t        *testing.T
	platform *sim.Platform
	addrs    map[uint64]string
	nodes    map[uint64]*testNode
	// authorize, if set, is every node's authorizer.
	authorize func(self, id uint64, key ed25519.PublicKey, purpose Purpose) error
	compact   uint64
	// tick is every node's raft tick (default 20ms); campaignFirst, if
	// set, is the node started with Config.CampaignFirst.
	tick          time.Duration
	campaignFirst uint64
}

// freeAddrs returns n distinct free loopback addresses: every port stays
// bound until all are chosen, so none is handed out twice.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

func measurement(b byte) tee.Measurement {
	var m tee.Measurement
	m[0] = b
	return m
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := sim.InitPlatform(filepath.Join(dir, "platform"), ca)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, platform: p, addrs: map[uint64]string{}, nodes: map[uint64]*testNode{}}
	t.Cleanup(c.dumpLogsOnFailure)
	for i, a := range freeAddrs(t, n) {
		c.addrs[uint64(i+1)] = a
	}
	return c
}

// dumpLogsOnFailure prints the last lines of every node's log when the
// test failed, so that a failure seen once in CI can be diagnosed.
func (c *cluster) dumpLogsOnFailure() {
	if !c.t.Failed() {
		return
	}
	for id, n := range c.nodes {
		lines := strings.Split(n.logs.String(), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		c.t.Logf("node %d log (last %d lines):\n%s", id, len(lines), strings.Join(lines, "\n"))
	}
}

func (c *cluster) members() []uint64 {
	var ids []uint64
	for id := uint64(1); id <= uint64(len(c.addrs)); id++ {
		ids = append(ids, id)
	}
	return ids
}

func (n *testNode) paths() statetransfer.Paths {
	return statetransfer.Paths{Ledger: filepath.Join(n.root, "db"), Incoming: filepath.Join(n.root, "incoming")}
}

// start starts node id running an enclave with measurement m, its files
// under root (a new temporary directory if empty). The node restarts by
// itself to install snapshots, as teeup-node does.
func (c *cluster) start(id uint64, m tee.Measurement, root string) *testNode {
	t := c.t
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(filepath.Join(root, "node.key")); err == nil {
		key = ed25519.PrivateKey(raw)
	} else if err := fsutil.WriteFileAtomic(filepath.Join(root, "node.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	n := &testNode{c: c, id: id, m: m, root: root, key: key, logs: &logBuffer{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	started := make(chan error, 1)
	go n.loop(ctx, started)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	c.nodes[id] = n
	t.Cleanup(n.stop)
	return n
}

// loop runs the node, restarting it after a snapshot install, until ctx
// ends or it fails.
func (n *testNode) loop(ctx context.Context, started chan<- error) {
	defer close(n.done)
	first := true
	for ctx.Err() == nil {
		err := n.runOnce(ctx, func(err error) {
			if first {
				started <- err
				first = false
			}
		})
		n.mu.Lock()
		n.runErr = err
		n.mu.Unlock()
		if errors.Is(err, ErrInstallSnapshot) || errors.Is(err, errInjected) {
			continue
		}
		return
	}
}

var errInjected = errors.New("injected fault")

func (n *testNode) injected(point string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fault != "" && strings.HasPrefix(point, n.fault) {
		n.fault = ""
		return fmt.Errorf("%w at %s", errInjected, point)
	}
	return nil
}

func (n *testNode) runOnce(ctx context.Context, started func(error)) error {
	logger := slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", n.id)
	snaps := &Snapshots{
		Paths: n.paths(), Outgoing: filepath.Join(n.root, "outgoing"), Logger: logger, Open: openDB,
		Faults: n.injected,
	}
	outcome, _, err := snaps.Recover()
	if err != nil {
		started(err)
		return fmt.Errorf("%w: recover: %v", errInjected, err)
	}
	db, err := openDB(n.paths().Ledger)
	if err != nil {
		started(err)
		return err
	}
	n.mu.Lock()
	n.db, n.snaps = db, snaps
	n.starts++
	if outcome == statetransfer.OutcomeInstalled {
		n.installs++
	}
	n.loadState()
	applied, conf := n.lastIdx, n.conf
	n.mu.Unlock()
	defer db.Close()

	e := n.c.platform.NewEnclave(tee.Identity{UniqueID: n.m})
	creds, err := attest.NewCredentials(e, [attest.ExtraSize]byte{})
	if err != nil {
		started(err)
		return err
	}
	var r *Raft
	var authorize Authorizer
	if n.c.authorize != nil {
		authorize = func(id uint64, key ed25519.PublicKey, purpose Purpose) error {
			return n.c.authorize(n.id, id, key, purpose)
		}
	}
	tr, err := NewTransport(TransportConfig{
		ID: n.id, Listen: n.c.addrs[n.id], Peers: n.c.addrs, Creds: creds, NodeKey: n.key, Authorize: authorize,
		Verifier: &attest.Verifier{Quotes: n.c.platform.Verifier(), Policy: attest.Exact(n.m)},
		Keys:     func() ([]byte, bool) { return []byte("ledger-key-of-" + fmt.Sprint(n.id)), true },
		Status:   func() PeerStatus { return PeerStatus{Applied: r.AppliedIndex()} },
		Source:   snaps, Sink: snaps, Logger: logger,
		Forwarded: func(_ context.Context, from uint64, req []byte) []byte {
			return append([]byte(fmt.Sprintf("%d>%d:", from, n.id)), req...)
		},
	})
	if err != nil {
		started(err)
		return err
	}
	if err := tr.Start(ctx); err != nil {
		started(err)
		return err
	}
	defer tr.Stop()
	compact := n.c.compact
	if compact == 0 {
		compact = 1 << 20
	}
	tick := n.c.tick
	if tick == 0 {
		tick = 20 * time.Millisecond
	}
	r, err = Start(Config{
		ID: n.id, Members: n.c.members(), DB: db, Applied: applied, ConfState: conf, Transport: tr, Logger: logger,
		TickInterval: tick, Machine: (*testMachine)(n), CompactEvery: compact, CompactKeep: compact / 4,
		CampaignFirst: n.c.campaignFirst == n.id,
	})
	if err != nil {
		started(err)
		return err
	}
	snaps.MakeCheckpoint = n.checkpoint
	snaps.Term = r.TermAt
	snaps.Committed = r.CommitIndex
	snaps.Verify = n.verify
	n.mu.Lock()
	n.tr, n.raft = tr, r
	n.mu.Unlock()
	tr.StartRaft(r.Boot(), r.Hooks())
	started(nil)
	return r.Run(ctx)
}

// loadState reads the applied entries, index and membership; n.mu held.
func (n *testNode) loadState() {
	n.applied, n.lastIdx, n.conf = nil, 0, nil
	get := func(k string) []byte {
		v, closer, err := n.db.Get([]byte(k))
		if err != nil {
			return nil
		}
		defer closer.Close()
		return append([]byte(nil), v...)
	}
	if v := get("app/applied"); v != nil {
		fmt.Sscan(string(v), &n.lastIdx)
	}
	for _, e := range bytes.Split(get("app/log"), []byte{'\n'}) {
		if len(e) > 0 {
			n.applied = append(n.applied, e)
		}
	}
	if v := get("app/conf"); v != nil {
		cs := &pb.ConfState{}
		if proto.Unmarshal(v, cs) == nil {
			n.conf = cs
		}
	}
}

func (n *testNode) checkpoint(dir string) (uint64, *pb.ConfState, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return 0, nil, err
	}
	return n.lastIdx, proto.Clone(n.conf).(*pb.ConfState), nil
}

func (n *testNode) verify(_ context.Context, dir string, meta *pb.SnapshotMetadata) error {
	db, err := openDB(dir)
	if err != nil {
		return err
	}
	defer db.Close()
	v, closer, err := db.Get([]byte("app/applied"))
	if err != nil {
		return err
	}
	defer closer.Close()
	if string(v) != fmt.Sprint(meta.GetIndex()) {
		return fmt.Errorf("staged state applied %s, snapshot says %d", v, meta.GetIndex())
	}
	return nil
}

// testMachine is the node's StateMachine.
type testMachine testNode

func (m *testMachine) persist(index uint64) error {
	b := m.db.NewBatch()
	defer b.Close()
	_ = b.Set([]byte("app/applied"), []byte(fmt.Sprint(index)), nil)
	_ = b.Set([]byte("app/log"), bytes.Join(m.applied, []byte{'\n'}), nil)
	if m.conf != nil {
		raw, _ := proto.Marshal(m.conf)
		_ = b.Set([]byte("app/conf"), raw, nil)
	}
	return b.Commit(pebble.Sync)
}

func (m *testMachine) Apply(index uint64, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if index <= m.lastIdx {
		return fmt.Errorf("entry %d re-delivered after %d", index, m.lastIdx)
	}
	m.lastIdx = index
	m.applied = append(m.applied, append([]byte(nil), data...))
	return m.persist(index)
}

func (m *testMachine) CheckConfChange(uint64, *pb.ConfChangeV2) error { return nil }

func (m *testMachine) SaveConfState(index uint64, cs *pb.ConfState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conf = proto.Clone(cs).(*pb.ConfState)
	m.lastIdx = index
	return m.persist(index)
}

func (m *testMachine) InstallSnapshot(snap *pb.Snapshot, hs *pb.HardState) error {
	return m.snaps.RecordInstall(snap, hs)
}

func (n *testNode) entries() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][]byte(nil), n.applied...)
}

func (n *testNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.raft != nil && n.cancel != nil
}

func (n *testNode) rf() *Raft {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.raft
}

func (n *testNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.cancel = nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) leader() *testNode {
	for _, n := range c.nodes {
		if n.cancel != nil {
			if r := n.rf(); r != nil && r.IsLeader() {
				return n
			}
		}
	}
	return nil
}

func (c *cluster) proposeAll(ctx context.Context, prefix string, count int) {
	c.t.Helper()
	for i := 0; i < count; i++ {
		var l *testNode
		waitFor(c.t, "a leader", func() bool { l = c.leader(); return l != nil })
		if err := l.rf().Propose(ctx, fmt.Appendf(nil, "%s-%d", prefix, i)); err != nil && !errors.Is(err, ErrStopped) && !errors.Is(err, raft.ErrProposalDropped) {
			c.t.Fatal(err)
		}
	}
}

// commitAll proposes count entries and waits until the given nodes applied
// them all (re-proposing what a leader change lost).
func (c *cluster) commitAll(prefix string, count int, nodes ...uint64) {
	c.t.Helper()
	c.proposeAll(context.Background(), prefix, count)
	for _, id := range nodes {
		n := c.nodes[id]
		deadline := time.Now().Add(30 * time.Second)
		for !containsAll(n.entries(), prefix, count) {
			if time.Now().After(deadline) {
				c.t.Fatalf("node %d did not apply %s-*", id, prefix)
			}
			// Re-propose what is missing (a proposal can be lost with its leader).
			for i := 0; i < count; i++ {
				if !containsAll(n.entries(), fmt.Sprintf("%s-%d", prefix, i), -1) {
					if l := c.leader(); l != nil {
						_ = l.rf().Propose(context.Background(), fmt.Appendf(nil, "%s-%d", prefix, i))
					}
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// containsAll reports whether entries hold prefix-0 … prefix-(count-1);
// count -1 means the single entry prefix.
func containsAll(entries [][]byte, prefix string, count int) bool {
	seen := map[string]bool{}
	for _, e := range entries {
		seen[string(e)] = true
	}
	if count < 0 {
		return seen[prefix]
	}
	for i := 0; i < count; i++ {
		if !seen[fmt.Sprintf("%s-%d", prefix, i)] {
			return false
		}
	}
	return true
}

// startCluster starts n nodes of measurement(1), each with its own
// directory, compacting every compact entries (0: practically never).
func startCluster(t *testing.T, n int, compact uint64) (*cluster, tee.Measurement, map[uint64]string) {
	t.Helper()
	c := newCluster(t, n)
	c.compact = compact
	m := measurement(1)
	dirs := map[uint64]string{}
	for id := uint64(1); id <= uint64(n); id++ {
		dirs[id] = t.TempDir()
		c.start(id, m, dirs[id])
	}
	return c, m, dirs
}

// sameOrder checks that every node's applied entries are a prefix of the
// longest: one history, in one order.
func (c *cluster) sameOrder(ids ...uint64) {
	c.t.Helper()
	var ref [][]byte
	all := map[uint64][][]byte{}
	for _, id := range ids {
		all[id] = c.nodes[id].entries()
		if e := all[id]; len(e) > len(ref) {
			ref = e
		}
	}
	for _, id := range ids {
		got := all[id]
		for i := range got {
			if !bytes.Equal(got[i], ref[i]) {
				c.t.Fatalf("node %d entry %d = %q, the longest history has %q", id, i, got[i], ref[i])
			}
		}
	}
}

// requireLog checks that one of the nodes logged text.
func (c *cluster) requireLog(text string, ids ...uint64) {
	c.t.Helper()
	for _, id := range ids {
		if strings.Contains(c.nodes[id].logs.String(), text) {
			return
		}
	}
	c.t.Fatalf("no node of %v logged %q", ids, text)
}

func TestClusterReplicatesInOrder(t *testing.T) {
	c := newCluster(t, 3)
	m := measurement(1)
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, "")
	}
	c.commitAll("a", 50, 1, 2, 3)
	c.sameOrder(1, 2, 3)
	for _, n := range c.nodes {
		for _, p := range n.tr.Peers() {
			if p.LastSeen.IsZero() {
				continue // followers need not talk to each other
			}
			if p.Identity.UniqueID != m {
				t.Errorf("node %d sees peer %d with MRENCLAVE %s", n.id, p.ID, p.Identity.UniqueID.Short())
			}
		}
	}
}

func TestImpostorMeasurementRefused(t *testing.T) {
	c := newCluster(t, 4)
	good, bad := measurement(1), measurement(2)
	for id := uint64(1); id <= 3; id++ {
		c.start(id, good, "")
	}
	impostor := c.start(4, bad, "")
	c.commitAll("b", 20, 1, 2, 3)
	// The impostor never receives a single entry: no consensus message crossed.
	for _, e := range impostor.entries() {
		if bytes.HasPrefix(e, []byte("b-")) {
			t.Fatalf("impostor applied %q", e)
		}
	}
	// Good nodes logged the refusal with both measurements.
	waitFor(t, "refusal log", func() bool {
		for id := uint64(1); id <= 3; id++ {
			l := c.nodes[id].logs.String()
			if strings.Contains(l, "presented MRENCLAVE "+bad.String()) && strings.Contains(l, good.String()) {
				return true
			}
		}
		return false
	})
	if impostor.rf().IsLeader() {
		t.Fatal("impostor became leader")
	}
}

func TestRestartKeepsLogAndCatchesUp(t *testing.T) {
	c, m, dirs := startCluster(t, 3, 0)
	c.commitAll("c", 10, 1, 2, 3)
	// Stop node 3, write more, restart it: it resumes from its durable state
	// without re-applying and catches up.
	c.nodes[3].stop()
	c.commitAll("d", 10, 1, 2)
	c.start(3, m, dirs[3])
	c.commitAll("d", 10, 3)
	if !containsAll(c.nodes[3].entries(), "c", 10) {
		t.Fatal("node 3 lost entries across restart")
	}
	// Restart everything: state and log survive.
	for _, n := range c.nodes {
		n.stop()
	}
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, dirs[id])
	}
	c.commitAll("e", 5, 1, 2, 3)
	c.sameOrder(1, 2, 3)
}

// TestSnapshotCatchesUpNodeBehindCompaction: a node down while the others
// compact past what it has receives a state snapshot, installs it by
// restarting, and continues from the log.
func TestSnapshotCatchesUpNodeBehindCompaction(t *testing.T) {
	c, m, dirs := startCluster(t, 3, 16)
	c.commitAll("f", 10, 1, 2, 3)
	c.nodes[3].stop()
	c.commitAll("g", 80, 1, 2)
	l := c.leader()
	waitFor(t, "the leader to compact past node 3", func() bool { return l.rf().FirstIndex() > 40 })
	n3 := c.start(3, m, dirs[3])
	c.commitAll("h", 5, 1, 2, 3)
	if !containsAll(n3.entries(), "g", 80) || !containsAll(n3.entries(), "f", 10) {
		t.Fatal("node 3 lacks entries the snapshot should have carried")
	}
	n3.mu.Lock()
	installs := n3.installs
	n3.mu.Unlock()
	if installs == 0 {
		t.Fatal("node 3 caught up without installing a snapshot: the test did not exercise state transfer")
	}
	c.sameOrder(1, 2, 3)
}

// TestWipedNodeRejoins: a node that lost its whole directory comes back
// empty; raft must neither crash ("tocommit out of range") nor credit it
// with entries it lost; it rejoins through a snapshot.
func TestWipedNodeRejoins(t *testing.T) {
	c, m, dirs := startCluster(t, 3, 16)
	c.commitAll("w", 60, 1, 2, 3)
	// Wipe a follower: the leader remembers what it acknowledged.
	var l *testNode
	waitFor(t, "a leader", func() bool { l = c.leader(); return l != nil })
	victim := l.id%3 + 1
	c.nodes[victim].stop()
	if err := os.RemoveAll(dirs[victim]); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dirs[victim], 0o700); err != nil {
		t.Fatal(err)
	}
	nv := c.start(victim, m, dirs[victim])
	c.commitAll("x", 10, 1, 2, 3)
	if !containsAll(nv.entries(), "w", 60) {
		t.Fatal("the wiped node did not get the state back")
	}
	c.sameOrder(1, 2, 3)
	if nv.runErr != nil && !errors.Is(nv.runErr, ErrInstallSnapshot) {
		t.Fatalf("node %d stopped: %v", victim, nv.runErr)
	}
}

// TestLeaderResetsAFollowerThatLostItsLog: a follower wiped while the
// leader still holds the whole log rejects appends at indexes it had
// acknowledged; the leader notices (raft would ignore those rejections as
// stale) and hands leadership over, which resets every follower's
// progress, and the follower catches up from the log.
func TestLeaderResetsAFollowerThatLostItsLog(t *testing.T) {
	c, m, dirs := startCluster(t, 3, 0)
	c.commitAll("y", 30, 1, 2, 3)
	var l *testNode
	waitFor(t, "a leader", func() bool { l = c.leader(); return l != nil })
	victim := l.id%3 + 1
	c.nodes[victim].stop()
	if err := os.RemoveAll(dirs[victim]); err != nil {
		t.Fatal(err)
	}
	nv := c.start(victim, m, t.TempDir())
	c.commitAll("z", 5, 1, 2, 3)
	if !containsAll(nv.entries(), "y", 30) {
		t.Fatal("the wiped follower did not catch up from the log")
	}
	c.requireLog("lost entries it had acknowledged", l.id)
	c.sameOrder(1, 2, 3)
}

// TestRestoredOldCopyRejoins: a node restored from a copy of its own
// directory taken before two log compactions catches up, one history.
func TestRestoredOldCopyRejoins(t *testing.T) {
	c, m, dirs := startCluster(t, 3, 16)
	c.commitAll("o", 10, 1, 2, 3)
	var l *testNode
	waitFor(t, "a leader", func() bool { l = c.leader(); return l != nil })
	victim := l.id%3 + 1
	backup := filepath.Join(t.TempDir(), "backup")
	c.nodes[victim].stop()
	copyTree(t, dirs[victim], backup)
	c.start(victim, m, dirs[victim])
	c.commitAll("p", 80, 1, 2, 3) // several compactions, the victim acknowledging all
	c.nodes[victim].stop()
	if err := os.RemoveAll(dirs[victim]); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, dirs[victim])
	nv := c.start(victim, m, dirs[victim])
	c.commitAll("q", 10, 1, 2, 3)
	if !containsAll(nv.entries(), "p", 80) {
		t.Fatal("the restored node did not catch up")
	}
	c.sameOrder(1, 2, 3)
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStateTransferSurvivesReceiverCrashes kills the receiving node at each
// step of a transfer and of the install; every time it comes back with the
// old state or the new one and ends up caught up.
func TestStateTransferSurvivesReceiverCrashes(t *testing.T) {
	points := []string{
		"statetransfer.after-receive",
		"statetransfer.after-verify",
		"statetransfer.after-stage",
		"statetransfer.after-marker",
		"statetransfer.install.prepare",
		"statetransfer.install.retire",
		"statetransfer.install.promote",
		"statetransfer.install.remove-old",
		"statetransfer.install.remove-marker",
	}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			c, m, dirs := startCluster(t, 3, 16)
			c.commitAll("r", 5, 1, 2, 3)
			c.nodes[3].stop()
			c.commitAll("s", 60, 1, 2)
			l := c.leader()
			waitFor(t, "compaction", func() bool { return l.rf().FirstIndex() > 30 })
			n3 := c.start(3, m, dirs[3])
			n3.mu.Lock()
			n3.fault = point
			n3.mu.Unlock()
			c.commitAll("u", 5, 1, 2, 3)
			if !containsAll(n3.entries(), "s", 60) {
				t.Fatal("node 3 did not catch up")
			}
			n3.mu.Lock()
			fired := n3.fault == ""
			n3.mu.Unlock()
			if !fired {
				t.Fatalf("fault point %s never fired", point)
			}
			c.sameOrder(1, 2, 3)
		})
	}
}

func TestAuthorizerRefusesPeer(t *testing.T) {
	c := newCluster(t, 3)
	c.authorize = func(self, id uint64, _ ed25519.PublicKey, _ Purpose) error {
		if id == 3 {
			return fmt.Errorf("%w: node 3 is revoked", ErrNotAuthorized)
		}
		return nil
	}
	m := measurement(1)
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, "")
	}
	c.commitAll("v", 10, 1, 2)
	for _, e := range c.nodes[3].entries() {
		if bytes.HasPrefix(e, []byte("v-")) {
			t.Fatal("a refused node received entries")
		}
	}
	waitFor(t, "refusal logged", func() bool { return strings.Contains(c.nodes[1].logs.String(), "node 3 is revoked") })
}

func TestFetchLedgerKey(t *testing.T) {
	c := newCluster(t, 2)
	m := measurement(1)
	c.start(1, m, "")
	n2 := c.start(2, m, "")
	var key []byte
	waitFor(t, "key", func() bool {
		k, ok, err := n2.tr.FetchLedgerKey(context.Background(), 1, c.addrs[1])
		key = k
		return err == nil && ok
	})
	if string(key) != "ledger-key-of-1" {
		t.Fatalf("key = %q", key)
	}
	// A peer answering as another node id is refused.
	if _, _, err := n2.tr.FetchLedgerKey(context.Background(), 5, c.addrs[1]); !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("a listener answering as node 1 for node 5: %v", err)
	}
}

func TestTransportRejectsSignerPolicy(t *testing.T) {
	c := newCluster(t, 1)
	e := c.platform.NewEnclave(tee.Identity{UniqueID: measurement(1)})
	creds, err := attest.NewCredentials(e, [attest.ExtraSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewTransport(TransportConfig{ID: 1, Listen: "127.0.0.1:0", Creds: creds,
		Verifier: &attest.Verifier{Quotes: c.platform.Verifier(), Policy: &attest.SignerPolicy{}}})
	if !errors.Is(err, attest.ErrSignerPolicyForPeering) {
		t.Fatalf("NewTransport(signer policy) = %v", err)
	}
}

func TestFrameRejectsOversize(t *testing.T) {
	var buf bytes.Buffer
	buf.Write([]byte{frameRaft, 0xff, 0xff, 0xff, 0xff})
	if _, _, err := readFrame(&buf); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("readFrame(oversize) = %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var ok bytes.Buffer
	_ = writeFrame(&ok, frameHello, []byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(ok.Bytes())
	f.Add([]byte{frameRaft, 0, 0, 0, 3, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, payload, err := readFrame(bytes.NewReader(data))
		if err == nil && len(payload)+5 > len(data) {
			t.Fatalf("payload longer than input")
		}
	})
}

// TestReauthorizeDropsRevokedPeer: a peer refused after its connections
// were established (its key replaced on chain) loses them at once.
func TestReauthorizeDropsRevokedPeer(t *testing.T) {
	c := newCluster(t, 3)
	var mu sync.Mutex
	revoked := false
	c.authorize = func(self, id uint64, _ ed25519.PublicKey, _ Purpose) error {
		mu.Lock()
		defer mu.Unlock()
		if revoked && id == 3 {
			return fmt.Errorf("%w: node 3's key was replaced", ErrNotAuthorized)
		}
		return nil
	}
	m := measurement(1)
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, "")
	}
	c.commitAll("k", 5, 1, 2, 3)
	mu.Lock()
	revoked = true
	mu.Unlock()
	for id := uint64(1); id <= 2; id++ {
		c.nodes[id].tr.Reauthorize()
	}
	c.commitAll("l", 10, 1, 2)
	for _, e := range c.nodes[3].entries() {
		if bytes.HasPrefix(e, []byte("l-")) {
			t.Fatal("a revoked peer kept receiving entries")
		}
	}
	c.requireLog("no longer authorised", 1, 2)
}

// TestCampaignFirstElectsAtOnce: the node started with CampaignFirst
// campaigns as soon as it is connected to a quorum, so it wins the first
// election while the others would still wait out an election timeout
// (ticks of 400 ms here: none of them campaigns for at least 4 s).
func TestCampaignFirstElectsAtOnce(t *testing.T) {
	c := newCluster(t, 3)
	c.tick = 400 * time.Millisecond
	c.campaignFirst = 3
	m := measurement(1)
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, "")
	}
	var l *testNode
	waitFor(t, "a leader", func() bool { l = c.leader(); return l != nil })
	if l.id != 3 || l.rf().Term() != 2 {
		t.Fatalf("first leader %d at term %d, want node 3 at term 2", l.id, l.rf().Term())
	}
	c.requireLog("campaigning at once", 3)
	for _, id := range []uint64{1, 2} {
		if strings.Contains(c.nodes[id].logs.String(), "became pre-candidate") {
			t.Errorf("node %d campaigned too", id)
		}
	}
	c.commitAll("a", 3, 1, 2, 3)
}
