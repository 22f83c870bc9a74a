package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/statetransfer"
)

// Snapshots sends and receives a node's state snapshots (SnapshotSource
// and SnapshotSink) and records and prepares their installation. The
// application supplies how to checkpoint and verify its database.
type Snapshots struct {
	// Paths are the node's live ledger and incoming directories.
	Paths statetransfer.Paths
	// Outgoing is where checkpoints to send are made (same file system as
	// the ledger: checkpoints hard-link).
	Outgoing string
	// MakeCheckpoint writes a consistent checkpoint of the live database into
	// dir (which must not exist) and returns the applied index and the
	// membership it holds.
	MakeCheckpoint func(dir string) (applied uint64, cs *pb.ConfState, err error)
	// Term returns the raft term of the entry at index.
	Term func(index uint64) (uint64, error)
	// Committed returns what this node knows to be committed: a snapshot
	// at or below it is not needed.
	Committed func() uint64
	// Verify checks a received database against the snapshot's metadata
	// before it is staged.
	Verify func(ctx context.Context, dir string, meta *pb.SnapshotMetadata) error
	// Open opens a staged database to prepare its raft state.
	Open func(dir string) (*pebble.DB, error)
	// Limits bound what is accepted.
	Limits statetransfer.Limits
	// Faults, if set, is called at named points of a transfer (tests); an
	// error aborts there.
	Faults func(point string) error
	Logger *slog.Logger

	mu       sync.Mutex
	seq      uint64
	recv     *Receiving
	lastRecv *Receiving
}

