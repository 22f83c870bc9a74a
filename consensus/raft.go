// Package consensus drives etcd raft (go.etcd.io/raft/v3) for a teeup node:
// durable raft state in the node's Pebble DB, raft messages over mutual
// attested TLS between nodes with an identical MRENCLAVE, delivery of
// committed entries, in order, to the application, and state transfer to
// peers the log cannot serve.
//
// The loop follows raft's contract: persist HardState, entries and snapshot
// (synced) before sending the Ready's messages, apply committed entries,
// then Advance. A Ready that carries a snapshot is not persisted into the
// live database: the application records an install marker and the node
// restarts, installing the staged state before raft starts again (see
// package statetransfer), so raft never believes in state it does not have.
package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// StateMachine is what raft drives: the application's state.
type StateMachine interface {
	// Apply applies the committed normal entry at index; data is never
	// empty. An error stops the node: it cannot make progress safely.
	Apply(index uint64, data []byte) error
	// CheckConfChange decides, deterministically from the state at the
	// entry, whether a committed configuration change takes effect: nil
	// allows it; an error makes it a no-op on every node.
	CheckConfChange(index uint64, cc *pb.ConfChangeV2) error
	// SaveConfState durably records the membership as of index together
	// with the applied index.
	SaveConfState(index uint64, cs *pb.ConfState) error
	// InstallSnapshot is called when raft restores snap (whose state the
	// transport staged before handing it to raft): the application records
	// the install, with hs as the raft hard state to resume with. Run then
	// returns ErrInstallSnapshot and the node must restart.
	InstallSnapshot(snap *pb.Snapshot, hs *pb.HardState) error
}

// ErrInstallSnapshot is returned by Run when raft restored a snapshot: the
// node must restart so that the staged state is installed.
var ErrInstallSnapshot = errors.New("raft restored a snapshot: restart to install it")

// Config configures a raft node.
type Config struct {
	// ID is this node's raft id (≥1).
	ID uint64
	// Members are the genesis voters: a node with an empty log that is one
	// of them bootstraps the genesis configuration (the same entries on
	// every genesis node); any other node with an empty log joins and waits
	// for the leader to send it the log or a snapshot.
	Members []uint64
	// DB is the node's Pebble DB; raft uses the ledger.RaftPrefix key space.
	DB *pebble.DB
	// Applied is the last index the application has applied durably.
	Applied uint64
	// ConfState is the membership as of Applied (nil: what raft storage
	// recorded, for ledgers written before it was kept with the state).
	ConfState *pb.ConfState
	// Machine receives committed entries.
	Machine StateMachine
	// Transport carries messages; Run wires itself into it.
	Transport *Transport
	// TickInterval is raft's logical clock (default 100ms): elections
	// after 10 ticks, heartbeats every tick.
	TickInterval time.Duration
	// CompactEvery: the log is compacted once it holds this many applied
	// entries (default 4096); CompactKeep applied entries stay for peers
	// that lag a little (default 1024). A peer further behind receives a
	// state snapshot.
	CompactEvery uint64
	CompactKeep  uint64
	// CompactBytes also compacts the log once its applied entries hold
	// this many bytes (default DefaultCompactBytes), keeping at most a
	// quarter of it: the log is held in memory and read whole when the
	// node restarts (a flag day's new node does, inside the window in
	// which client ingress is closed), so under load — blocks of hundreds
	// of payments — a count alone would let it grow to hundreds of MB.
	CompactBytes int
	// CampaignFirst makes this node campaign as soon as it is connected to
	// a quorum of voters, once, instead of waiting for an election timeout.
	// A network that starts all at once (a flag day's new nodes) sets it
	// on one node, chosen the same way by all, so the first election takes
	// a round trip rather than one to two election timeouts. Campaigning
	// is always safe in raft; on the wrong node it only costs an election.
	CampaignFirst bool
	// Logger receives structured logs.
	Logger *slog.Logger
}

