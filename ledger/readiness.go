package ledger

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Flag-day readiness
//
// A flag day completes, or is aborted, by rules of the chain, so that no
// coordinator has to decide for the hosts:
//
//   - TxReadiness is a member's readiness record for the schedule in force:
//     signed by the member's registered node identity key — which after the
//     key handover the new node holds — it carries the release's version,
//     the activation height H, the node measurement, the new node's
//     attestation result for every peer and the ids of its test payments.
//     It is accepted only on the new release's chain (a store whose own
//     measurement is the scheduled one), in a block above H and at most
//     ReadinessDeadline blocks past H, once per member.
//   - The schedule becomes ready when readiness records of
//     ReadinessQuorum(n) members — a majority of the n active members —
//     are committed. New nodes open client ingress from then on.
//   - At block H+ReadinessDeadline the members without a record are marked
//     absent; if the schedule is not ready by then, it expires: no record
//     is accepted any more, so it can never become ready on this chain.
//   - TxUpgradeFailure is a vote that a member's new node failed, signed by
//     the member's node key (the old node, back after a rollback) or by the
//     member's operator. It is accepted only on the old release's chain (a
//     store whose measurement is not the scheduled one, halted at H), once
//     per member. Like abort votes it takes effect when admitted: the old
//     chain builds no block at H. When FailureQuorum(n) = n −
//     ReadinessQuorum(n) + 1 members voted, readiness is impossible and the
//     schedule is aborted (an AbortRecord is kept), so old nodes continue.
//
// Safety rests on one rule the agent keeps in its journal: for one
// schedule, a host signs at most one of a readiness record and a failure
// vote, unless the new chain recorded the schedule expired (then no
// readiness can count any more and every host may vote failure). Ready
// needs ReadinessQuorum(n) signers, abort FailureQuorum(n) others; the two
// add up to n+1, so both cannot happen.
//
// Storage: g/y/<H:8><version> → the readiness state of that schedule.

// ReadinessDeadline is how many blocks past the activation height the
// readiness records may arrive in. It is a consensus rule, the same on
// every node.
const ReadinessDeadline = 25

// Readiness payload limits.
const (
	// MaxReadinessPeers bounds the attestation results of a record.
	MaxReadinessPeers = MaxMembers
	// MaxReadinessTestTxs bounds the test transaction ids of a record.
	MaxReadinessTestTxs = 8
	// MaxFailureReasonLen bounds a failure vote's reason, in bytes.
	MaxFailureReasonLen = MaxAbortReasonLen
)

// Flag-day transaction kinds. They are governance kinds (the sender needs
// no balance), but their senders are node keys and member operators, not
// the Node Operators Group.
const (
	// TxReadiness records that a member's new node is ready; payload: an
	// encoded ReadinessReport.
	TxReadiness TxKind = 11
	// TxUpgradeFailure votes that a member's new node failed; payload: an
	// encoded UpgradeFailure.
	TxUpgradeFailure TxKind = 12
)

// IsFlagDay reports whether the kind is a flag-day readiness kind.
func (k TxKind) IsFlagDay() bool { return k == TxReadiness || k == TxUpgradeFailure }

// ReadinessQuorum is how many of n active members must record readiness
// for a schedule to become ready: a majority.
func ReadinessQuorum(n int) int { return n/2 + 1 }

// FailureQuorum is how many of n active members' failure votes make
// readiness impossible: n − ReadinessQuorum(n) + 1.
func FailureQuorum(n int) int { return n - ReadinessQuorum(n) + 1 }

// PeerResult is a readiness record's attestation result for one peer.
type PeerResult struct {
	Node uint64
	OK   bool
}

// ReadinessReport is the payload of a TxReadiness.
type ReadinessReport struct {
	Member           uint64
	Version          string
	ActivationHeight uint64
	Measurement      tee.Measurement
	Peers            []PeerResult
	TestTxs          []Hash
}

// UpgradeFailure is the payload of a TxUpgradeFailure.
type UpgradeFailure struct {
	Member           uint64
	Version          string
	ActivationHeight uint64
	Reason           string
}

