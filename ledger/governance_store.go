package ledger

import (
	"errors"
	"fmt"

	"github.com/teeup/teeup/tee"
)

// readGovState reads the g/state record; its absence is the empty state.
func readGovState(r reader) (*govState, error) {
	v, ok, err := getFrom(r, keyGovState)
	if err != nil {
		return nil, fmt.Errorf("read governance state: %w", err)
	}
	if !ok {
		return &govState{}, nil
	}
	g, err := decodeGovState(v)
	if err != nil {
		return nil, fmt.Errorf("corrupt governance state: %w", err)
	}
	return g, nil
}

// upgradeHaltReason returns why a node of measurement self may not commit
// the block at height under schedule s ("" if it may).
func upgradeHaltReason(s *Schedule, self tee.Measurement, height uint64) string {
	if s == nil || height <= s.ActivationHeight || self == s.NodeMREnclave {
		return ""
	}
	return fmt.Sprintf("past scheduled upgrade: block %d is above activation height %d of release %s (node MRENCLAVE %s), and this node's MRENCLAVE is %s",
		height, s.ActivationHeight, s.Version, s.NodeMREnclave.Short(), self.Short())
}

// UpgradeHaltHeight returns the height this node must not commit past:
// the activation height of the schedule in force when this store's
// SelfMeasurement is not the scheduled node MRENCLAVE. ok is false when no
// schedule halts this node.
func (s *Store) UpgradeHaltHeight() (height uint64, ok bool, err error) {
	sched, ok, err := s.ActiveSchedule()
	if err != nil || !ok || sched.NodeMREnclave == s.self {
		return 0, false, err
	}
	return sched.ActivationHeight, true, nil
}

// ActiveSchedule returns the upgrade schedule in force (see Schedule);
// ok is false if there is none.
func (s *Store) ActiveSchedule() (Schedule, bool, error) {
	g, err := readGovState(s.db)
	if err != nil {
		return Schedule{}, false, err
	}
	if g.schedule == nil {
		return Schedule{}, false, nil
	}
	return *g.schedule, true, nil
}

// Release returns the proposed release of a version; ok is false if it was
// never proposed.
func (s *Store) Release(version string) (ReleaseRecord, bool, error) {
	v, ok, err := s.get(govVersionKey(version))
	if err != nil || !ok {
		return ReleaseRecord{}, false, err
	}
	seq, err := decodeU64("release index of "+version, v)
	if err != nil {
		return ReleaseRecord{}, false, err
	}
	r, err := readRelease(s.db, seq)
	if err != nil {
		return ReleaseRecord{}, false, err
	}
	return *r, true, nil
}

func readRelease(r reader, seq uint64) (*ReleaseRecord, error) {
	v, ok, err := getFrom(r, govReleaseKey(seq))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("corrupt governance: release record %d is missing", seq)
	}
	rec, err := decodeReleaseRecord(v)
	if err != nil {
		return nil, fmt.Errorf("corrupt governance: release record %d: %w", seq, err)
	}
	return rec, nil
}

// Releases returns every proposed release, in proposal order.
func (s *Store) Releases() ([]ReleaseRecord, error) {
	out, err := scanReleases(s.db)
	if err != nil {
		return nil, fmt.Errorf("read releases: %w", err)
	}
	return out, nil
}

func scanReleases(r iterable) ([]ReleaseRecord, error) {
	var out []ReleaseRecord
	err := scan(r, []byte(prefixGovRelease), false, func(k, v []byte) (bool, error) {
		rec, err := decodeReleaseRecord(v)
		if err != nil {
			return false, fmt.Errorf("corrupt governance: release record %x: %w", k, err)
		}
		out = append(out, *rec)
		return true, nil
	})
	return out, err
}

// ApprovedReleases returns the approved releases in approval order, which
// is also increasing version order.
func (s *Store) ApprovedReleases() ([]ReleaseRecord, error) {
	out, err := approvedFrom(s.db)
	if err != nil {
		return nil, fmt.Errorf("read approved releases: %w", err)
	}
	return out, nil
}

// dbReader reads and iterates: a DB or a snapshot.
type dbReader interface {
	reader
	iterable
}

// approvedSeqs returns the sequence numbers of the approved releases, in
// approval order.
func approvedSeqs(r iterable) ([]uint64, error) {
	var seqs []uint64
	err := scan(r, []byte(prefixGovApproved), false, func(k, v []byte) (bool, error) {
		seq, err := decodeU64("approved release index", v)
		if err != nil {
			return false, err
		}
		seqs = append(seqs, seq)
		return true, nil
	})
	return seqs, err
}

