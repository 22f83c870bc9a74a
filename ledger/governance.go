package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Governance
//
// Releases are governed on chain by the genesis Node Operators Group (NOG),
// whose threshold is the quorum, over releases signed by the genesis Key
// Management Group (KMG). Governance transactions are ordinary signed
// transactions of the governance kinds, sent by NOG members: they use the
// sender's nonce like payments, and the sender needs no balance.
//
//   - TxProposeRelease: a KMG-signed release for this network, newer than
//     every approved release. The proposer's approval counts.
//   - TxApproveRelease: one member's approval of exactly one manifest
//     (version and manifest hash). At quorum the release is approved;
//     approved releases form a list of strictly increasing versions.
//   - TxScheduleUpgrade: one member's vote for (version, activation height
//     H). At quorum the schedule is in force: nodes of another MRENCLAVE
//     than the release's node commit no block past H.
//   - TxAbortUpgrade: one member's vote to abort the schedule in force. At
//     quorum the schedule is cleared and an abort record kept, so that old
//     nodes continue past H.
//   - TxApproveRollback: one member's vote to allow going back from an
//     approved release to an older approved one. At quorum a rollback
//     record is kept; it lets the agent hand keys to the older release, and
//     lets the older release be scheduled.
//
// Every check runs when the transaction is admitted (a rejection is a
// result with a reason). The effect happens when its block is committed,
// where the checks run again on the state then: a transaction that lost a
// race (two members proposing the same version, a second vote of a member
// admitted before its first was committed) is committed without effect,
// and its status says why.
//
// Abort votes are the exception: they take effect when admitted. Old nodes
// halted at H build no block, so an abort that waited for a block could
// never take effect after H; admission is replicated through raft like any
// command, so it is as deterministic.
//
// A member has at most one pending vote of each kind: a new schedule or
// rollback vote replaces the member's previous one, which keeps the
// pending votes bounded by the size of the group.
//
// Storage, under GovernancePrefix:
//
//	g/state            counters, the schedule in force and the pending votes
//	g/r/<seq:8>        release record, in proposal order
//	g/v/<version>      release sequence number of a version
//	g/a/<n:8>          release sequence number of the n-th approved release
//	g/x/<n:8>          abort record
//	g/b/<n:8>          rollback record
//	g/running          the running release, once an upgrade took effect (running.go)
//
// An empty g/ means no governance yet, so schema 1 and 2 databases need no
// migration.

// Schedule lead times, in blocks. They are consensus rules, the same on
// every node, so they do not depend on a node's configuration; a node's
// ingress_close_blocks should not exceed MinScheduleLead/2.
const (
	// MinScheduleLead is how far ahead of the head a schedule vote's
	// activation height must be when it is admitted: H ≥ head +
	// MinScheduleLead.
	MinScheduleLead = 10
	// MinActivationLead is how far ahead of the block that completes the
	// quorum the activation height must still be for the schedule to come
	// into force: H > block height + MinActivationLead.
	MinActivationLead = MinScheduleLead / 2
)

// Governance payload limits.
const (
	// MaxAbortReasonLen bounds an abort vote's reason, in bytes.
	MaxAbortReasonLen = 512
	// MaxReleaseSchema bounds a release's ledger schema version.
	MaxReleaseSchema = 1 << 10
	// maxVersionLen bounds an encoded version string (release.ValidateVersion
	// refuses longer ones too).
	maxVersionLen = 64
)

// ReleaseApproval is the payload of a TxApproveRelease: the version and the
// SHA-256 of the manifest's signing bytes (see ManifestHash), so that an
// approval is for exactly that manifest.
type ReleaseApproval struct {
	Version      string
	ManifestHash Hash
}

// UpgradeSchedule is the payload of a TxScheduleUpgrade.
type UpgradeSchedule struct {
	Version          string
	ActivationHeight uint64
}

// UpgradeAbort is the payload of a TxAbortUpgrade.
type UpgradeAbort struct {
	Version string
	Reason  string
}

// RollbackApproval is the payload of a TxApproveRollback: going back from
// release From to the older release To is allowed.
type RollbackApproval struct {
	From string
	To   string
}

// ManifestHash returns SHA-256 of the release manifest's signing bytes, the
// hash an approval names.
func ManifestHash(sr *release.SignedRelease) (Hash, error) {
	if sr == nil {
		return Hash{}, errors.New("manifest hash: no release")
	}
	b, err := sr.Manifest.SigningBytes()
	if err != nil {
		return Hash{}, fmt.Errorf("manifest hash: %w", err)
	}
	return sha256.Sum256(b), nil
}