// ReadinessRecord is a committed readiness record.
type ReadinessRecord struct {
	ReadinessReport
	Signer Address
	// Height is the block that committed it.
	Height uint64
	TxID   Hash
}

// FailureRecord is an admitted failure vote.
type FailureRecord struct {
	Member uint64
	Signer Address
	Reason string
	// Height is the head when it was admitted.
	Height uint64
	TxID   Hash
}

// Readiness is the readiness state of one schedule (version, activation
// height) on this chain.
type Readiness struct {
	Version          string
	ActivationHeight uint64
	NodeMREnclave    tee.Measurement
	// Members are the active members' ids when the state was created;
	// Quorum is ReadinessQuorum(len(Members)).
	Members  []uint64
	Quorum   int
	Records  []ReadinessRecord
	Failures []FailureRecord
	// ReadyAt is the block at which the quorum of records was committed
	// (0: not ready).
	ReadyAt uint64
	// ExpiredAt is the block H+ReadinessDeadline if the schedule was not
	// ready by then (0: not expired).
	ExpiredAt uint64
	// Absent are the members without a record at the deadline.
	Absent []uint64
	// AbortedAt is the head at which failure votes aborted the schedule
	// (0: not aborted by failure votes).
	AbortedAt uint64
}

// Deadline is the last block that may commit a readiness record.
func (r *Readiness) Deadline() uint64 { return r.ActivationHeight + ReadinessDeadline }

// Ready reports whether the schedule became ready.
func (r *Readiness) Ready() bool { return r.ReadyAt != 0 }

// HasRecord reports whether member recorded readiness.
func (r *Readiness) HasRecord(member uint64) bool {
	return slices.ContainsFunc(r.Records, func(x ReadinessRecord) bool { return x.Member == member })
}

// HasFailure reports whether member's failure vote was admitted.
func (r *Readiness) HasFailure(member uint64) bool {
	return slices.ContainsFunc(r.Failures, func(x FailureRecord) bool { return x.Member == member })
}

// EncodeReadinessReport returns the canonical encoding of a report.
func EncodeReadinessReport(p ReadinessReport) []byte {
	e := wire.NewEncoder(96 + len(p.Version) + 9*len(p.Peers) + 32*len(p.TestTxs))
	e.U64(p.Member)
	e.String(p.Version)
	e.U64(p.ActivationHeight)
	e.Fixed(p.Measurement[:])
	e.U32(uint32(len(p.Peers)))
	for _, r := range p.Peers {
		e.U64(r.Node)
		e.Bool(r.OK)
	}
	e.U32(uint32(len(p.TestTxs)))
	for _, id := range p.TestTxs {
		e.Fixed(id[:])
	}
	return e.Bytes()
}

// DecodeReadinessReport decodes a report from untrusted bytes: a member
// id, a semantic version, a non-zero activation height, at most
// MaxReadinessPeers peer results (distinct peers, not the member) and at
// most MaxReadinessTestTxs test transaction ids.
func DecodeReadinessReport(b []byte) (ReadinessReport, error) {
	var p ReadinessReport
	d := wire.NewDecoder("readiness report", b)
	p.Member = d.U64("member")
	p.Version = d.String("version", maxVersionLen)
	p.ActivationHeight = d.U64("activation height")
	d.Fixed("measurement", p.Measurement[:])
	n := d.Count("peers", min(MaxReadinessPeers, d.Remaining()/9))
	for i := 0; i < n && d.Err() == nil; i++ {
		p.Peers = append(p.Peers, PeerResult{Node: d.U64("peer"), OK: d.Bool("peer ok")})
	}
	n = d.Count("test txs", min(MaxReadinessTestTxs, d.Remaining()/32))
	for i := 0; i < n && d.Err() == nil; i++ {
		var h Hash
		d.Fixed("test tx", h[:])
		p.TestTxs = append(p.TestTxs, h)
	}
	if err := d.Finish(); err != nil {
		return ReadinessReport{}, err
	}
	if err := checkFlagDayTarget(p.Member, p.Version, p.ActivationHeight); err != nil {
		return ReadinessReport{}, fmt.Errorf("decode readiness report: %w", err)
	}
	seen := map[uint64]bool{}
	for _, r := range p.Peers {
		if r.Node == 0 || r.Node == p.Member || seen[r.Node] {
			return ReadinessReport{}, fmt.Errorf("decode readiness report: peer %d is zero, the member itself or listed twice", r.Node)
		}
		seen[r.Node] = true
	}
	return p, nil
}