// Raft is a running raft node.
type Raft struct {
	cfg     Config
	log     *slog.Logger
	storage *DiskStorage
	node    raft.Node
	boot    BootInfo

	leader   atomic.Uint64
	term     atomic.Uint64
	commit   atomic.Uint64
	applied  atomic.Uint64
	stopped  chan struct{}
	stopOnce sync.Once
	err      error

	// ack is the highest index this node acknowledged (a successful
	// MsgAppResp) in term ackTerm since it started: heartbeats may commit
	// up to it (see clampHeartbeat).
	ackMu   sync.Mutex
	ackTerm uint64
	ackIdx  uint64

	confMu sync.Mutex
	conf   *pb.ConfState

	// amnesia is, per follower, when (term and time) this leader last
	// acted on the follower's loss of acknowledged entries.
	amnesiaMu sync.Mutex
	amnesia   map[uint64]amnesiaAttempt

	// compactRequest, when not zero, is 1 + the number of applied entries
	// a requested compaction keeps (RequestCompaction); the raft goroutine
	// takes it on its next tick.
	compactRequest atomic.Uint64
}

// Start opens raft storage and starts the node.
func Start(cfg Config) (*Raft, error) {
	if cfg.ID == 0 || cfg.DB == nil || cfg.Machine == nil || cfg.Transport == nil {
		return nil, errors.New("raft: id, db, state machine and transport are required")
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.CompactEvery == 0 {
		cfg.CompactEvery = 4096
	}
	if cfg.CompactKeep == 0 || cfg.CompactKeep > cfg.CompactEvery {
		cfg.CompactKeep = min(1024, cfg.CompactEvery)
	}
	if cfg.CompactBytes <= 0 {
		cfg.CompactBytes = DefaultCompactBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := OpenStorage(cfg.DB, cfg.ConfState)
	if err != nil {
		return nil, err
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              electionTicks,
		HeartbeatTick:             1,
		Storage:                   st.Storage(),
		Applied:                   cfg.Applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  8 << 20,
		MaxUncommittedEntriesSize: 64 << 20,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    &raftLogger{l: cfg.Logger.With("component", "raft")},
	}
	inc, err := NewIncarnation()
	if err != nil {
		return nil, err
	}
	r := &Raft{cfg: cfg, log: cfg.Logger.With("component", "consensus"), storage: st, stopped: make(chan struct{}),
		amnesia: make(map[uint64]amnesiaAttempt), conf: cfg.ConfState}
	isGenesisMember := false
	for _, id := range cfg.Members {
		isGenesisMember = isGenesisMember || id == cfg.ID
	}
	switch {
	case st.Empty() && isGenesisMember:
		peers := make([]raft.Peer, 0, len(cfg.Members))
		for _, id := range cfg.Members {
			peers = append(peers, raft.Peer{ID: id})
		}
		r.node = raft.StartNode(rc, peers)
		r.log.Info("raft bootstrapped the genesis membership", "id", cfg.ID, "members", cfg.Members)
	case st.Empty():
		r.node = raft.RestartNode(rc)
		r.log.Info("raft joining with an empty log: waiting for the leader", "id", cfg.ID)
	default:
		r.node = raft.RestartNode(rc)
		last, _ := st.Storage().LastIndex()
		r.log.Info("raft restarted", "id", cfg.ID, "applied", cfg.Applied, "last_index", last)
	}
	hs, _, _ := st.Storage().InitialState()
	last, _ := st.Storage().LastIndex()
	r.boot = BootInfo{Incarnation: inc, LastIndex: last, Commit: hs.GetCommit()}
	if st.Empty() && isGenesisMember {
		r.boot.Commit = uint64(len(cfg.Members)) // the bootstrap entries StartNode committed
		r.boot.LastIndex = r.boot.Commit
	}
	r.applied.Store(cfg.Applied)
	r.commit.Store(r.boot.Commit)
	return r, nil
}

// soleVoter reports whether this node is the only voter it knows of.
func (r *Raft) soleVoter() bool {
	v := r.knownVoters()
	if len(v) == 0 && len(r.cfg.Members) == 1 && r.cfg.Members[0] == r.cfg.ID && r.storage.Empty() {
		return true // bootstrapping a one-node genesis
	}
	return len(v) == 1 && v[0] == r.cfg.ID
}

// knownVoters returns the voters raft applied last, or what the raft
// storage recorded before anything was applied.
func (r *Raft) knownVoters() []uint64 {
	if cs := r.ConfState(); cs != nil {
		return cs.GetVoters()
	}
	_, cs, err := r.storage.Storage().InitialState()
	if err != nil {
		return nil
	}
	return cs.GetVoters()
}

// Boot returns this process's boot info.
func (r *Raft) Boot() BootInfo { return r.boot }

// Hooks returns the hooks that connect the transport to this node.
func (r *Raft) Hooks() RaftHooks {
	return RaftHooks{
		Deliver:         r.Step,
		DeliverSnapshot: r.stepSnapshot,
		Unreachable:     r.ReportUnreachable,
		SnapshotDone: func(id uint64, ok bool) {
			status := raft.SnapshotFinish
			if !ok {
				status = raft.SnapshotFailure
			}
			r.node.ReportSnapshot(id, status)
		},
	}
}

// Step delivers a message from a peer. Snapshot messages are dropped here:
// they reach raft only through stepSnapshot, once their state is staged.
func (r *Raft) Step(m *pb.Message) {
	switch m.GetType() {
	case pb.MessageType_MsgSnap:
		r.log.Warn("dropped a snapshot message without staged state", "from", m.GetFrom())
		return
	case pb.MessageType_MsgHeartbeat:
		m = r.clampHeartbeat(m)
	case pb.MessageType_MsgAppResp:
		if m.GetReject() {
			r.checkRejection(m)
		}
	}
	r.step(m)
}

func (r *Raft) stepSnapshot(m *pb.Message) { r.step(m) }

func (r *Raft) step(m *pb.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.node.Step(ctx, m); err != nil && !errors.Is(err, raft.ErrStopped) {
		r.log.Debug("step", "from", m.GetFrom(), "type", m.GetType().String(), "err", err)
	}
}

// clampHeartbeat limits the commit index a heartbeat carries to what this
// node knows to match the leader: what it had committed when it started,
// or what it acknowledged to this term's leader since. Raft attaches
// min(match, committed) to heartbeats, where match is the leader's memory
// of what this node stored; after this node lost state (its disk wiped or
// restored from an older copy) that memory is wrong, and an unclamped
// heartbeat would crash raft ("tocommit out of range") or, worse, commit
// stale entries of an old term the restored log still holds.
func (r *Raft) clampHeartbeat(m *pb.Message) *pb.Message {
	limit := r.boot.Commit
	r.ackMu.Lock()
	if r.ackTerm == m.GetTerm() && r.ackIdx > limit {
		limit = r.ackIdx
	}
	r.ackMu.Unlock()
	if m.GetCommit() <= limit {
		return m
	}
	c := proto.Clone(m).(*pb.Message)
	c.Commit = new(limit)
	return c
}

// noteAcks records the acknowledgements in msgs (already persisted).
func (r *Raft) noteAcks(msgs []*pb.Message) {
	for _, m := range msgs {
		if m.GetType() != pb.MessageType_MsgAppResp || m.GetReject() {
			continue
		}
		r.ackMu.Lock()
		switch {
		case m.GetTerm() > r.ackTerm:
			r.ackTerm, r.ackIdx = m.GetTerm(), m.GetIndex()
		case m.GetTerm() == r.ackTerm && m.GetIndex() > r.ackIdx:
			r.ackIdx = m.GetIndex()
		}
		r.ackMu.Unlock()
	}
}

// ReportUnreachable tells raft a peer could not be reached.
func (r *Raft) ReportUnreachable(id uint64) { r.node.ReportUnreachable(id) }

// ErrStopped is returned by proposals to a stopped node.
var ErrStopped = errors.New("raft: stopped")

// Propose submits data for replication. It returns once raft accepted the
// proposal locally (it may still be lost if leadership changes); callers
// learn the outcome when the entry is applied.
func (r *Raft) Propose(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errors.New("raft: empty proposal")
	}
	select {
	case <-r.stopped:
		return ErrStopped
	default:
	}
	if err := r.node.Propose(ctx, data); err != nil {
		return fmt.Errorf("raft: propose: %w", err)
	}
	return nil
}

// ProposeConfChange submits a membership change.
func (r *Raft) ProposeConfChange(ctx context.Context, cc *pb.ConfChangeV2) error {
	select {
	case <-r.stopped:
		return ErrStopped
	default:
	}
	if err := r.node.ProposeConfChange(ctx, cc); err != nil {
		return fmt.Errorf("raft: propose conf change: %w", err)
	}
	return nil
}

// Leader returns the current leader id (0 when unknown).
func (r *Raft) Leader() uint64 { return r.leader.Load() }

// IsLeader reports whether this node leads.
func (r *Raft) IsLeader() bool { return r.leader.Load() == r.cfg.ID }

// Term returns the current term.
func (r *Raft) Term() uint64 { return r.term.Load() }

// CommitIndex returns the last known commit index.
func (r *Raft) CommitIndex() uint64 { return r.commit.Load() }

// AppliedIndex returns the last index handed to the state machine.
func (r *Raft) AppliedIndex() uint64 { return r.applied.Load() }

// ConfState returns the membership raft applied last.
func (r *Raft) ConfState() *pb.ConfState {
	r.confMu.Lock()
	defer r.confMu.Unlock()
	if r.conf == nil {
		return nil
	}
	return proto.Clone(r.conf).(*pb.ConfState)
}

// TermAt returns the term of the entry at index.
func (r *Raft) TermAt(index uint64) (uint64, error) {
	t, err := r.storage.Storage().Term(index)
	if err != nil {
		return 0, fmt.Errorf("raft: term of %d: %w", index, err)
	}
	return t, nil
}

// Done is closed when the node stops.
func (r *Raft) Done() <-chan struct{} { return r.stopped }

// Err returns why the node stopped, if it stopped on an error.
func (r *Raft) Err() error {
	select {
	case <-r.stopped:
		return r.err
	default:
		return nil
	}
}

// Run drives raft until ctx is cancelled, applying fails, or a snapshot
// must be installed (ErrInstallSnapshot).
func (r *Raft) Run(ctx context.Context) error {
	ticker := time.NewTicker(r.cfg.TickInterval)
	defer ticker.Stop()
	defer r.stop(nil)
	if r.soleVoter() {
		// Nobody else can vote: do not wait out an election timeout.
		if err := r.node.Campaign(ctx); err != nil {
			r.log.Debug("campaign", "err", err)
		}
	}
	firstCampaign := campaignFirst{pending: r.cfg.CampaignFirst}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			r.node.Tick()
			r.compactOnRequest()
			if firstCampaign.due(r) {
				r.log.Info("campaigning at once: connected to a quorum of voters at start")
				if err := r.node.Campaign(ctx); err != nil {
					r.log.Debug("campaign", "err", err)
				}
			}
		case rd := <-r.node.Ready():
			if err := r.handleReady(rd); err != nil {
				if errors.Is(err, ErrInstallSnapshot) {
					r.log.Info("stopping raft to install a snapshot", "index", rd.Snapshot.GetMetadata().GetIndex())
				} else {
					r.log.Error("raft loop stopped", "err", err)
				}
				r.stop(err)
				return err
			}
		}
	}
}