// Receiving describes a state transfer into this node.
type Receiving struct {
	From    uint64    `json:"from"`
	Index   uint64    `json:"index"`
	Term    uint64    `json:"term"`
	Done    int64     `json:"done_bytes"`
	Total   int64     `json:"total_bytes"`
	Started time.Time `json:"started"`
	// Result and Error are set once it ended.
	Result string `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (s *Snapshots) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

func (s *Snapshots) fault(point string) error {
	if s.Faults == nil {
		return nil
	}
	return s.Faults(point)
}

// Receiving returns the transfer in progress (ok false if none) and the
// last one that ended.
func (s *Snapshots) Receiving() (cur Receiving, ok bool, last Receiving) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastRecv != nil {
		last = *s.lastRecv
	}
	if s.recv == nil {
		return Receiving{}, false, last
	}
	return *s.recv, true, last
}

// Checkpoint implements SnapshotSource.
func (s *Snapshots) Checkpoint(ctx context.Context) (string, SnapshotMeta, func(), error) {
	if err := os.MkdirAll(s.Outgoing, 0o700); err != nil {
		return "", SnapshotMeta{}, nil, fmt.Errorf("checkpoint: %w", err)
	}
	s.mu.Lock()
	s.seq++
	dir := filepath.Join(s.Outgoing, fmt.Sprintf("out-%d-%d", os.Getpid(), s.seq))
	s.mu.Unlock()
	release := func() { _ = os.RemoveAll(dir) }
	applied, cs, err := s.MakeCheckpoint(dir)
	if err != nil {
		release()
		return "", SnapshotMeta{}, nil, fmt.Errorf("checkpoint: %w", err)
	}
	if cs == nil || len(cs.GetVoters()) == 0 {
		release()
		return "", SnapshotMeta{}, nil, errors.New("checkpoint: the state records no membership")
	}
	term, err := s.Term(applied)
	if err != nil {
		release()
		return "", SnapshotMeta{}, nil, fmt.Errorf("checkpoint at %d: %w", applied, err)
	}
	return dir, SnapshotMeta{Index: applied, Term: term, ConfState: cs}, release, nil
}

// CleanOutgoing removes checkpoints left by an earlier process.
func (s *Snapshots) CleanOutgoing() error {
	if err := os.RemoveAll(s.Outgoing); err != nil {
		return fmt.Errorf("clean outgoing checkpoints: %w", err)
	}
	return nil
}

// ReceiveSnapshot implements SnapshotSink.
func (s *Snapshots) ReceiveSnapshot(ctx context.Context, from uint64, m *pb.Message, r io.Reader) statetransfer.Result {
	meta := m.GetSnapshot().GetMetadata()
	index, term := meta.GetIndex(), meta.GetTerm()
	log := s.log().With("from", from, "index", index, "term", term)
	if c := s.Committed(); index <= c {
		return statetransfer.Result{Code: statetransfer.ResultNotNeeded, Message: fmt.Sprintf("this node has committed %d", c)}
	}
	s.mu.Lock()
	if s.recv != nil {
		s.mu.Unlock()
		return statetransfer.Result{Code: statetransfer.ResultRefused, Message: "another state transfer is in progress"}
	}
	cur := &Receiving{From: from, Index: index, Term: term, Started: time.Now()}
	s.recv = cur
	s.mu.Unlock()
	res := s.receive(ctx, log, from, meta, r, cur)
	s.mu.Lock()
	cur.Result = res.Code.String()
	if res.Code == statetransfer.ResultRefused {
		cur.Error = res.Message
	}
	s.recv, s.lastRecv = nil, cur
	s.mu.Unlock()
	return res
}

func (s *Snapshots) receive(ctx context.Context, log *slog.Logger, from uint64, meta *pb.SnapshotMetadata, r io.Reader, cur *Receiving) statetransfer.Result {
	refuse := func(format string, args ...any) statetransfer.Result {
		msg := fmt.Sprintf(format, args...)
		log.Error("state transfer refused", "reason", msg)
		return statetransfer.Result{Code: statetransfer.ResultRefused, Message: msg}
	}
	name := statetransfer.SnapshotName(meta.GetIndex(), meta.GetTerm())
	dir, err := statetransfer.BeginReceive(s.Paths, name)
	if err != nil {
		return refuse("%v", err)
	}
	log.Info("state transfer: receiving")
	var lastLog time.Time
	st, err := statetransfer.ReceiveDir(ctx, r, dir, s.Limits, func(done, total int64) {
		s.mu.Lock()
		cur.Done, cur.Total = done, total
		s.mu.Unlock()
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			log.Info("state transfer: progress", "received_bytes", done, "total_bytes", total)
		}
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return refuse("receive: %v", err)
	}
	if err := s.fault("statetransfer.after-receive"); err != nil {
		return refuse("%v", err)
	}
	if err := s.Verify(ctx, dir, meta); err != nil {
		_ = os.RemoveAll(dir)
		return refuse("verify: %v", err)
	}
	if err := s.fault("statetransfer.after-verify"); err != nil {
		return refuse("%v", err)
	}
	if err := statetransfer.Stage(s.Paths, name); err != nil {
		_ = os.RemoveAll(dir)
		return refuse("%v", err)
	}
	if err := s.fault("statetransfer.after-stage"); err != nil {
		return refuse("%v", err)
	}
	log.Info("state transfer: received, verified and staged", "files", st.Files, "bytes", st.Bytes,
		"duration", time.Since(cur.Started).String())
	return statetransfer.Result{Code: statetransfer.ResultInstalled}
}

// RecordInstall records the decision to install snap (staged by
// ReceiveSnapshot) with hs: the install marker. After it, the next start
// installs the snapshot (see Recover).
func (s *Snapshots) RecordInstall(snap *pb.Snapshot, hs *pb.HardState) error {
	meta := snap.GetMetadata()
	name := statetransfer.SnapshotName(meta.GetIndex(), meta.GetTerm())
	if !statetransfer.IsStaged(s.Paths, name) {
		return fmt.Errorf("raft restored snapshot %d/%d, but no such snapshot is staged", meta.GetIndex(), meta.GetTerm())
	}
	raw, err := encodeInstall(hs, snap)
	if err != nil {
		return err
	}
	if err := statetransfer.WriteMarker(s.Paths, statetransfer.Marker{Staged: name, Index: meta.GetIndex(), Term: meta.GetTerm(), Raft: raw}); err != nil {
		return err
	}
	s.log().Info("state transfer: install recorded; restarting to install", "index", meta.GetIndex(), "term", meta.GetTerm())
	return s.fault("statetransfer.after-marker")
}

// Recover completes or discards an install left on disk (see
// statetransfer.Recover). It must run before the live database is opened.
func (s *Snapshots) Recover() (statetransfer.Outcome, *statetransfer.Marker, error) {
	return statetransfer.Recover(s.Paths, statetransfer.RecoverOptions{
		Prepare: s.prepare,
		AfterAction: func(a statetransfer.Action) error {
			return s.fault("statetransfer.install." + a.Point())
		},
	})
}

func (s *Snapshots) prepare(dir string, m statetransfer.Marker) error {
	hs, snap, err := decodeInstall(m.Raft)
	if err != nil {
		return err
	}
	if snap.GetMetadata().GetIndex() != m.Index || snap.GetMetadata().GetTerm() != m.Term {
		return fmt.Errorf("install marker names %d/%d but its raft state is for %d/%d", m.Index, m.Term,
			snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm())
	}
	db, err := s.Open(dir)
	if err != nil {
		return fmt.Errorf("open staged state: %w", err)
	}
	if err := WriteInstallState(db, hs, snap); err != nil {
		db.Close()
		return err
	}
	return db.Close()
}

func encodeInstall(hs *pb.HardState, snap *pb.Snapshot) ([]byte, error) {
	rawHS, err := proto.Marshal(hs)
	if err != nil {
		return nil, fmt.Errorf("encode install: %w", err)
	}
	rawSnap, err := proto.Marshal(&pb.Snapshot{Metadata: snap.GetMetadata()})
	if err != nil {
		return nil, fmt.Errorf("encode install: %w", err)
	}
	e := wire.NewEncoder(len(rawHS) + len(rawSnap) + 16)
	e.Var(rawHS)
	e.Var(rawSnap)
	return e.Bytes(), nil
}

func decodeInstall(b []byte) (*pb.HardState, *pb.Snapshot, error) {
	d := wire.NewDecoder("install record", b)
	rawHS := d.Var("hard state", 1<<16)
	rawSnap := d.Var("snapshot", 1<<20)
	if err := d.Finish(); err != nil {
		return nil, nil, err
	}
	hs, snap := &pb.HardState{}, &pb.Snapshot{}
	if err := proto.Unmarshal(rawHS, hs); err != nil {
		return nil, nil, fmt.Errorf("decode install: %w", err)
	}
	if err := proto.Unmarshal(rawSnap, snap); err != nil {
		return nil, nil, fmt.Errorf("decode install: %w", err)
	}
	return hs, snap, nil
}
