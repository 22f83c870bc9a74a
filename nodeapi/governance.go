package nodeapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/teeup/teeup/tee"
)

// Governance is the on-chain release governance state (GET PathReleases,
// on the client and the admin API): proposed and approved releases, the
// upgrade schedule in force, pending votes, aborts and rollbacks.
type Governance struct {
	ChainID string `json:"chain_id"`
	// Height is the chain head the state was read at.
	Height uint64 `json:"height"`
	// Quorum is the Node Operators Group's threshold; Operators its size.
	Quorum    int `json:"quorum"`
	Operators int `json:"operators"`
	// Releases are all proposed releases, in proposal order.
	Releases []ReleaseInfo `json:"releases"`
	// Approved lists the approved releases in approval order (which is
	// also increasing version order).
	Approved []Approval `json:"approved"`
	// RunningRelease is the release the network runs: the genesis's
	// release, then each scheduled upgrade's once a block above its
	// activation height is committed; "" while neither names one. Proposals
	// and schedules of versions not newer are refused (tx code downgrade)
	// unless a rollback record allows them.
	RunningRelease string `json:"running_release,omitempty"`
	// Schedule is the upgrade schedule in force, if any.
	Schedule         *ScheduleInfo  `json:"schedule,omitempty"`
	PendingSchedules []ScheduleVote `json:"pending_schedule_votes,omitempty"`
	PendingAborts    []AbortVote    `json:"pending_abort_votes,omitempty"`
	PendingRollbacks []RollbackVote `json:"pending_rollback_votes,omitempty"`
	Aborts           []AbortInfo    `json:"aborts,omitempty"`
	Rollbacks        []RollbackInfo `json:"rollbacks,omitempty"`

	// Members are the network's members (removed ones too, with the
	// height of their removal); NOG and KMG the groups in force.
	Members []MemberInfo `json:"members,omitempty"`
	NOG     *GroupInfo   `json:"nog,omitempty"`
	KMG     *GroupInfo   `json:"kmg,omitempty"`
	// PendingMembershipVotes are votes that have not reached the quorum.
	PendingMembershipVotes []MembershipVote `json:"pending_membership_votes,omitempty"`
	// MembershipChanges is the history of membership and group changes.
	MembershipChanges []MembershipChange `json:"membership_changes,omitempty"`
	// NextGroupChangeSeq is the sequence number a KMG change signed now
	// must name.
	NextGroupChangeSeq uint64 `json:"next_group_change_seq"`
}

// MemberInfo is a member of the network.
type MemberInfo struct {
	ID         uint64 `json:"id"`
	Name       string `json:"name,omitempty"`
	PeerAddr   string `json:"peer_addr"`
	ClientAddr string `json:"client_addr"`
	Operator   string `json:"operator,omitempty"`
	// NodeKey is the identity key the node must register with (from the
	// vote that added it or its last re-key), if the chain names one;
	// RegisteredKey the key it registered, if it did.
	NodeKey       string          `json:"node_key,omitempty"`
	RegisteredKey string          `json:"registered_key,omitempty"`
	MREnclave     tee.Measurement `json:"mrenclave"`
	AddedAt       uint64          `json:"added_at"`
	RemovedAt     uint64          `json:"removed_at,omitempty"`
}

// GroupInfo is a governance group in force.
type GroupInfo struct {
	Keys      []string `json:"keys"`
	Threshold int      `json:"threshold"`
}

// MembershipVote is a pending membership vote.
type MembershipVote struct {
	Member string `json:"member"`
	Kind   string `json:"kind"`
	// Hash is the SHA-256 of the payload voted for: votes for the same
	// change have the same hash.
	Hash string `json:"hash"`
}

// MembershipChange is a membership or group change that took effect.
type MembershipChange struct {
	Height    uint64   `json:"height"`
	Kind      string   `json:"kind"`
	Summary   string   `json:"summary"`
	Approvers []string `json:"approvers"`
}