func (r *Raft) stop(err error) {
	r.stopOnce.Do(func() {
		r.err = err
		r.node.Stop()
		close(r.stopped)
	})
}

func (r *Raft) handleReady(rd raft.Ready) error {
	if rd.SoftState != nil {
		prev := r.leader.Swap(rd.SoftState.Lead)
		if prev != rd.SoftState.Lead {
			r.log.Info("leader changed", "leader", rd.SoftState.Lead, "state", rd.SoftState.RaftState.String())
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		// Nothing of this Ready is persisted into the live database (as if
		// the process crashed before it): the application records the
		// install and the node restarts into the staged state.
		hs := rd.HardState
		if hs == nil || raft.IsEmptyHardState(hs) {
			cur, _, err := r.storage.Storage().InitialState()
			if err != nil {
				return fmt.Errorf("install snapshot: %w", err)
			}
			hs = cur
		}
		hs = proto.Clone(hs).(*pb.HardState)
		hs.Commit = new(rd.Snapshot.GetMetadata().GetIndex())
		if err := r.cfg.Machine.InstallSnapshot(rd.Snapshot, hs); err != nil {
			return fmt.Errorf("install snapshot: %w", err)
		}
		return ErrInstallSnapshot
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		r.term.Store(rd.HardState.GetTerm())
		r.commit.Store(rd.HardState.GetCommit())
	}
	if err := r.storage.Save(rd.HardState, rd.Entries, nil); err != nil {
		return err
	}
	r.noteAcks(rd.Messages)
	r.cfg.Transport.Send(rd.Messages)
	for _, e := range rd.CommittedEntries {
		if err := r.applyEntry(e); err != nil {
			return err
		}
	}
	if len(rd.CommittedEntries) > 0 {
		if err := r.maybeCompact(); err != nil {
			return err
		}
	}
	r.node.Advance()
	return nil
}

func (r *Raft) applyEntry(e *pb.Entry) error {
	switch e.GetType() {
	case pb.EntryType_EntryNormal:
		if len(e.GetData()) > 0 {
			if err := r.cfg.Machine.Apply(e.GetIndex(), e.GetData()); err != nil {
				return fmt.Errorf("apply entry %d: %w", e.GetIndex(), err)
			}
		}
	case pb.EntryType_EntryConfChange:
		cc := &pb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("decode conf change at %d: %w", e.GetIndex(), err)
		}
		if err := r.applyConfChange(e.GetIndex(), cc.AsV2()); err != nil {
			return err
		}
	case pb.EntryType_EntryConfChangeV2:
		cc := &pb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("decode conf change at %d: %w", e.GetIndex(), err)
		}
		if err := r.applyConfChange(e.GetIndex(), cc); err != nil {
			return err
		}
	}
	r.applied.Store(e.GetIndex())
	return nil
}

