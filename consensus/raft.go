// Package consensus drives etcd raft (go.etcd.io/raft/v3) for a teeup node:
// durable raft state in the node's Pebble DB, raft messages over mutual
// attested TLS between nodes with an identical MRENCLAVE, and delivery of
// committed entries, in order, to the application.
//
// The loop follows raft's contract: persist HardState, entries and snapshot
// (synced) before sending the Ready's messages, apply committed entries,
// then Advance.
package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Applier receives committed normal entries in log order. index is the
// raft log index; data is the entry payload (never empty). An error stops
// the node: the application cannot make progress safely.
type Applier func(index uint64, data []byte) error

// Config configures a raft node.
type Config struct {
	// ID is this node's raft id (from genesis, ≥1).
	ID uint64
	// Members are all voting node ids of the static membership.
	Members []uint64
	// DB is the node's Pebble DB; raft uses the "r/" key space.
	DB *pebble.DB
	// Applied is the last index the application has applied durably.
	Applied uint64
	// Apply receives committed entries.
	Apply Applier
	// Transport carries messages; Run wires itself into it.
	Transport *Transport
	// TickInterval is raft's logical clock (default 100ms): elections
	// after 10 ticks, heartbeats every tick.
	TickInterval time.Duration
	// Logger receives structured logs.
	Logger *slog.Logger
}

// Raft is a running raft node.
type Raft struct {
	cfg     Config
	log     *slog.Logger
	storage *DiskStorage
	node    raft.Node

	leader   atomic.Uint64
	term     atomic.Uint64
	commit   atomic.Uint64
	applied  atomic.Uint64
	stopped  chan struct{}
	stopOnce sync.Once
	err      error

	confMu sync.Mutex
	conf   *pb.ConfState
}

// Start opens raft storage and starts the node: a fresh node bootstraps
// the static membership, a restarted one resumes from its log.
func Start(cfg Config) (*Raft, error) {
	if cfg.ID == 0 || cfg.DB == nil || cfg.Apply == nil || cfg.Transport == nil {
		return nil, errors.New("raft: id, db, apply and transport are required")
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := OpenStorage(cfg.DB)
	if err != nil {
		return nil, err
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              10,
		HeartbeatTick:             1,
		Storage:                   st.Storage(),
		Applied:                   cfg.Applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  8 << 20,
		MaxUncommittedEntriesSize: 64 << 20,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		Logger:                    &raftLogger{l: cfg.Logger.With("component", "raft")},
	}
	r := &Raft{cfg: cfg, log: cfg.Logger.With("component", "consensus"), storage: st, stopped: make(chan struct{})}
	if st.Empty() {
		peers := make([]raft.Peer, 0, len(cfg.Members))
		for _, id := range cfg.Members {
			peers = append(peers, raft.Peer{ID: id})
		}
		r.node = raft.StartNode(rc, peers)
		r.log.Info("raft bootstrapped", "id", cfg.ID, "members", cfg.Members)
	} else {
		r.node = raft.RestartNode(rc)
		last, _ := st.Storage().LastIndex()
		r.log.Info("raft restarted", "id", cfg.ID, "applied", cfg.Applied, "last_index", last)
	}
	r.applied.Store(cfg.Applied)
	return r, nil
}

// Step delivers a message from a peer.
func (r *Raft) Step(m *pb.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.node.Step(ctx, m); err != nil && !errors.Is(err, raft.ErrStopped) {
		r.log.Debug("step", "from", m.GetFrom(), "type", m.GetType().String(), "err", err)
	}
}

// ReportUnreachable tells raft a peer could not be reached.
func (r *Raft) ReportUnreachable(id uint64) { r.node.ReportUnreachable(id) }

// Propose submits data for replication. It returns once raft accepted the
// proposal locally (it may still be lost if leadership changes); callers
// learn the outcome when the entry is applied.
func (r *Raft) Propose(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errors.New("raft: empty proposal")
	}
	select {
	case <-r.stopped:
		return errors.New("raft: stopped")
	default:
	}
	if err := r.node.Propose(ctx, data); err != nil {
		return fmt.Errorf("raft: propose: %w", err)
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

// AppliedIndex returns the last index handed to Apply.
func (r *Raft) AppliedIndex() uint64 { return r.applied.Load() }

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

// Run drives raft until ctx is cancelled or applying fails.
func (r *Raft) Run(ctx context.Context) error {
	ticker := time.NewTicker(r.cfg.TickInterval)
	defer ticker.Stop()
	defer r.stop(nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			r.node.Tick()
		case rd := <-r.node.Ready():
			if err := r.handleReady(rd); err != nil {
				r.log.Error("raft loop stopped", "err", err)
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
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		r.term.Store(rd.HardState.GetTerm())
		r.commit.Store(rd.HardState.GetCommit())
	}
	if err := r.storage.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		return err
	}
	r.cfg.Transport.Send(rd.Messages)
	for _, e := range rd.CommittedEntries {
		if err := r.applyEntry(e); err != nil {
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
			if err := r.cfg.Apply(e.GetIndex(), e.GetData()); err != nil {
				return fmt.Errorf("apply entry %d: %w", e.GetIndex(), err)
			}
		}
	case pb.EntryType_EntryConfChange:
		cc := &pb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("decode conf change at %d: %w", e.GetIndex(), err)
		}
		if err := r.setConf(r.node.ApplyConfChange(cc)); err != nil {
			return err
		}
	case pb.EntryType_EntryConfChangeV2:
		cc := &pb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), cc); err != nil {
			return fmt.Errorf("decode conf change at %d: %w", e.GetIndex(), err)
		}
		if err := r.setConf(r.node.ApplyConfChange(cc)); err != nil {
			return err
		}
	}
	r.applied.Store(e.GetIndex())
	return nil
}

func (r *Raft) setConf(cs *pb.ConfState) error {
	r.confMu.Lock()
	r.conf = cs
	r.confMu.Unlock()
	return r.storage.SaveConfState(cs)
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

// MinMatch returns, on the leader, the highest log index that every voter
// (the leader included) has durably stored: compacting below it never
// forces raft to send a snapshot. ok is false on followers.
func (r *Raft) MinMatch() (index uint64, ok bool) {
	st := r.node.Status()
	if st.RaftState != raft.StateLeader || len(st.Progress) == 0 {
		return 0, false
	}
	first := true
	for _, pr := range st.Progress {
		if first || pr.Match < index {
			index, first = pr.Match, false
		}
	}
	return index, true
}

// FirstIndex returns the first log index still stored.
func (r *Raft) FirstIndex() uint64 {
	i, _ := r.storage.Storage().FirstIndex()
	return i
}

// CompactTo discards the raft log before index (bounded by what this node
// applied). It must be called from the Applier, which runs on the raft
// goroutine, while applying an entry after index.
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
	r.log.Info("raft log compacted", "first_index", r.FirstIndex())
	return nil
}