// EncodeUpgradeFailure returns the canonical encoding of a failure vote.
func EncodeUpgradeFailure(p UpgradeFailure) []byte {
	e := wire.NewEncoder(32 + len(p.Version) + len(p.Reason))
	e.U64(p.Member)
	e.String(p.Version)
	e.U64(p.ActivationHeight)
	e.String(p.Reason)
	return e.Bytes()
}

// DecodeUpgradeFailure decodes a failure vote from untrusted bytes: a
// member id, a semantic version, a non-zero activation height and a
// non-empty UTF-8 reason of at most MaxFailureReasonLen bytes.
func DecodeUpgradeFailure(b []byte) (UpgradeFailure, error) {
	var p UpgradeFailure
	d := wire.NewDecoder("upgrade failure", b)
	p.Member = d.U64("member")
	p.Version = d.String("version", maxVersionLen)
	p.ActivationHeight = d.U64("activation height")
	p.Reason = d.String("reason", MaxFailureReasonLen)
	if err := d.Finish(); err != nil {
		return UpgradeFailure{}, err
	}
	if err := checkFlagDayTarget(p.Member, p.Version, p.ActivationHeight); err != nil {
		return UpgradeFailure{}, fmt.Errorf("decode upgrade failure: %w", err)
	}
	if p.Reason == "" || !utf8.ValidString(p.Reason) {
		return UpgradeFailure{}, errors.New("decode upgrade failure: the reason is empty or not UTF-8")
	}
	return p, nil
}

func checkFlagDayTarget(member uint64, version string, h uint64) error {
	if member == 0 {
		return errors.New("member id is zero")
	}
	if err := release.ValidateVersion(version); err != nil {
		return err
	}
	if h == 0 {
		return errors.New("activation height is zero")
	}
	return nil
}

const prefixGovReadiness = GovernancePrefix + "y/"

func govReadinessKey(h uint64, version string) []byte {
	return append(heightKey(prefixGovReadiness, h), version...)
}

// readinessVersion is the encoding version of a readiness state.
const readinessVersion = 1

func encodeReadiness(r *Readiness) []byte {
	e := wire.NewEncoder(256)
	e.U8(readinessVersion)
	e.String(r.Version)
	e.U64(r.ActivationHeight)
	e.Fixed(r.NodeMREnclave[:])
	e.U32(uint32(len(r.Members)))
	for _, m := range r.Members {
		e.U64(m)
	}
	e.U32(uint32(len(r.Records)))
	for _, x := range r.Records {
		e.Var(EncodeReadinessReport(x.ReadinessReport))
		e.Fixed(x.Signer[:])
		e.U64(x.Height)
		e.Fixed(x.TxID[:])
	}
	e.U32(uint32(len(r.Failures)))
	for _, f := range r.Failures {
		e.U64(f.Member)
		e.Fixed(f.Signer[:])
		e.String(f.Reason)
		e.U64(f.Height)
		e.Fixed(f.TxID[:])
	}
	e.U64(r.ReadyAt)
	e.U64(r.ExpiredAt)
	e.U32(uint32(len(r.Absent)))
	for _, m := range r.Absent {
		e.U64(m)
	}
	e.U64(r.AbortedAt)
	return e.Bytes()
}