func (r *Raft) applyConfChange(index uint64, cc *pb.ConfChangeV2) error {
	if err := r.cfg.Machine.CheckConfChange(index, cc); err != nil {
		r.log.Warn("configuration change refused by the state: applied as a no-op", "index", index, "err", err)
		cc = &pb.ConfChangeV2{}
	}
	cs := r.node.ApplyConfChange(cc)
	r.confMu.Lock()
	r.conf = cs
	r.confMu.Unlock()
	if len(cc.GetChanges()) > 0 {
		r.log.Info("membership changed", "index", index, "voters", cs.GetVoters(), "learners", cs.GetLearners())
	}
	if err := r.cfg.Machine.SaveConfState(index, cs); err != nil {
		return fmt.Errorf("save conf state at %d: %w", index, err)
	}
	return nil
}

// RequestCompaction asks the raft goroutine to compact the log on its next
// tick, keeping the newest keep applied entries. A node halted for a flag
// day asks: its successor reads the log whole when it starts, inside the
// window in which client ingress is closed, and every member is at the
// halt height (one that lags behind the kept entries receives a state
// snapshot, as always).
func (r *Raft) RequestCompaction(keep uint64) { r.compactRequest.Store(keep + 1) }

// compactOnRequest runs a compaction RequestCompaction asked for.
func (r *Raft) compactOnRequest() {
	req := r.compactRequest.Swap(0)
	if req == 0 {
		return
	}
	keep := req - 1
	applied := r.applied.Load()
	if applied <= keep {
		return
	}
	if err := r.CompactTo(applied - keep); err != nil {
		r.log.Warn("requested raft log compaction failed", "err", err)
		return
	}
	r.log.Info("raft log compacted on request", "first_index", r.FirstIndex(), "applied", applied)
}