func approvedFrom(r dbReader) ([]ReleaseRecord, error) {
	seqs, err := approvedSeqs(r)
	if err != nil {
		return nil, err
	}
	out := make([]ReleaseRecord, 0, len(seqs))
	for _, seq := range seqs {
		rec, err := readRelease(r, seq)
		if err != nil {
			return nil, err
		}
		out = append(out, *rec)
	}
	return out, nil
}

// Aborts returns the aborted schedules, oldest first.
func (s *Store) Aborts() ([]AbortRecord, error) {
	out, err := scanAborts(s.db)
	if err != nil {
		return nil, fmt.Errorf("read aborts: %w", err)
	}
	return out, nil
}

func scanAborts(r iterable) ([]AbortRecord, error) {
	var out []AbortRecord
	err := scan(r, []byte(prefixGovAbort), false, func(k, v []byte) (bool, error) {
		rec, err := decodeAbortRecord(v)
		if err != nil {
			return false, fmt.Errorf("corrupt governance: abort record %x: %w", k, err)
		}
		out = append(out, *rec)
		return true, nil
	})
	return out, err
}

// Rollbacks returns the approved rollbacks, oldest first.
func (s *Store) Rollbacks() ([]RollbackRecord, error) {
	out, err := scanRollbacks(s.db)
	if err != nil {
		return nil, fmt.Errorf("read rollbacks: %w", err)
	}
	return out, nil
}

func scanRollbacks(r iterable) ([]RollbackRecord, error) {
	var out []RollbackRecord
	err := scan(r, []byte(prefixGovRollback), false, func(k, v []byte) (bool, error) {
		rec, err := decodeRollbackRecord(v)
		if err != nil {
			return false, fmt.Errorf("corrupt governance: rollback record %x: %w", k, err)
		}
		out = append(out, *rec)
		return true, nil
	})
	return out, err
}

// Governance returns the whole governance state, read from one consistent
// snapshot of the database.
func (s *Store) Governance() (*GovernanceView, error) {
	snap := s.db.NewSnapshot()
	v, err := governanceFrom(snap)
	if err == nil {
		v.Running, err = runningFrom(snap, s.genesis)
	}
	if cerr := snap.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("read governance: %w", err)
	}
	nog, _, err := s.Groups()
	if err != nil {
		return nil, fmt.Errorf("read governance: %w", err)
	}
	v.Quorum = nog.Threshold
	v.Operators = len(nog.Keys)
	return v, nil
}

func governanceFrom(r dbReader) (*GovernanceView, error) {
	raw, ok, err := getFrom(r, keyHead)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("corrupt ledger: no head")
	}
	head, err := decodeHead(raw)
	if err != nil {
		return nil, fmt.Errorf("corrupt ledger: head: %w", err)
	}
	g, err := readGovState(r)
	if err != nil {
		return nil, err
	}
	v := &GovernanceView{
		Height:        head.Height,
		Schedule:      g.schedule,
		ScheduleVotes: g.scheduleVotes,
		AbortVotes:    g.abortVotes,
		RollbackVotes: g.rollbackVotes,
	}
	if v.Releases, err = scanReleases(r); err != nil {
		return nil, err
	}
	// Releases are numbered from 0 in proposal order, the order of their
	// keys: with as many records as the counter says, record seq is
	// v.Releases[seq].
	if uint64(len(v.Releases)) != g.releases {
		return nil, fmt.Errorf("corrupt governance: %d release records, the state counts %d", len(v.Releases), g.releases)
	}
	seqs, err := approvedSeqs(r)
	if err != nil {
		return nil, err
	}
	if uint64(len(seqs)) != g.approved {
		return nil, fmt.Errorf("corrupt governance: %d approved releases, the state counts %d", len(seqs), g.approved)
	}
	for _, seq := range seqs {
		if seq >= uint64(len(v.Releases)) {
			return nil, fmt.Errorf("corrupt governance: approved release %d of %d", seq, len(v.Releases))
		}
		v.Approved = append(v.Approved, v.Releases[seq].Version)
	}
	if v.Aborts, err = scanAborts(r); err != nil {
		return nil, err
	}
	if v.Rollbacks, err = scanRollbacks(r); err != nil {
		return nil, err
	}
	return v, nil
}