func decodeReadiness(b []byte) (*Readiness, error) {
	r := &Readiness{}
	d := wire.NewDecoder("readiness state", b)
	if v := d.U8("encoding version"); d.Err() == nil && v != readinessVersion {
		return nil, fmt.Errorf("decode readiness state: encoding version %d, this binary reads %d", v, readinessVersion)
	}
	r.Version = d.String("version", maxVersionLen)
	r.ActivationHeight = d.U64("activation height")
	d.Fixed("mrenclave", r.NodeMREnclave[:])
	n := d.Count("members", d.Remaining()/8)
	for i := 0; i < n && d.Err() == nil; i++ {
		r.Members = append(r.Members, d.U64("member"))
	}
	n = d.Count("records", d.Remaining()/(4+32+8+32))
	for i := 0; i < n && d.Err() == nil; i++ {
		raw := d.Var("record", MaxGovernancePayloadSize)
		var x ReadinessRecord
		d.Fixed("signer", x.Signer[:])
		x.Height = d.U64("height")
		d.Fixed("tx id", x.TxID[:])
		if d.Err() != nil {
			break
		}
		p, err := DecodeReadinessReport(raw)
		if err != nil {
			return nil, err
		}
		x.ReadinessReport = p
		r.Records = append(r.Records, x)
	}
	n = d.Count("failures", d.Remaining()/(8+32+4+8+32))
	for i := 0; i < n && d.Err() == nil; i++ {
		var f FailureRecord
		f.Member = d.U64("member")
		d.Fixed("signer", f.Signer[:])
		f.Reason = d.String("reason", MaxFailureReasonLen)
		f.Height = d.U64("height")
		d.Fixed("tx id", f.TxID[:])
		r.Failures = append(r.Failures, f)
	}
	r.ReadyAt = d.U64("ready at")
	r.ExpiredAt = d.U64("expired at")
	n = d.Count("absent", d.Remaining()/8)
	for i := 0; i < n && d.Err() == nil; i++ {
		r.Absent = append(r.Absent, d.U64("absent"))
	}
	r.AbortedAt = d.U64("aborted at")
	if err := d.Finish(); err != nil {
		return nil, err
	}
	r.Quorum = ReadinessQuorum(len(r.Members))
	return r, nil
}

// readiness returns the readiness state of schedule s as this entry sees
// it, a fresh one (members as of now) if none was stored.
func (a *applier) readiness(s *Schedule) (*Readiness, error) {
	v, ok, err := a.govGet(govReadinessKey(s.ActivationHeight, s.Version))
	if err != nil {
		return nil, err
	}
	if ok {
		r, err := decodeReadiness(v)
		if err != nil {
			return nil, fmt.Errorf("corrupt governance: readiness of %s at %d: %w", s.Version, s.ActivationHeight, err)
		}
		return r, nil
	}
	ms, err := a.members()
	if err != nil {
		return nil, err
	}
	r := &Readiness{Version: s.Version, ActivationHeight: s.ActivationHeight, NodeMREnclave: s.NodeMREnclave}
	for _, m := range ms {
		if m.Active() {
			r.Members = append(r.Members, m.ID)
		}
	}
	r.Quorum = ReadinessQuorum(len(r.Members))
	return r, nil
}

func (a *applier) saveReadiness(r *Readiness) error {
	return a.govSet(govReadinessKey(r.ActivationHeight, r.Version), encodeReadiness(r))
}