// DefaultCompactBytes is Config.CompactBytes's default.
const DefaultCompactBytes = 64 << 20

// maybeCompact drops applied entries once there are CompactEvery of them
// or they hold CompactBytes, keeping some for peers that lag a little
// (compactIndex).
func (r *Raft) maybeCompact() error {
	applied := r.applied.Load()
	first := r.FirstIndex()
	if applied < first {
		return nil
	}
	ents, err := r.storage.Storage().Entries(first, applied+1, math.MaxUint64)
	if err != nil {
		return nil // compacted or not stored yet: nothing to decide now
	}
	sizes := make([]int, len(ents))
	for i, e := range ents {
		sizes[i] = len(e.GetData())
	}
	to := compactIndex(first, sizes, r.cfg.CompactEvery, r.cfg.CompactKeep, r.cfg.CompactBytes)
	if to == 0 {
		return nil
	}
	return r.CompactTo(to)
}

// compactIndex decides a compaction of the raft log: sizes are the data
// sizes of its applied entries, from index first on. Once there are every
// of them, or they hold maxBytes, it returns the index to compact to
// (CompactTo: it and the entries before it are discarded): the newest keep
// entries stay, but no more of them than hold maxBytes/4 of data. 0 means
// no compaction.
func compactIndex(first uint64, sizes []int, every, keep uint64, maxBytes int) uint64 {
	n := uint64(len(sizes))
	total := 0
	for _, s := range sizes {
		total += s
	}
	if n == 0 || (n < every && total < maxBytes) {
		return 0
	}
	applied := first + n - 1
	to := first
	if n > keep {
		to = applied - keep
	}
	kept := 0
	for i := n; i > 0; i-- {
		idx := first + i - 1
		if idx <= to {
			break
		}
		kept += sizes[i-1]
		if kept > maxBytes/4 {
			to = idx
			break
		}
	}
	if to <= first {
		return 0
	}
	return to
}

