// Package nodeapi defines teeup-node's client and admin APIs — their JSON
// types and Go clients — shared by the node, the CLI, the agent and the
// distribution process.
//
// The client API is HTTP/JSON over attested TLS: the client verifies the
// node's quote against the expected MRENCLAVE before sending anything. The
// admin API is HTTP/JSON over a local unix socket (mode 0600) for the
// host's operator and agent, and optionally over TCP with mutual TLS for
// remote operators (package remoteadmin, DialAdmin).
package nodeapi

import (
	"time"

	"github.com/teeup/teeup/remoteadmin"
	"github.com/teeup/teeup/tee"
)

// Client API paths.
const (
	PathTx       = "/v1/tx"       // POST SubmitRequest → Receipt; GET /v1/tx/{id} → TxStatus
	PathAccounts = "/v1/accounts" // GET /v1/accounts/{address} → Account
	PathBlocks   = "/v1/blocks"   // GET /v1/blocks/{height} → Block (raw bytes with Accept: application/octet-stream)
	PathHead     = "/v1/head"     // GET → Head
)

// Admin API paths.
const (
	PathStatus   = "/v1/status"   // GET → Status
	PathIngress  = "/v1/ingress"  // POST IngressRequest → Status
	PathHalt     = "/v1/halt"     // POST HaltRequest → Status
	PathStop     = "/v1/stop"     // POST → {} and the node stops gracefully
	PathAdminTx  = "/v1/admin/tx" // POST SubmitRequest → Receipt, bypassing closed ingress (operator test payments)
	PathReleases = "/v1/releases" // GET → Governance
)

// ErrorCode values let clients react to errors without parsing text.
const (
	CodeClosedForUpgrade = "closed_for_upgrade"
	CodeRejected         = "rejected"
	CodeTimeout          = "timeout"
	CodeBadRequest       = "bad_request"
	CodeNotFound         = "not_found"
	CodeUnavailable      = "unavailable"
	// CodeCatchingUp: the node is behind the network (or receiving its
	// state) and serves nothing that depends on current state.
	CodeCatchingUp = "catching_up"
	// CodeDiverged: the node's chain differs from the network's.
	CodeDiverged = "diverged"
	// CodeNotLeader: the request needs the leader.
	CodeNotLeader = "not_leader"
	CodeInternal  = "internal"
	// CodeRateLimited (HTTP 429) means the client's address sent more
	// requests than the node's per-source rate limit; retry after the
	// Retry-After header's seconds.
	CodeRateLimited = "rate_limited"
	// CodeTooLarge (HTTP 413) means the request body exceeded the node's
	// bound.
	CodeTooLarge = "too_large"
	// CodePoolFull (HTTP 503) means the leader's mempool holds its bound
	// of payments (the genesis max_pool); retry the same payment after
	// Retry-After.
	CodePoolFull = "pool_full"
	// CodeTooManyPending (HTTP 429) means the sender already has the
	// bound of payments waiting in the leader's mempool (64); retry the
	// same payment once earlier ones are committed.
	CodeTooManyPending = "too_many_pending"
	// CodeForbidden (HTTP 403, remote admin API): the operator key may not
	// make this request on this host (errors.Is remoteadmin.ErrForbidden).
	CodeForbidden = remoteadmin.CodeForbidden
	// CodeUnauthenticated (HTTP 401, remote admin API): no operator key.
	CodeUnauthenticated = remoteadmin.CodeUnauthenticated
	// CodeWrongNode (HTTP 421): the request addressed another node.
	CodeWrongNode = remoteadmin.CodeWrongNode
)

