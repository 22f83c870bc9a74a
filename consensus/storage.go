package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/teeup/teeup/ledger"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Raft's durable state lives in the node's Pebble DB under
// ledger.RaftPrefix ("r/"), the part of the key space the ledger leaves to
// consensus, so that one Pebble checkpoint captures both consistently:
//
//	r/hs           HardState
//	r/snap         Snapshot (metadata and data)
//	r/e/<index>    Entry, index as 8 bytes big-endian
//	r/conf         ConfState as last applied
var (
	keyConfState   = []byte(ledger.RaftPrefix + "conf")
	keyHardState   = []byte(ledger.RaftPrefix + "hs")
	keySnapshot    = []byte(ledger.RaftPrefix + "snap")
	entryPrefix    = []byte(ledger.RaftPrefix + "e/")
	entryPrefixEnd = []byte(ledger.RaftPrefix + "e0") // '0' follows '/' in ASCII
)

func entryKey(index uint64) []byte {
	k := make([]byte, len(entryPrefix)+8)
	copy(k, entryPrefix)
	binary.BigEndian.PutUint64(k[len(entryPrefix):], index)
	return k
}

// DiskStorage persists raft state in Pebble and serves it to raft through
// an in-memory raft.MemoryStorage loaded at start.
type DiskStorage struct {
	db   *pebble.DB
	mem  *raft.MemoryStorage
	view raft.Storage
}

// confView serves raft the membership the application recorded with its
// applied index, instead of the one of the last compaction (entries
// between the compaction and the applied index are not replayed).
type confView struct {
	*raft.MemoryStorage
	conf *pb.ConfState
}

// InitialState returns the hard state and the application's membership.
func (v confView) InitialState() (*pb.HardState, *pb.ConfState, error) {
	hs, _, err := v.MemoryStorage.InitialState()
	return hs, v.conf, err
}

// OpenStorage loads raft's durable state from db. conf, if not nil, is the
// membership as of the application's applied index (see Config.ConfState).
func OpenStorage(db *pebble.DB, conf *pb.ConfState) (*DiskStorage, error) {
	s := &DiskStorage{db: db, mem: raft.NewMemoryStorage()}
	s.view = s.mem
	if conf != nil {
		s.view = confView{MemoryStorage: s.mem, conf: conf}
	}
	haveSnap := false
	if raw, closer, err := db.Get(keySnapshot); err == nil {
		haveSnap = true
		snap := &pb.Snapshot{}
		err := proto.Unmarshal(raw, snap)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("raft storage: decode snapshot: %w", err)
		}
		if err := s.mem.ApplySnapshot(snap); err != nil {
			return nil, fmt.Errorf("raft storage: load snapshot: %w", err)
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("raft storage: read snapshot: %w", err)
	}
	// Membership applied from conf-change entries is not replayed on a
	// restart (raft resumes after the applied index), so it is restored
	// from its persisted copy through an index-0 snapshot.
	if raw, closer, err := db.Get(keyConfState); err == nil && !haveSnap {
		cs := &pb.ConfState{}
		err := proto.Unmarshal(raw, cs)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("raft storage: decode conf state: %w", err)
		}
		boot := &pb.Snapshot{Metadata: &pb.SnapshotMetadata{ConfState: cs, Index: new(uint64(0)), Term: new(uint64(0))}}
		if err := s.mem.ApplySnapshot(boot); err != nil {
			return nil, fmt.Errorf("raft storage: load conf state: %w", err)
		}
	} else if err != nil && !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("raft storage: read conf state: %w", err)
	} else if err == nil {
		closer.Close()
	}
	if raw, closer, err := db.Get(keyHardState); err == nil {
		hs := &pb.HardState{}
		err := proto.Unmarshal(raw, hs)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("raft storage: decode hard state: %w", err)
		}
		if err := s.mem.SetHardState(hs); err != nil {
			return nil, fmt.Errorf("raft storage: load hard state: %w", err)
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("raft storage: read hard state: %w", err)
	}
	first, _ := s.mem.FirstIndex()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: entryKey(first), UpperBound: entryPrefixEnd})
	if err != nil {
		return nil, fmt.Errorf("raft storage: %w", err)
	}
	var ents []*pb.Entry
	want := first
	for it.First(); it.Valid(); it.Next() {
		e := &pb.Entry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			it.Close()
			return nil, fmt.Errorf("raft storage: decode entry: %w", err)
		}
		if e.GetIndex() != want {
			it.Close()
			return nil, fmt.Errorf("raft storage: log has a hole: entry %d where %d was expected", e.GetIndex(), want)
		}
		want++
		ents = append(ents, e)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("raft storage: %w", err)
	}
	if err := s.mem.Append(ents); err != nil {
		return nil, fmt.Errorf("raft storage: load entries: %w", err)
	}
	return s, nil
}

// Storage returns the raft.Storage to hand to raft.
func (s *DiskStorage) Storage() raft.Storage { return s.view }

// Empty reports whether no raft state was ever written.
func (s *DiskStorage) Empty() bool {
	hs, _, _ := s.mem.InitialState()
	last, _ := s.mem.LastIndex()
	return raft.IsEmptyHardState(hs) && last == 0
}