// raftLogger adapts slog to raft's logger interface. Raft's Fatal and Panic
// are kept as panics, which raft's own invariants rely on.
type raftLogger struct{ l *slog.Logger }

func (g *raftLogger) Debug(v ...any)                 { g.l.Debug(fmt.Sprint(v...)) }
func (g *raftLogger) Debugf(format string, v ...any) { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g *raftLogger) Info(v ...any)                  { g.l.Debug(fmt.Sprint(v...)) }
func (g *raftLogger) Infof(format string, v ...any)  { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g *raftLogger) Warning(v ...any)               { g.l.Warn(fmt.Sprint(v...)) }
func (g *raftLogger) Warningf(format string, v ...any) {
	g.l.Warn(fmt.Sprintf(format, v...))
}
func (g *raftLogger) Error(v ...any)                 { g.l.Error(fmt.Sprint(v...)) }
func (g *raftLogger) Errorf(format string, v ...any) { g.l.Error(fmt.Sprintf(format, v...)) }
func (g *raftLogger) Fatal(v ...any)                 { g.l.Error(fmt.Sprint(v...)); panic(fmt.Sprint(v...)) }
func (g *raftLogger) Fatalf(format string, v ...any) {
	g.l.Error(fmt.Sprintf(format, v...))
	panic(fmt.Sprintf(format, v...))
}
func (g *raftLogger) Panic(v ...any) { g.l.Error(fmt.Sprint(v...)); panic(fmt.Sprint(v...)) }
func (g *raftLogger) Panicf(format string, v ...any) {
	g.l.Error(fmt.Sprintf(format, v...))
	panic(fmt.Sprintf(format, v...))
}

// FirstIndex returns the first log index still stored.
func (r *Raft) FirstIndex() uint64 {
	i, _ := r.storage.Storage().FirstIndex()
	return i
}

// LastIndex returns the last log index stored.
func (r *Raft) LastIndex() uint64 {
	i, _ := r.storage.Storage().LastIndex()
	return i
}

// CompactTo discards the raft log before index (bounded by what this node
// applied). It runs on the raft goroutine.
func (r *Raft) CompactTo(index uint64) error {
	if applied := r.applied.Load(); index > applied {
		index = applied
	}
	if index <= r.FirstIndex() {
		return nil
	}
	r.confMu.Lock()
	cs := r.conf
	r.confMu.Unlock()
	if cs == nil {
		_, cs0, err := r.storage.Storage().InitialState()
		if err != nil {
			return fmt.Errorf("raft: compact: %w", err)
		}
		cs = cs0
	}
	if err := r.storage.Compact(index, cs, nil); err != nil {
		return err
	}
	r.log.Debug("raft log compacted", "first_index", r.FirstIndex())
	return nil
}

// Progress is the leader's view of one peer's replication.
type Progress struct {
	ID     uint64
	Match  uint64
	Voter  bool
	Active bool
}

