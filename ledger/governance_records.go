package ledger

import (
	"fmt"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
)

// Governance keys (see governance.go).
var keyGovState = []byte(GovernancePrefix + "state")

const (
	prefixGovRelease  = GovernancePrefix + "r/"
	prefixGovVersion  = GovernancePrefix + "v/"
	prefixGovApproved = GovernancePrefix + "a/"
	prefixGovAbort    = GovernancePrefix + "x/"
	prefixGovRollback = GovernancePrefix + "b/"
)

func govReleaseKey(seq uint64) []byte     { return heightKey(prefixGovRelease, seq) }
func govApprovedKey(n uint64) []byte      { return heightKey(prefixGovApproved, n) }
func govAbortKey(n uint64) []byte         { return heightKey(prefixGovAbort, n) }
func govRollbackKey(n uint64) []byte      { return heightKey(prefixGovRollback, n) }
func govVersionKey(version string) []byte { return append([]byte(prefixGovVersion), version...) }

// govStateVersion is the encoding version of the g/state record.
const govStateVersion = 1

// govState is the g/state record: counters, the schedule in force and the
// pending votes. Its zero value is a chain without governance.
type govState struct {
	releases  uint64 // proposed releases, the next release sequence number
	approved  uint64 // approved releases
	aborts    uint64
	rollbacks uint64
	schedule  *Schedule
	// Pending votes, at most one of each kind per member, in vote order.
	scheduleVotes []ScheduleVote
	abortVotes    []AbortVote
	rollbackVotes []RollbackVote
}

func encodeAddresses(e *wire.Encoder, as []Address) {
	e.U32(uint32(len(as)))
	for _, a := range as {
		e.Fixed(a[:])
	}
}

func decodeAddresses(d *wire.Decoder, field string) []Address {
	n := d.Count(field+" count", d.Remaining()/32)
	if d.Err() != nil {
		return nil
	}
	out := make([]Address, n)
	for i := range out {
		d.Fixed(field, out[i][:])
	}
	return out
}

func encodeSchedule(e *wire.Encoder, s *Schedule) {
	e.String(s.Version)
	e.Fixed(s.NodeMREnclave[:])
	e.U64(s.ActivationHeight)
	e.U64(s.ScheduledAt)
	encodeAddresses(e, s.Approvers)
}

func decodeSchedule(d *wire.Decoder) *Schedule {
	s := &Schedule{}
	s.Version = d.String("schedule version", maxVersionLen)
	d.Fixed("schedule mrenclave", s.NodeMREnclave[:])
	s.ActivationHeight = d.U64("activation height")
	s.ScheduledAt = d.U64("scheduled at")
	s.Approvers = decodeAddresses(d, "schedule approver")
	return s
}

func (g *govState) encode() []byte {
	e := wire.NewEncoder(256)
	e.U8(govStateVersion)
	e.U64(g.releases)
	e.U64(g.approved)
	e.U64(g.aborts)
	e.U64(g.rollbacks)
	e.Bool(g.schedule != nil)
	if g.schedule != nil {
		encodeSchedule(e, g.schedule)
	}
	e.U32(uint32(len(g.scheduleVotes)))
	for _, v := range g.scheduleVotes {
		e.Fixed(v.Member[:])
		e.String(v.Version)
		e.U64(v.ActivationHeight)
	}
	e.U32(uint32(len(g.abortVotes)))
	for _, v := range g.abortVotes {
		e.Fixed(v.Member[:])
		e.String(v.Reason)
	}
	e.U32(uint32(len(g.rollbackVotes)))
	for _, v := range g.rollbackVotes {
		e.Fixed(v.Member[:])
		e.String(v.From)
		e.String(v.To)
	}
	return e.Bytes()
}

// Smallest encodings of a vote, to bound decoded counts by the input.
const (
	minScheduleVoteLen = 32 + 4 + 8
	minAbortVoteLen    = 32 + 4
	minRollbackVoteLen = 32 + 4 + 4
)