// Error is the body of every non-2xx response.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"error"`
	TxID    string `json:"tx_id,omitempty"`
	// TxCode is the ledger's result code (a ledger.Code, e.g. "bad_nonce",
	// "insufficient_funds", "downgrade") of a transaction rejected by the
	// ledger (Code CodeRejected); act on it, not on Message.
	TxCode string `json:"tx_code,omitempty"`
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Is matches the remote admin refusals (remoteadmin.ErrForbidden,
// ErrUnauthenticated, ErrWrongNode) by their code.
func (e *Error) Is(target error) bool {
	s := remoteadmin.CodeError(e.Code)
	return s != nil && s == target
}

// SubmitRequest carries an encoded, signed transaction (hex).
type SubmitRequest struct {
	Tx string `json:"tx"`
}

// Receipt acknowledges a committed transaction.
type Receipt struct {
	TxID   string `json:"tx_id"`
	Status string `json:"status"` // committed
	Height uint64 `json:"height"`
	// Code is the ledger's result code: "ok", or "no_effect" for a
	// governance transaction committed without effect (TxStatus.Reason
	// says why). Empty from nodes that predate result codes.
	Code string `json:"code,omitempty"`
}

// Transaction states, in TxStatus.Status and Receipt.Status.
const (
	TxPending   = "pending"
	TxCommitted = "committed"
	TxRejected  = "rejected"
)

// TxStatus reports a transaction's state.
type TxStatus struct {
	TxID   string `json:"tx_id"`
	Status string `json:"status"` // TxPending, TxCommitted or TxRejected
	Height uint64 `json:"height,omitempty"`
	// Code is the ledger's result code (a ledger.Code): "ok" while pending
	// and once committed with effect, "no_effect" for a governance
	// transaction committed without effect, else the rejection's code.
	// Empty from nodes that predate result codes.
	Code string `json:"code,omitempty"`
	// Reason explains a rejection or a missing effect, for people.
	Reason string `json:"reason,omitempty"`
}

// Account is an account's committed state.
type Account struct {
	Address string `json:"address"`
	Balance uint64 `json:"balance"`
	Nonce   uint64 `json:"nonce"`
}

// Head is the newest committed block.
type Head struct {
	Height uint64 `json:"height"`
	Hash   string `json:"hash"`
}

// Block describes a committed block; Raw is its exact encoding (hex),
// still encrypted and signed.
type Block struct {
	Height   uint64    `json:"height"`
	Hash     string    `json:"hash"`
	PrevHash string    `json:"prev_hash"`
	Time     time.Time `json:"time"`
	TxCount  uint32    `json:"tx_count"`
	Proposer uint64    `json:"proposer"`
	Raw      string    `json:"raw,omitempty"`
}

// Peer is a consensus peer as this node sees it.
type Peer struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
	// Connected means traffic with the peer in the last 5 seconds. Raft
	// followers do not talk to each other, so a follower sees only the
	// leader connected; 'POST /v1/attest-peers' probes every peer.
	Connected bool            `json:"connected"`
	MREnclave tee.Measurement `json:"mrenclave"`
	LastSeen  time.Time       `json:"last_seen"`
	LastError string          `json:"last_error,omitempty"`
	// Height is the height the peer last reported.
	Height uint64 `json:"height,omitempty"`
}

// Status is the node's state for operators.
type Status struct {
	NodeID uint64 `json:"node_id"`
	// Phase is what the node is doing: "running" once it serves; before,
	// e.g. "waiting for the network ledger key".
	Phase string `json:"phase"`
	// NodeKey is the node's identity key (hex), the key registered for it
	// on chain.
	NodeKey       string          `json:"node_key,omitempty"`
	ChainID       string          `json:"chain_id"`
	Version       string          `json:"version"`
	MREnclave     tee.Measurement `json:"mrenclave"`
	MRSigner      tee.Measurement `json:"mrsigner"`
	SVN           uint16          `json:"svn"`
	Debug         bool            `json:"debug"`
	Simulated     bool            `json:"simulated"`
	Height        uint64          `json:"height"`
	HeadHash      string          `json:"head_hash"`
	Pending       int             `json:"pending"`
	Ingress       IngressState    `json:"ingress"`
	Halted        bool            `json:"halted"`
	HaltHeight    uint64          `json:"halt_height,omitempty"`
	Leader        uint64          `json:"leader"`
	Term          uint64          `json:"term"`
	AppliedIndex  uint64          `json:"applied_index"`
	SchemaVersion int             `json:"schema_version"`
	Peers         []Peer          `json:"peers"`
	ClientAddr    string          `json:"client_addr"`
	PeerAddr      string          `json:"peer_addr"`
	StartedAt     time.Time       `json:"started_at"`
	Upgrade       *UpgradeState   `json:"upgrade,omitempty"`
	// Sync says whether this node is current with the network: a node that
	// is catching up or diverged keeps client ingress closed, proposes no
	// block and does not lead.
	Sync Sync `json:"sync"`
}