// Progresses returns, on the leader, every member's replication progress
// (nil on followers).
func (r *Raft) Progresses() []Progress {
	st := r.node.Status()
	if st.RaftState != raft.StateLeader {
		return nil
	}
	voters := map[uint64]bool{}
	for id := range st.Config.Voters.IDs() {
		voters[id] = true
	}
	out := make([]Progress, 0, len(st.Progress))
	for id, pr := range st.Progress {
		out = append(out, Progress{ID: id, Match: pr.Match, Voter: voters[id], Active: pr.RecentActive})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ErrNoTransferTarget means no other voter is fit to take over leadership.
var ErrNoTransferTarget = errors.New("no voter fit to take over leadership")

// TransferLeadership, on the leader, hands leadership to the most
// up-to-date active voter other than itself and exclude, and returns it.
func (r *Raft) TransferLeadership(ctx context.Context, reason string, exclude ...uint64) (uint64, error) {
	skip := map[uint64]bool{r.cfg.ID: true}
	for _, id := range exclude {
		skip[id] = true
	}
	var best Progress
	for _, pr := range r.Progresses() {
		if skip[pr.ID] || !pr.Voter || !pr.Active {
			continue
		}
		if best.ID == 0 || pr.Match > best.Match {
			best = pr
		}
	}
	if best.ID == 0 {
		return 0, fmt.Errorf("transfer leadership (%s): %w", reason, ErrNoTransferTarget)
	}
	r.log.Warn("transferring leadership", "to", best.ID, "reason", reason)
	r.node.TransferLeadership(ctx, r.cfg.ID, best.ID)
	return best.ID, nil
}

// TransferLeadershipTo, on the leader, hands leadership to node to.
func (r *Raft) TransferLeadershipTo(ctx context.Context, to uint64, reason string) {
	r.log.Warn("transferring leadership", "to", to, "reason", reason)
	r.node.TransferLeadership(ctx, r.cfg.ID, to)
}

// campaignFirst is Config.CampaignFirst's progress: it campaigns at most
// once, within the first election timeout, while no leader is known.
type campaignFirst struct {
	pending bool
	ticks   int
}

// due reports, once per tick, whether to campaign now.
func (c *campaignFirst) due(r *Raft) bool {
	if !c.pending {
		return false
	}
	c.ticks++
	if c.ticks > electionTicks || r.Leader() != 0 {
		c.pending = false
		return false
	}
	if !r.quorumConnected() {
		return false
	}
	c.pending = false
	return true
}

// quorumConnected reports whether this node and the voters it has a raft
// connection to are a quorum.
func (r *Raft) quorumConnected() bool {
	voters := r.knownVoters()
	if len(voters) == 0 {
		return false
	}
	connected := map[uint64]bool{r.cfg.ID: true}
	for _, p := range r.cfg.Transport.Peers() {
		if p.Connected {
			connected[p.ID] = true
		}
	}
	n := 0
	for _, v := range voters {
		if connected[v] {
			n++
		}
	}
	return n > len(voters)/2
}

// electionTicks is raft's election timeout in ticks.
const electionTicks = 10

// amnesiaAttempt records when a leader acted on a follower that lost
// acknowledged entries.
type amnesiaAttempt struct {
	term uint64
	at   time.Time
}

// checkRejection, on the leader, looks at a follower's rejection of an
// append before raft sees it. A follower rejects an append at an index at
// or below what it acknowledged before only if it lost entries it had
// stored: its disk was wiped, or restored from an older copy. Raft never
// lowers its memory of a follower's match index (it ignores such a
// rejection as stale), so it would keep crediting the follower with
// entries it no longer has: replication to it would stall, and commit
// quorums would count entries it does not hold. A new term resets every
// follower's progress, so the leader hands leadership to another
// up-to-date voter (and that leader probes the follower from scratch).
func (r *Raft) checkRejection(m *pb.Message) {
	if !r.IsLeader() || m.GetTerm() != r.Term() {
		return
	}
	from := m.GetFrom()
	var match uint64
	for _, pr := range r.Progresses() {
		if pr.ID == from {
			match = pr.Match
		}
	}
	if m.GetIndex() > match || match == 0 {
		return
	}
	// Raft aborts a leadership transfer that did not complete within an
	// election timeout and the leader then stays in the same term, so a
	// follower still rejecting after that is handled again.
	retry := 2 * electionTicks * r.cfg.TickInterval // two election timeouts
	now := time.Now()
	r.amnesiaMu.Lock()
	if last, ok := r.amnesia[from]; ok && last.term == m.GetTerm() && now.Sub(last.at) < retry {
		r.amnesiaMu.Unlock()
		return // already being handled in this term
	}
	r.amnesia[from] = amnesiaAttempt{term: m.GetTerm(), at: now}
	r.amnesiaMu.Unlock()
	r.log.Warn("follower lost entries it had acknowledged (its state was wiped or restored from an older copy)",
		"peer", from, "acknowledged", match, "rejected_at", m.GetIndex())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := r.TransferLeadership(ctx, fmt.Sprintf("peer %d lost state", from), from); err != nil {
		r.log.Error("cannot reset replication to a peer that lost state", "peer", from, "err", err)
	}
}