func decodeGovState(b []byte) (*govState, error) {
	g := &govState{}
	d := wire.NewDecoder("governance state", b)
	if v := d.U8("encoding version"); d.Err() == nil && v != govStateVersion {
		return nil, fmt.Errorf("decode governance state: encoding version %d, this binary reads %d", v, govStateVersion)
	}
	g.releases = d.U64("releases")
	g.approved = d.U64("approved")
	g.aborts = d.U64("aborts")
	g.rollbacks = d.U64("rollbacks")
	if d.Bool("schedule present") {
		g.schedule = decodeSchedule(d)
	}
	n := d.Count("schedule votes", d.Remaining()/minScheduleVoteLen)
	for i := 0; i < n && d.Err() == nil; i++ {
		var v ScheduleVote
		d.Fixed("member", v.Member[:])
		v.Version = d.String("version", maxVersionLen)
		v.ActivationHeight = d.U64("activation height")
		g.scheduleVotes = append(g.scheduleVotes, v)
	}
	n = d.Count("abort votes", d.Remaining()/minAbortVoteLen)
	for i := 0; i < n && d.Err() == nil; i++ {
		var v AbortVote
		d.Fixed("member", v.Member[:])
		v.Reason = d.String("reason", MaxAbortReasonLen)
		g.abortVotes = append(g.abortVotes, v)
	}
	n = d.Count("rollback votes", d.Remaining()/minRollbackVoteLen)
	for i := 0; i < n && d.Err() == nil; i++ {
		var v RollbackVote
		d.Fixed("member", v.Member[:])
		v.From = d.String("from", maxVersionLen)
		v.To = d.String("to", maxVersionLen)
		g.rollbackVotes = append(g.rollbackVotes, v)
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if g.approved > g.releases {
		return nil, fmt.Errorf("decode governance state: %d approved releases of %d proposed", g.approved, g.releases)
	}
	return g, nil
}

// encodeReleaseRecord encodes a release record; Release is not stored (it
// is parsed from Raw on read).
func encodeReleaseRecord(r *ReleaseRecord) []byte {
	e := wire.NewEncoder(128 + len(r.Raw) + 32*len(r.Approvers))
	e.String(r.Version)
	e.Fixed(r.ManifestHash[:])
	e.Var(r.Raw)
	e.Fixed(r.Proposer[:])
	e.U64(r.ProposedAt)
	e.U64(r.ApprovedAt)
	encodeAddresses(e, r.Approvers)
	return e.Bytes()
}

func decodeReleaseRecord(b []byte) (*ReleaseRecord, error) {
	r := &ReleaseRecord{}
	d := wire.NewDecoder("release record", b)
	r.Version = d.String("version", maxVersionLen)
	d.Fixed("manifest hash", r.ManifestHash[:])
	r.Raw = d.Var("release", MaxGovernancePayloadSize)
	d.Fixed("proposer", r.Proposer[:])
	r.ProposedAt = d.U64("proposed at")
	r.ApprovedAt = d.U64("approved at")
	r.Approvers = decodeAddresses(d, "approver")
	if err := d.Finish(); err != nil {
		return nil, err
	}
	sr, err := release.Parse(r.Raw)
	if err != nil {
		return nil, fmt.Errorf("decode release record %s: %w", r.Version, err)
	}
	if sr.Manifest.Version != r.Version {
		return nil, fmt.Errorf("decode release record %s: it holds release %s", r.Version, sr.Manifest.Version)
	}
	r.Release = sr
	return r, nil
}

func encodeAbortRecord(r *AbortRecord) []byte {
	e := wire.NewEncoder(128 + len(r.Reason) + 32*len(r.Approvers))
	e.String(r.Version)
	e.Fixed(r.NodeMREnclave[:])
	e.U64(r.ActivationHeight)
	e.U64(r.ScheduledAt)
	e.U64(r.Height)
	e.String(r.Reason)
	encodeAddresses(e, r.Approvers)
	return e.Bytes()
}

func decodeAbortRecord(b []byte) (*AbortRecord, error) {
	r := &AbortRecord{}
	d := wire.NewDecoder("abort record", b)
	r.Version = d.String("version", maxVersionLen)
	d.Fixed("mrenclave", r.NodeMREnclave[:])
	r.ActivationHeight = d.U64("activation height")
	r.ScheduledAt = d.U64("scheduled at")
	r.Height = d.U64("height")
	r.Reason = d.String("reason", MaxAbortReasonLen)
	r.Approvers = decodeAddresses(d, "approver")
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return r, nil
}

func encodeRollbackRecord(r *RollbackRecord) []byte {
	e := wire.NewEncoder(64 + 32*len(r.Approvers))
	e.String(r.From)
	e.String(r.To)
	e.U64(r.Height)
	encodeAddresses(e, r.Approvers)
	return e.Bytes()
}

func decodeRollbackRecord(b []byte) (*RollbackRecord, error) {
	r := &RollbackRecord{}
	d := wire.NewDecoder("rollback record", b)
	r.From = d.String("from", maxVersionLen)
	r.To = d.String("to", maxVersionLen)
	r.Height = d.U64("height")
	r.Approvers = decodeAddresses(d, "approver")
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return r, nil
}
