package nodeapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/teeup/teeup/tee"
)

// Flag-day admin paths (the node's admin API).
const (
	// PathFlagDay: GET ?version=V&height=H → FlagDay (the schedule in
	// force, or the newest readiness state, without parameters).
	PathFlagDay = "/v1/flagday"
	// PathFlagDayReadiness: POST ReadinessRequest → Receipt. The node signs
	// the readiness record with its node key and waits until it is
	// committed.
	PathFlagDayReadiness = "/v1/flagday/readiness"
	// PathFlagDayFailure: POST FailureRequest → Receipt. The node signs the
	// failure vote with its node key and waits until it is admitted (it
	// takes effect then; the old chain halted at H builds no block).
	PathFlagDayFailure = "/v1/flagday/failure"
)

// Flag-day outcomes (FlagDay.Outcome).
const (
	// FlagDayPending: neither ready, expired nor aborted yet.
	FlagDayPending = "pending"
	// FlagDayReady: a readiness quorum is committed; new nodes serve.
	FlagDayReady = "ready"
	// FlagDayExpired: the deadline passed on the new chain without a
	// quorum; no record counts any more.
	FlagDayExpired = "expired"
	// FlagDayAborted: the schedule was aborted on this chain (failure
	// votes or the NOG's abort votes); old nodes continue.
	FlagDayAborted = "aborted"
	// FlagDayNone: nothing is or was scheduled.
	FlagDayNone = "none"
)

// ReadinessRecord is a committed readiness record.
type ReadinessRecord struct {
	Node      uint64          `json:"node"`
	Signer    string          `json:"signer"`
	Height    uint64          `json:"height"`
	TxID      string          `json:"tx_id"`
	Peers     []PeerResult    `json:"peers"`
	TestTxs   []string        `json:"test_txs,omitempty"`
	MREnclave tee.Measurement `json:"mrenclave"`
}

// PeerResult is one peer's attestation result in a readiness record.
type PeerResult struct {
	Node uint64 `json:"node"`
	OK   bool   `json:"ok"`
}

// FailureVote is an admitted failure vote.
type FailureVote struct {
	Node   uint64 `json:"node"`
	Signer string `json:"signer"`
	Reason string `json:"reason"`
	Height uint64 `json:"height"`
	TxID   string `json:"tx_id"`
}

// FlagDay is the chain's view of one flag day, as this node's chain holds
// it: on a new node the readiness records, on an old node the failure
// votes and the abort.
type FlagDay struct {
	Version          string          `json:"version,omitempty"`
	ActivationHeight uint64          `json:"activation_height,omitempty"`
	NodeMREnclave    tee.Measurement `json:"node_mrenclave"`
	// ThisNodeRuns is whether this node runs the release's MRENCLAVE (it
	// holds the new chain).
	ThisNodeRuns bool `json:"this_node_runs"`
	// InForce is whether the schedule is still in force on this chain.
	InForce bool `json:"in_force"`
	// Outcome is one of the FlagDay* constants.
	Outcome string `json:"outcome"`
	// Height is this chain's head.
	Height uint64 `json:"height"`
	// Deadline is the last block that may commit a readiness record.
	Deadline  uint64            `json:"deadline,omitempty"`
	Members   []uint64          `json:"members,omitempty"`
	Quorum    int               `json:"quorum,omitempty"`
	Records   []ReadinessRecord `json:"records,omitempty"`
	Failures  []FailureVote     `json:"failures,omitempty"`
	ReadyAt   uint64            `json:"ready_at,omitempty"`
	ExpiredAt uint64            `json:"expired_at,omitempty"`
	Absent    []uint64          `json:"absent,omitempty"`
	AbortedAt uint64            `json:"aborted_at,omitempty"`
	// AbortReason is the abort record's reason (aborted).
	AbortReason string `json:"abort_reason,omitempty"`
}

// ReadinessRequest asks the node to record its readiness for the schedule
// (Version, ActivationHeight) with the given attestation results and test
// transaction ids (hex).
type ReadinessRequest struct {
	Version          string       `json:"version"`
	ActivationHeight uint64       `json:"activation_height"`
	Peers            []PeerResult `json:"peers"`
	TestTxs          []string     `json:"test_txs"`
}

// FailureRequest asks the node to vote that this host's new node failed.
type FailureRequest struct {
	Version          string `json:"version"`
	ActivationHeight uint64 `json:"activation_height"`
	Reason           string `json:"reason"`
}

// FlagDay reads the chain's view of the flag day (version, height); with
// an empty version, of the schedule in force or the newest one.
func (a *AdminClient) FlagDay(ctx context.Context, version string, height uint64) (*FlagDay, error) {
	p := PathFlagDay
	if version != "" {
		p += "?" + url.Values{"version": {version}, "height": {strconv.FormatUint(height, 10)}}.Encode()
	}
	var out FlagDay
	if err := a.c.do(ctx, http.MethodGet, p, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RecordReadiness asks the node to sign and commit its readiness record.
func (a *AdminClient) RecordReadiness(ctx context.Context, req ReadinessRequest) (*Receipt, error) {
	var r Receipt
	if err := a.c.do(ctx, http.MethodPost, PathFlagDayReadiness, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// VoteFailure asks the node to sign and submit a failure vote.
func (a *AdminClient) VoteFailure(ctx context.Context, req FailureRequest) (*Receipt, error) {
	var r Receipt
	if err := a.c.do(ctx, http.MethodPost, PathFlagDayFailure, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PathFlagDayTestPayments: POST TestPaymentsRequest → TestPaymentsResponse.
// The node signs a self payment and, if CrossTo is set, a cross payment of
// 1 with the given test account key and waits until both are committed
// (through the admin path, which works while ingress is closed).
const PathFlagDayTestPayments = "/v1/flagday/test-payments"

// TestPaymentsRequest carries the operator's test account key (hex
// ed25519 seed; it is used for these two payments and not kept) and the
// cross payment's recipient (hex address, optional).
type TestPaymentsRequest struct {
	TestKeySeed string `json:"test_key_seed"`
	CrossTo     string `json:"cross_to,omitempty"`
}

// TestPaymentsResponse are the committed test payments.
type TestPaymentsResponse struct {
	Receipts []Receipt `json:"receipts"`
}

// TestPayments asks the node to send and commit the test payments.
func (a *AdminClient) TestPayments(ctx context.Context, req TestPaymentsRequest) (*TestPaymentsResponse, error) {
	var r TestPaymentsResponse
	if err := a.c.do(ctx, http.MethodPost, PathFlagDayTestPayments, req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// FlagDay reads a node's view of a flag day over the client API (the
// view is public, like the governance state).
func (c *Client) FlagDay(ctx context.Context) (*FlagDay, error) {
	var out FlagDay
	if err := c.c.do(ctx, http.MethodGet, PathFlagDay, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
