package consensus

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/teeup/teeup/attest"
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

type testNode struct {
	id      uint64
	dir     string
	db      *pebble.DB
	tr      *Transport
	raft    *Raft
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	applied [][]byte
	lastIdx uint64
	logs    *logBuffer
}

func (n *testNode) entries() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][]byte(nil), n.applied...)
}

type cluster struct {
	t        *testing.T
	platform *sim.Platform
	addrs    map[uint64]string
	nodes    map[uint64]*testNode
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
	for i, a := range freeAddrs(t, n) {
		c.addrs[uint64(i+1)] = a
	}
	return c
}

func (c *cluster) members() []uint64 {
	var ids []uint64
	for id := uint64(1); id <= uint64(len(c.addrs)); id++ {
		ids = append(ids, id)
	}
	return ids
}

// start starts node id running an enclave with measurement m.
func (c *cluster) start(id uint64, m tee.Measurement, dir string) *testNode {
	t := c.t
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	e := c.platform.NewEnclave(tee.Identity{UniqueID: m})
	creds, err := attest.NewCredentials(e, [attest.ExtraSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := &testNode{id: id, dir: dir, db: db, logs: logs, done: make(chan error, 1)}
	// The applied index is persisted with the "state" so a restart resumes.
	applied := uint64(0)
	if v, closer, err := db.Get([]byte("app/applied")); err == nil {
		fmt.Sscan(string(v), &applied)
		closer.Close()
	}
	if v, closer, err := db.Get([]byte("app/log")); err == nil {
		for _, e := range bytes.Split(v, []byte{'\n'}) {
			if len(e) > 0 {
				n.applied = append(n.applied, append([]byte(nil), e...))
			}
		}
		closer.Close()
	}
	n.lastIdx = applied
	tr, err := NewTransport(TransportConfig{
		ID: id, Listen: c.addrs[id], Peers: c.addrs, Creds: creds,
		Verifier: &attest.Verifier{Quotes: c.platform.Verifier(), Policy: attest.Exact(m)},
		Keys:     func() ([]byte, bool) { return []byte("ledger-key-of-" + fmt.Sprint(id)), true },
		Logger:   logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Start(Config{
		ID: id, Members: c.members(), DB: db, Applied: applied, Transport: tr, Logger: logger,
		TickInterval: 20 * time.Millisecond,
		Apply: func(index uint64, data []byte) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			if index <= n.lastIdx {
				return fmt.Errorf("entry %d re-delivered after %d", index, n.lastIdx)
			}
			n.lastIdx = index
			n.applied = append(n.applied, append([]byte(nil), data...))
			if rest, ok := bytes.CutPrefix(data, []byte("compact:")); ok {
				var upTo uint64
				fmt.Sscan(string(rest), &upTo)
				if err := n.raft.CompactTo(upTo); err != nil {
					return err
				}
			}
			b := db.NewBatch()
			defer b.Close()
			_ = b.Set([]byte("app/applied"), []byte(fmt.Sprint(index)), nil)
			_ = b.Set([]byte("app/log"), bytes.Join(n.applied, []byte{'\n'}), nil)
			return b.Commit(pebble.Sync)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background(), r.Step, r.ReportUnreachable); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.tr, n.raft, n.cancel = tr, r, cancel
	go func() { n.done <- r.Run(ctx) }()
	c.nodes[id] = n
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *testNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.tr.Stop()
	n.db.Close()
	n.cancel = nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) leader() *testNode {
	for _, n := range c.nodes {
		if n.cancel != nil && n.raft.IsLeader() {
			return n
		}
	}
	return nil
}

func (c *cluster) proposeAll(ctx context.Context, prefix string, count int) {
	c.t.Helper()
	for i := 0; i < count; i++ {
		var l *testNode
		waitFor(c.t, "a leader", func() bool { l = c.leader(); return l != nil })
		if err := l.raft.Propose(ctx, fmt.Appendf(nil, "%s-%d", prefix, i)); err != nil {
			c.t.Fatal(err)
		}
	}
}

func containsAll(entries [][]byte, prefix string, count int) bool {
	seen := map[string]bool{}
	for _, e := range entries {
		seen[string(e)] = true
	}
	for i := 0; i < count; i++ {
		if !seen[fmt.Sprintf("%s-%d", prefix, i)] {
			return false
		}
	}
	return true
}

func TestClusterReplicatesInOrder(t *testing.T) {
	c := newCluster(t, 3)
	m := measurement(1)
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, "")
	}
	c.proposeAll(context.Background(), "a", 50)
	for id, n := range c.nodes {
		waitFor(t, fmt.Sprintf("node %d to apply", id), func() bool { return containsAll(n.entries(), "a", 50) })
	}
	ref := c.nodes[1].entries()
	for id, n := range c.nodes {
		got := n.entries()
		if len(got) != len(ref) {
			continue // a lagging node is checked by the wait above; order is compared on the common prefix
		}
		for i := range got {
			if !bytes.Equal(got[i], ref[i]) {
				t.Fatalf("node %d entry %d = %q, node 1 has %q", id, i, got[i], ref[i])
			}
		}
	}
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
	c.proposeAll(context.Background(), "b", 20)
	for id := uint64(1); id <= 3; id++ {
		n := c.nodes[id]
		waitFor(t, fmt.Sprintf("node %d to apply", id), func() bool { return containsAll(n.entries(), "b", 20) })
	}
	// The impostor never receives a single entry: no consensus message crossed.
	if got := impostor.entries(); len(got) != 0 {
		t.Fatalf("impostor applied %d entries", len(got))
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
	if impostor.raft.Leader() != 0 && impostor.raft.IsLeader() {
		t.Fatal("impostor became leader")
	}
}

func TestRestartKeepsLogAndCatchesUp(t *testing.T) {
	c := newCluster(t, 3)
	m := measurement(1)
	dirs := map[uint64]string{}
	for id := uint64(1); id <= 3; id++ {
		dirs[id] = t.TempDir()
		c.start(id, m, dirs[id])
	}
	c.proposeAll(context.Background(), "c", 10)
	for _, n := range c.nodes {
		waitFor(t, "apply", func() bool { return containsAll(n.entries(), "c", 10) })
	}
	// Stop node 3, write more, restart it: it resumes from its durable state
	// without re-applying and catches up.
	c.nodes[3].stop()
	c.proposeAll(context.Background(), "d", 10)
	n3 := c.start(3, m, dirs[3])
	waitFor(t, "node 3 to catch up", func() bool { return containsAll(n3.entries(), "d", 10) })
	if !containsAll(n3.entries(), "c", 10) {
		t.Fatal("node 3 lost entries across restart")
	}
	// Restart everything: state and log survive.
	for _, n := range c.nodes {
		n.stop()
	}
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, dirs[id])
	}
	c.proposeAll(context.Background(), "e", 5)
	for _, n := range c.nodes {
		waitFor(t, "apply after full restart", func() bool { return containsAll(n.entries(), "e", 5) && containsAll(n.entries(), "d", 10) })
	}
}

func TestFetchLedgerKey(t *testing.T) {
	c := newCluster(t, 2)
	m := measurement(1)
	c.start(1, m, "")
	n2 := c.start(2, m, "")
	var key []byte
	waitFor(t, "key", func() bool {
		k, ok, err := n2.tr.FetchLedgerKey(context.Background(), 1)
		key = k
		return err == nil && ok
	})
	if string(key) != "ledger-key-of-1" {
		t.Fatalf("key = %q", key)
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
	if err == nil || !strings.Contains(err.Error(), "consensus peering") {
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

// quietPebble discards Pebble's informational logs in tests.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func TestCompactionBelowEveryPeer(t *testing.T) {
	c := newCluster(t, 3)
	m := measurement(1)
	dirs := map[uint64]string{}
	for id := uint64(1); id <= 3; id++ {
		dirs[id] = t.TempDir()
		c.start(id, m, dirs[id])
	}
	c.proposeAll(context.Background(), "f", 40)
	for _, n := range c.nodes {
		waitFor(t, "apply", func() bool { return containsAll(n.entries(), "f", 40) })
	}
	// Node 3 goes down: the leader's minimum match stops at what node 3 stored.
	c.nodes[3].stop()
	c.proposeAll(context.Background(), "g", 40)
	// Proposals are appended asynchronously: wait until the live nodes
	// applied them, so the leader's log is past what node 3 stored.
	for id := uint64(1); id <= 2; id++ {
		n := c.nodes[id]
		waitFor(t, fmt.Sprintf("node %d to apply", id), func() bool { return containsAll(n.entries(), "g", 40) })
	}
	var leader *testNode
	waitFor(t, "a leader", func() bool { leader = c.leader(); return leader != nil })
	min, ok := leader.raft.MinMatch()
	if !ok {
		t.Fatal("MinMatch on the leader reported not leader")
	}
	last, _ := leader.raft.storage.Storage().LastIndex()
	if min >= last {
		t.Fatalf("min match %d not held back by the stopped node (last %d)", min, last)
	}
	// Compact at the minimum on every live node (through the log).
	if err := leader.raft.Propose(context.Background(), fmt.Appendf(nil, "compact:%d", min)); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		n := c.nodes[id]
		waitFor(t, fmt.Sprintf("node %d compacts", id), func() bool { return n.raft.FirstIndex() >= min })
	}
	// Node 3 returns and catches up from entries, without a snapshot.
	n3 := c.start(3, m, dirs[3])
	waitFor(t, "node 3 catches up", func() bool { return containsAll(n3.entries(), "g", 40) })
	// Everyone restarts from compacted storage and keeps going.
	for _, n := range c.nodes {
		n.stop()
	}
	for id := uint64(1); id <= 3; id++ {
		c.start(id, m, dirs[id])
	}
	c.proposeAll(context.Background(), "h", 5)
	for _, n := range c.nodes {
		waitFor(t, "apply after restart", func() bool { return containsAll(n.entries(), "h", 5) })
	}
	if c.nodes[1].raft.FirstIndex() < min && c.nodes[2].raft.FirstIndex() < min {
		t.Fatal("compaction did not survive the restart")
	}
}