// flagDayTx checks (and, if apply, performs) a readiness record or a
// failure vote in phase ph.
func (a *applier) flagDayTx(t *Tx, ph govPhase, apply bool) (verdict, error) {
	g, err := a.governance()
	if err != nil {
		return verdict{}, err
	}
	s := g.schedule
	switch t.Kind {
	case TxReadiness:
		p, err := DecodeReadinessReport(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		if v := scheduleMatches(s, p.Version, p.ActivationHeight); v.failed() {
			return v, nil
		}
		return a.readinessTx(t, s, p, ph, apply)
	case TxUpgradeFailure:
		p, err := DecodeUpgradeFailure(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		if v := scheduleMatches(s, p.Version, p.ActivationHeight); v.failed() {
			return v, nil
		}
		return a.failureTx(t, g, s, p, ph, apply)
	default:
		return reject(CodeMalformed, "%s is not a flag-day kind", t.Kind), nil
	}
}

func scheduleMatches(s *Schedule, version string, h uint64) verdict {
	if s == nil {
		return reject(CodeConflict, "nothing is scheduled: no upgrade to %s at height %d", version, h)
	}
	if s.Version != version || s.ActivationHeight != h {
		return reject(CodeConflict, "the schedule in force is release %s at height %d, not %s at %d", s.Version, s.ActivationHeight, version, h)
	}
	return verdict{}
}

// registeredKeyOf returns member id's registered node key.
func (a *applier) registeredKeyOf(id uint64) (Address, bool, error) {
	rec, ok, err := a.s.Node(id)
	if err != nil || !ok {
		return Address{}, false, err
	}
	return rec.Key, true, nil
}

func (a *applier) readinessTx(t *Tx, s *Schedule, p ReadinessReport, ph govPhase, apply bool) (verdict, error) {
	if a.s.self != s.NodeMREnclave {
		return reject(CodeConflict, "readiness for release %s is recorded on its own chain: this node runs MRENCLAVE %s, not %s",
			s.Version, a.s.self.Short(), s.NodeMREnclave.Short()), nil
	}
	if p.Measurement != s.NodeMREnclave {
		return reject(CodeConflict, "the record names MRENCLAVE %s, release %s has %s", p.Measurement.Short(), s.Version, s.NodeMREnclave.Short()), nil
	}
	if ph.height < s.ActivationHeight || (ph.commit && ph.height == s.ActivationHeight) {
		return reject(CodeTooSoon, "readiness before the activation height: height %d, activation %d", ph.height, s.ActivationHeight), nil
	}
	r, err := a.readiness(s)
	if err != nil {
		return verdict{}, err
	}
	if r.ExpiredAt != 0 || ph.height > r.Deadline() || (!ph.commit && ph.height >= r.Deadline()) {
		return reject(CodeConflict, "readiness deadline passed: records are accepted up to block %d", r.Deadline()), nil
	}
	if !slices.Contains(r.Members, p.Member) {
		return reject(CodeNotMember, "node %d is not an active member of this flag day", p.Member), nil
	}
	key, ok, err := a.registeredKeyOf(p.Member)
	if err != nil {
		return verdict{}, err
	}
	if !ok || key != t.From {
		return reject(CodeNotMember, "a readiness record of node %d is signed by its registered node key, not %s", p.Member, t.From), nil
	}
	if r.HasRecord(p.Member) {
		return reject(CodeDuplicate, "duplicate: node %d already recorded readiness", p.Member), nil
	}
	if !apply {
		return verdict{}, nil
	}
	r.Records = append(r.Records, ReadinessRecord{ReadinessReport: p, Signer: t.From, Height: ph.height, TxID: t.ID()})
	a.s.log.Info("flag-day readiness recorded", "version", s.Version, "activation", s.ActivationHeight, "node", p.Member,
		"records", len(r.Records), "quorum", r.Quorum, "height", ph.height)
	if !r.Ready() && len(r.Records) >= r.Quorum {
		r.ReadyAt = ph.height
		a.s.log.Info("flag day ready: the readiness quorum is committed", "version", s.Version, "height", ph.height)
	}
	return verdict{}, a.saveReadiness(r)
}

func (a *applier) failureTx(t *Tx, g *govState, s *Schedule, p UpgradeFailure, ph govPhase, apply bool) (verdict, error) {
	if a.s.self == s.NodeMREnclave {
		return reject(CodeConflict, "a failure vote is cast on the old release's chain: this node runs the scheduled release %s", s.Version), nil
	}
	if ph.height != s.ActivationHeight {
		return reject(CodeTooSoon, "a failure vote is cast when the old chain halted at the activation height %d; the head is %d", s.ActivationHeight, ph.height), nil
	}
	r, err := a.readiness(s)
	if err != nil {
		return verdict{}, err
	}
	if !slices.Contains(r.Members, p.Member) {
		return reject(CodeNotMember, "node %d is not an active member of this flag day", p.Member), nil
	}
	m, ok, err := a.member(p.Member)
	if err != nil {
		return verdict{}, err
	}
	key, registered, err := a.registeredKeyOf(p.Member)
	if err != nil {
		return verdict{}, err
	}
	if !(registered && key == t.From) && !(ok && !m.Operator.IsZero() && m.Operator == t.From) {
		return reject(CodeNotMember, "a failure vote for node %d is signed by its node key or its operator, not %s", p.Member, t.From), nil
	}
	if r.HasFailure(p.Member) {
		return reject(CodeDuplicate, "duplicate: a failure vote for node %d was already cast", p.Member), nil
	}
	if !apply {
		return verdict{}, nil
	}
	r.Failures = append(r.Failures, FailureRecord{Member: p.Member, Signer: t.From, Reason: p.Reason, Height: ph.height, TxID: t.ID()})
	need := FailureQuorum(len(r.Members))
	a.s.log.Warn("flag-day failure vote", "version", s.Version, "node", p.Member, "votes", len(r.Failures), "needed", need, "reason", p.Reason)
	if len(r.Failures) >= need {
		r.AbortedAt = ph.height
		rec := &AbortRecord{
			Version: s.Version, NodeMREnclave: s.NodeMREnclave, ActivationHeight: s.ActivationHeight,
			ScheduledAt: s.ScheduledAt, Height: ph.height, Reason: failureAbortReason(r),
		}
		for _, f := range r.Failures {
			rec.Approvers = append(rec.Approvers, f.Signer)
		}
		if err := a.govSet(govAbortKey(g.aborts), encodeAbortRecord(rec)); err != nil {
			return verdict{}, err
		}
		g.aborts++
		g.schedule, g.abortVotes = nil, nil
		a.s.log.Warn("scheduled upgrade aborted: readiness is impossible", "version", s.Version, "activation", s.ActivationHeight, "reason", rec.Reason)
		if err := a.saveGovernance(); err != nil {
			return verdict{}, err
		}
	}
	return verdict{}, a.saveReadiness(r)
}

// failureAbortReason is the abort record's reason for an abort by
// failure votes.
func failureAbortReason(r *Readiness) string {
	var b strings.Builder
	fmt.Fprintf(&b, "readiness impossible: failure votes of %d of %d members (", len(r.Failures), len(r.Members))
	for i, f := range r.Failures {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "node %d: %s", f.Member, f.Reason)
	}
	b.WriteString(")")
	s := b.String()
	for len(s) > MaxAbortReasonLen || !utf8.ValidString(s) {
		s = s[:min(len(s), MaxAbortReasonLen)-1]
	}
	return s
}

// readinessAfterBlock runs after the block at height is applied: at the
// schedule's deadline the members without a record are marked absent,
// and a schedule that is not ready expires.
func (a *applier) readinessAfterBlock(height uint64) error {
	g, err := a.governance()
	if err != nil {
		return err
	}
	s := g.schedule
	if s == nil || a.s.self != s.NodeMREnclave || height != s.ActivationHeight+ReadinessDeadline {
		return nil
	}
	r, err := a.readiness(s)
	if err != nil {
		return err
	}
	for _, m := range r.Members {
		if !r.HasRecord(m) {
			r.Absent = append(r.Absent, m)
		}
	}
	if !r.Ready() {
		r.ExpiredAt = height
		a.s.log.Warn("flag day expired: no readiness quorum by the deadline", "version", s.Version, "records", len(r.Records), "quorum", r.Quorum, "height", height)
	} else if len(r.Absent) > 0 {
		a.s.log.Warn("flag day: members absent at the readiness deadline", "version", s.Version, "absent", r.Absent)
	}
	return a.saveReadiness(r)
}

// Readiness returns the readiness state of the schedule (version,
// activation height h) on this chain; ok is false if no record, vote or
// deadline touched it yet.
func (s *Store) Readiness(version string, h uint64) (Readiness, bool, error) {
	v, ok, err := s.get(govReadinessKey(h, version))
	if err != nil || !ok {
		return Readiness{}, false, err
	}
	r, err := decodeReadiness(v)
	if err != nil {
		return Readiness{}, false, fmt.Errorf("corrupt governance: readiness of %s at %d: %w", version, h, err)
	}
	return *r, true, nil
}

// Readinesses returns the readiness state of every schedule on this
// chain, by activation height.
func (s *Store) Readinesses() ([]Readiness, error) {
	var out []Readiness
	err := scan(s.db, []byte(prefixGovReadiness), false, func(k, v []byte) (bool, error) {
		r, err := decodeReadiness(v)
		if err != nil {
			return false, fmt.Errorf("corrupt governance: readiness %x: %w", k, err)
		}
		out = append(out, *r)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read readiness: %w", err)
	}
	return out, nil
}