// NewGovernanceTx returns a governance transaction of kind with payload and
// nonce, signed by key. It refuses a kind that is not a governance kind, an
// oversize payload and a key of the wrong length.
func NewGovernanceTx(chainID string, kind TxKind, payload []byte, nonce uint64, key ed25519.PrivateKey) (*Tx, error) {
	if !kind.IsGovernance() {
		return nil, fmt.Errorf("new governance tx: %s is not a governance kind", kind)
	}
	t := &Tx{ChainID: chainID, Kind: kind, Nonce: nonce, Payload: payload}
	if err := t.checkLimits(); err != nil {
		return nil, fmt.Errorf("new %s tx: %w", kind, err)
	}
	if err := t.Sign(key); err != nil {
		return nil, fmt.Errorf("new %s tx: %w", kind, err)
	}
	return t, nil
}

// DecodeReleaseProposal decodes the payload of a TxProposeRelease from
// untrusted bytes: strict signed-release JSON (release.Parse) of at most
// MaxGovernancePayloadSize bytes whose manifest and enclave IDs are
// consistent (SignedRelease.Check). It does not verify signatures.
func DecodeReleaseProposal(b []byte) (*release.SignedRelease, error) {
	if len(b) > MaxGovernancePayloadSize {
		return nil, fmt.Errorf("decode release proposal: %d bytes, more than %d", len(b), MaxGovernancePayloadSize)
	}
	sr, err := release.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("decode release proposal: %w", err)
	}
	if err := sr.Check(); err != nil {
		return nil, fmt.Errorf("decode release proposal: %w", err)
	}
	return sr, nil
}

// EncodeReleaseApproval returns the canonical encoding of an approval.
func EncodeReleaseApproval(p ReleaseApproval) []byte {
	e := wire.NewEncoder(4 + len(p.Version) + 32)
	e.String(p.Version)
	e.Fixed(p.ManifestHash[:])
	return e.Bytes()
}

// DecodeReleaseApproval decodes an approval from untrusted bytes and
// checks that the version is a semantic version.
func DecodeReleaseApproval(b []byte) (ReleaseApproval, error) {
	var p ReleaseApproval
	d := wire.NewDecoder("release approval", b)
	p.Version = d.String("version", maxVersionLen)
	d.Fixed("manifest hash", p.ManifestHash[:])
	if err := d.Finish(); err != nil {
		return ReleaseApproval{}, err
	}
	if err := release.ValidateVersion(p.Version); err != nil {
		return ReleaseApproval{}, fmt.Errorf("decode release approval: %w", err)
	}
	return p, nil
}

// EncodeUpgradeSchedule returns the canonical encoding of a schedule vote.
func EncodeUpgradeSchedule(p UpgradeSchedule) []byte {
	e := wire.NewEncoder(4 + len(p.Version) + 8)
	e.String(p.Version)
	e.U64(p.ActivationHeight)
	return e.Bytes()
}

// DecodeUpgradeSchedule decodes a schedule vote from untrusted bytes: a
// semantic version and a non-zero activation height.
func DecodeUpgradeSchedule(b []byte) (UpgradeSchedule, error) {
	var p UpgradeSchedule
	d := wire.NewDecoder("upgrade schedule", b)
	p.Version = d.String("version", maxVersionLen)
	p.ActivationHeight = d.U64("activation height")
	if err := d.Finish(); err != nil {
		return UpgradeSchedule{}, err
	}
	if err := release.ValidateVersion(p.Version); err != nil {
		return UpgradeSchedule{}, fmt.Errorf("decode upgrade schedule: %w", err)
	}
	if p.ActivationHeight == 0 {
		return UpgradeSchedule{}, errors.New("decode upgrade schedule: activation height is zero")
	}
	return p, nil
}

// EncodeUpgradeAbort returns the canonical encoding of an abort vote.
func EncodeUpgradeAbort(p UpgradeAbort) []byte {
	e := wire.NewEncoder(8 + len(p.Version) + len(p.Reason))
	e.String(p.Version)
	e.String(p.Reason)
	return e.Bytes()
}

// DecodeUpgradeAbort decodes an abort vote from untrusted bytes: a semantic
// version and a non-empty UTF-8 reason of at most MaxAbortReasonLen bytes.
func DecodeUpgradeAbort(b []byte) (UpgradeAbort, error) {
	var p UpgradeAbort
	d := wire.NewDecoder("upgrade abort", b)
	p.Version = d.String("version", maxVersionLen)
	p.Reason = d.String("reason", MaxAbortReasonLen)
	if err := d.Finish(); err != nil {
		return UpgradeAbort{}, err
	}
	if err := release.ValidateVersion(p.Version); err != nil {
		return UpgradeAbort{}, fmt.Errorf("decode upgrade abort: %w", err)
	}
	if p.Reason == "" {
		return UpgradeAbort{}, errors.New("decode upgrade abort: the reason is empty")
	}
	if !utf8.ValidString(p.Reason) {
		return UpgradeAbort{}, errors.New("decode upgrade abort: the reason is not UTF-8")
	}
	return p, nil
}