// Save durably writes a Ready's hard state, entries and snapshot, in one
// synced batch, then makes them visible to raft. Entries at or after the
// first new index replace the old tail, which is deleted key by key (a
// range tombstone per batch would cost the memtable dearly).
func (s *DiskStorage) Save(hs *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	b := s.db.NewBatch()
	defer b.Close()
	if snap != nil && !raft.IsEmptySnap(snap) {
		raw, err := proto.Marshal(snap)
		if err != nil {
			return fmt.Errorf("raft storage: encode snapshot: %w", err)
		}
		if err := b.Set(keySnapshot, raw, nil); err != nil {
			return fmt.Errorf("raft storage: %w", err)
		}
		if err := b.DeleteRange(entryPrefix, entryKey(snap.GetMetadata().GetIndex()+1), nil); err != nil {
			return fmt.Errorf("raft storage: %w", err)
		}
	}
	if len(ents) > 0 {
		for _, e := range ents {
			raw, err := proto.Marshal(e)
			if err != nil {
				return fmt.Errorf("raft storage: encode entry: %w", err)
			}
			if err := b.Set(entryKey(e.GetIndex()), raw, nil); err != nil {
				return fmt.Errorf("raft storage: %w", err)
			}
		}
		last := ents[len(ents)-1].GetIndex()
		if old, _ := s.mem.LastIndex(); old > last {
			for i := last + 1; i <= old; i++ {
				if err := b.Delete(entryKey(i), nil); err != nil {
					return fmt.Errorf("raft storage: %w", err)
				}
			}
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		raw, err := proto.Marshal(hs)
		if err != nil {
			return fmt.Errorf("raft storage: encode hard state: %w", err)
		}
		if err := b.Set(keyHardState, raw, nil); err != nil {
			return fmt.Errorf("raft storage: %w", err)
		}
	}
	if !b.Empty() {
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("raft storage: commit: %w", err)
		}
	}
	if snap != nil && !raft.IsEmptySnap(snap) {
		if err := s.mem.ApplySnapshot(snap); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
			return fmt.Errorf("raft storage: apply snapshot: %w", err)
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		if err := s.mem.SetHardState(hs); err != nil {
			return fmt.Errorf("raft storage: %w", err)
		}
	}
	if len(ents) > 0 {
		if err := s.mem.Append(ents); err != nil {
			return fmt.Errorf("raft storage: %w", err)
		}
	}
	return nil
}

// SaveConfState durably records the membership after a conf change.
func (s *DiskStorage) SaveConfState(cs *pb.ConfState) error {
	raw, err := proto.Marshal(cs)
	if err != nil {
		return fmt.Errorf("raft storage: encode conf state: %w", err)
	}
	if err := s.db.Set(keyConfState, raw, pebble.Sync); err != nil {
		return fmt.Errorf("raft storage: save conf state: %w", err)
	}
	return nil
}

// Compact records a snapshot at index (whose state the application already
// holds) and drops the log before it, on disk and in memory.
func (s *DiskStorage) Compact(index uint64, cs *pb.ConfState, data []byte) error {
	snap, err := s.mem.CreateSnapshot(index, cs, data)
	if err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			return nil
		}
		return fmt.Errorf("raft storage: snapshot at %d: %w", index, err)
	}
	raw, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("raft storage: encode snapshot: %w", err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(keySnapshot, raw, nil); err != nil {
		return fmt.Errorf("raft storage: %w", err)
	}
	if err := b.DeleteRange(entryPrefix, entryKey(index), nil); err != nil {
		return fmt.Errorf("raft storage: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raft storage: commit compaction: %w", err)
	}
	if err := s.mem.Compact(index); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("raft storage: compact: %w", err)
	}
	return nil
}

// WriteInstallState prepares a staged copy of a node's database (a peer's
// checkpoint) to become this node's: it replaces the raft state in it by
// snap's metadata and hs, with an empty log after the snapshot. It is
// idempotent.
func WriteInstallState(db *pebble.DB, hs *pb.HardState, snap *pb.Snapshot) error {
	meta := &pb.Snapshot{Metadata: snap.GetMetadata()}
	raw, err := proto.Marshal(meta)
	if err != nil {
		return fmt.Errorf("install raft state: %w", err)
	}
	rawHS, err := proto.Marshal(hs)
	if err != nil {
		return fmt.Errorf("install raft state: %w", err)
	}
	rawCS, err := proto.Marshal(snap.GetMetadata().GetConfState())
	if err != nil {
		return fmt.Errorf("install raft state: %w", err)
	}
	b := db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte(ledger.RaftPrefix), prefixEnd([]byte(ledger.RaftPrefix)), nil); err != nil {
		return fmt.Errorf("install raft state: %w", err)
	}
	for _, kv := range []struct{ k, v []byte }{{keySnapshot, raw}, {keyHardState, rawHS}, {keyConfState, rawCS}} {
		if err := b.Set(kv.k, kv.v, nil); err != nil {
			return fmt.Errorf("install raft state: %w", err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("install raft state: %w", err)
	}
	return nil
}

func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