// ReleaseInfo is a proposed release.
type ReleaseInfo struct {
	Version string `json:"version"`
	// ManifestHash is the hex SHA-256 of the manifest's signing bytes, the
	// hash an approval names.
	ManifestHash   string          `json:"manifest_hash"`
	NodeMREnclave  tee.Measurement `json:"node_mrenclave"`
	AgentMREnclave tee.Measurement `json:"agent_mrenclave"`
	SchemaVersion  int             `json:"schema_version"`
	Proposer       string          `json:"proposer"`
	ProposedAt     uint64          `json:"proposed_at"`
	// Approvers are the members' addresses (hex), the proposer first.
	Approvers []string `json:"approvers"`
	// ApprovedAt is the height at which the quorum was reached; 0 while it
	// has not.
	ApprovedAt uint64 `json:"approved_at,omitempty"`
	// Release is the signed release as proposed (parse it with
	// release.Parse and verify it against the genesis KMG before use).
	Release json.RawMessage `json:"release"`
}

// Approved reports whether the release reached the quorum.
func (r *ReleaseInfo) Approved() bool { return r.ApprovedAt != 0 }

// Approval is an entry of the approved-release list.
type Approval struct {
	Version string `json:"version"`
	Height  uint64 `json:"height"`
}

// ScheduleInfo is the upgrade schedule in force.
type ScheduleInfo struct {
	Version          string          `json:"version"`
	NodeMREnclave    tee.Measurement `json:"node_mrenclave"`
	ActivationHeight uint64          `json:"activation_height"`
	ScheduledAt      uint64          `json:"scheduled_at"`
	Approvers        []string        `json:"approvers"`
	// Reached reports whether the chain has reached the activation height.
	Reached bool `json:"reached"`
}

// ScheduleVote is a member's pending vote for a schedule.
type ScheduleVote struct {
	Member           string `json:"member"`
	Version          string `json:"version"`
	ActivationHeight uint64 `json:"activation_height"`
}

// AbortVote is a member's pending vote to abort the schedule in force.
type AbortVote struct {
	Member string `json:"member"`
	Reason string `json:"reason"`
}

// RollbackVote is a member's pending vote for a rollback.
type RollbackVote struct {
	Member string `json:"member"`
	From   string `json:"from"`
	To     string `json:"to"`
}

// AbortInfo is an aborted schedule.
type AbortInfo struct {
	Version          string          `json:"version"`
	NodeMREnclave    tee.Measurement `json:"node_mrenclave"`
	ActivationHeight uint64          `json:"activation_height"`
	ScheduledAt      uint64          `json:"scheduled_at"`
	// Height is the head when the abort reached the quorum.
	Height    uint64   `json:"height"`
	Reason    string   `json:"reason"`
	Approvers []string `json:"approvers"`
}

// RollbackInfo allows going back from release From to the older To.
type RollbackInfo struct {
	From      string   `json:"from"`
	To        string   `json:"to"`
	Height    uint64   `json:"height"`
	Approvers []string `json:"approvers"`
}

// Release returns the proposed release of a version.
func (g *Governance) Release(version string) (*ReleaseInfo, bool) {
	for i := range g.Releases {
		if g.Releases[i].Version == version {
			return &g.Releases[i], true
		}
	}
	return nil, false
}

// ApprovedReleases returns the approved releases in approval order.
func (g *Governance) ApprovedReleases() []ReleaseInfo {
	out := make([]ReleaseInfo, 0, len(g.Approved))
	for _, a := range g.Approved {
		if r, ok := g.Release(a.Version); ok {
			out = append(out, *r)
		}
	}
	return out
}

// RollbackAllowed reports whether a rollback from release from to the
// older release to is approved.
func (g *Governance) RollbackAllowed(from, to string) bool {
	for _, r := range g.Rollbacks {
		if r.From == from && r.To == to {
			return true
		}
	}
	return false
}

// Releases returns the node's view of release governance (client and
// admin API).
func (r *reads) Releases(ctx context.Context) (*Governance, error) {
	var g Governance
	if err := r.c.do(ctx, http.MethodGet, PathReleases, nil, &g); err != nil {
		return nil, err
	}
	return &g, nil
}