// EncodeRollbackApproval returns the canonical encoding of a rollback vote.
func EncodeRollbackApproval(p RollbackApproval) []byte {
	e := wire.NewEncoder(8 + len(p.From) + len(p.To))
	e.String(p.From)
	e.String(p.To)
	return e.Bytes()
}

// DecodeRollbackApproval decodes a rollback vote from untrusted bytes: two
// semantic versions, From newer than To.
func DecodeRollbackApproval(b []byte) (RollbackApproval, error) {
	var p RollbackApproval
	d := wire.NewDecoder("rollback approval", b)
	p.From = d.String("from version", maxVersionLen)
	p.To = d.String("to version", maxVersionLen)
	if err := d.Finish(); err != nil {
		return RollbackApproval{}, err
	}
	c, err := release.CompareVersions(p.From, p.To)
	if err != nil {
		return RollbackApproval{}, fmt.Errorf("decode rollback approval: %w", err)
	}
	if c <= 0 {
		return RollbackApproval{}, fmt.Errorf("decode rollback approval: %s is not newer than %s: a rollback goes to an older release", p.From, p.To)
	}
	return p, nil
}

// ReleaseRecord is a proposed release as the chain records it.
type ReleaseRecord struct {
	Version string
	// Raw is the signed release's JSON exactly as proposed.
	Raw []byte
	// Release is Raw parsed.
	Release *release.SignedRelease
	// ManifestHash is ManifestHash(Release), what approvals name.
	ManifestHash Hash
	Proposer     Address
	// ProposedAt is the height of the block that committed the proposal.
	ProposedAt uint64
	// Approvers are the members who approved, in order; the proposer
	// first.
	Approvers []Address
	// ApprovedAt is the height at which the approvals reached the quorum;
	// 0 while they have not.
	ApprovedAt uint64
}

// Approved reports whether the release reached the quorum.
func (r *ReleaseRecord) Approved() bool { return r.ApprovedAt != 0 }

// NodeMREnclave returns the measurement of the release's node enclave.
func (r *ReleaseRecord) NodeMREnclave() tee.Measurement { return r.Release.Manifest.Node.MREnclave }

// Schedule is an upgrade schedule in force: from ActivationHeight on, only
// nodes whose MRENCLAVE is NodeMREnclave commit blocks. It stays in force
// after the activation height (so that an old node restarted later still
// halts there) until an abort clears it or a newer schedule replaces it.
type Schedule struct {
	Version          string
	NodeMREnclave    tee.Measurement
	ActivationHeight uint64
	// ScheduledAt is the height at which the votes reached the quorum.
	ScheduledAt uint64
	// Approvers are the members whose votes made the quorum, in order.
	Approvers []Address
}

// Reached reports whether a chain at height head has reached the
// activation height.
func (s *Schedule) Reached(head uint64) bool { return head >= s.ActivationHeight }

// AbortRecord is an aborted schedule.
type AbortRecord struct {
	Version          string
	NodeMREnclave    tee.Measurement
	ActivationHeight uint64
	ScheduledAt      uint64
	// Height is the chain head when the abort votes reached the quorum.
	Height uint64
	// Reason is the reason of the first abort vote.
	Reason    string
	Approvers []Address
}

// RollbackRecord allows going back from release From to the older
// release To.
type RollbackRecord struct {
	From string
	To   string
	// Height is the height at which the votes reached the quorum.
	Height    uint64
	Approvers []Address
}

// ScheduleVote is a member's pending vote for a schedule.
type ScheduleVote struct {
	Member           Address
	Version          string
	ActivationHeight uint64
}

// AbortVote is a member's pending vote to abort the schedule in force.
type AbortVote struct {
	Member Address
	Reason string
}

// RollbackVote is a member's pending vote for a rollback.
type RollbackVote struct {
	Member Address
	From   string
	To     string
}

// GovernanceView is the whole governance state at one height.
type GovernanceView struct {
	// Height is the chain head the view was read at.
	Height uint64
	// Quorum is the Node Operators Group's threshold; Operators its size.
	Quorum    int
	Operators int
	// Releases are all proposed releases, in proposal order.
	Releases []ReleaseRecord
	// Approved are the versions of the approved releases, in approval
	// order (which is also increasing version order).
	Approved []string
	// Running is the release the network runs (see Store.RunningRelease):
	// "" if the genesis named none and no upgrade took effect yet.
	Running string
	// Schedule is the schedule in force, nil if none.
	Schedule      *Schedule
	ScheduleVotes []ScheduleVote
	AbortVotes    []AbortVote
	RollbackVotes []RollbackVote
	Aborts        []AbortRecord
	Rollbacks     []RollbackRecord
}