// PhaseRunning is Status.Phase of a node that runs (serves its APIs and
// takes part in consensus).
const PhaseRunning = "running"

// Sync is a node's position relative to the network.
type Sync struct {
	// State is "current", "catching_up" or "diverged".
	State string `json:"state"`
	// CatchingUp is State == "catching_up".
	CatchingUp bool `json:"catching_up"`
	// NetworkHeight is the highest height a current peer reports.
	NetworkHeight uint64 `json:"network_height"`
	// BehindBy is NetworkHeight minus this node's height (0 if not behind).
	BehindBy uint64 `json:"behind_by"`
	// DivergedAt is the height at which this node's block differs from
	// the network's (0: no fork seen).
	DivergedAt uint64 `json:"diverged_at,omitempty"`
	// Reason explains State in one line.
	Reason string `json:"reason,omitempty"`
	// CommitIndex and LastIndex are raft's view.
	CommitIndex uint64 `json:"commit_index"`
	LastIndex   uint64 `json:"last_index"`
	FirstIndex  uint64 `json:"first_index"`
	// Transfer is the state transfer in progress into this node, if any;
	// LastTransfer the last one that ended.
	Transfer     *StateTransfer `json:"transfer,omitempty"`
	LastTransfer *StateTransfer `json:"last_transfer,omitempty"`
}

// Sync states.
const (
	SyncCurrent    = "current"
	SyncCatchingUp = "catching_up"
	SyncDiverged   = "diverged"
	// SyncRemoved: the node was removed from the network by governance.
	SyncRemoved = "removed"
)

// StateTransfer describes a ledger snapshot received from a peer.
type StateTransfer struct {
	From       uint64    `json:"from"`
	Index      uint64    `json:"index"`
	DoneBytes  int64     `json:"done_bytes"`
	TotalBytes int64     `json:"total_bytes"`
	Started    time.Time `json:"started"`
	Result     string    `json:"result,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// IngressState says whether a node accepts client requests.
type IngressState string

// Ingress states.
const (
	// IngressOpen: payments and account queries are served.
	IngressOpen IngressState = "open"
	// IngressClosed: closed for an upgrade (or by an operator); payments
	// and account queries are refused with CodeClosedForUpgrade.
	IngressClosed IngressState = "closed"
)

// UpgradeState is what the node knows of a scheduled enclave upgrade.
type UpgradeState struct {
	Version          string          `json:"version"`
	ActivationHeight uint64          `json:"activation_height"`
	MREnclave        tee.Measurement `json:"mrenclave"`
	IngressCloses    uint64          `json:"ingress_closes_at"`
	ThisNodeRuns     bool            `json:"this_node_runs_it"`
}

// IngressRequest opens or closes client ingress.
type IngressRequest struct {
	Open   bool   `json:"open"`
	Reason string `json:"reason,omitempty"`
}

// HaltRequest asks every node to commit no block past Height (0 clears).
type HaltRequest struct {
	Height uint64 `json:"height"`
}

// More admin API paths.
const (
	PathCheckpoint  = "/v1/checkpoint"   // POST CheckpointRequest → {}
	PathAttestPeers = "/v1/attest-peers" // POST → []PeerAttestation
	PathLeadership  = "/v1/leadership"   // POST LeadershipRequest → LeadershipResponse
)

// LeadershipRequest asks the leader to hand leadership over: to node To,
// or (To 0) to the most up-to-date other voter. Only the leader can.
type LeadershipRequest struct {
	To uint64 `json:"to,omitempty"`
}

// LeadershipResponse names the node leadership was handed to.
type LeadershipResponse struct {
	To uint64 `json:"to"`
}

// CheckpointRequest asks the node to write a consistent Pebble checkpoint
// of its ledger (sstables hard-linked) into Dir, which must not exist.
type CheckpointRequest struct {
	Dir string `json:"dir"`
}

// PeerAttestation is the outcome of a fresh attested handshake with a peer.
type PeerAttestation struct {
	From      uint64          `json:"from"`
	To        uint64          `json:"to"`
	OK        bool            `json:"ok"`
	MREnclave tee.Measurement `json:"mrenclave"`
	Error     string          `json:"error,omitempty"`
}
