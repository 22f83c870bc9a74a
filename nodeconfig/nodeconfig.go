// Package nodeconfig is teeup-node's configuration file (node.json): its
// type, strict loader, defaults and validation. It is a package of its own
// so that the upgrade agent, which starts the node with this file, can read
// where the node's sockets are without linking the node.
package nodeconfig

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/teeup/teeup/internal/httplimit"
	"github.com/teeup/teeup/internal/jsonutil"
	"github.com/teeup/teeup/layout"
)

// Config is teeup-node's configuration. It is read from a JSON file
// (run --config FILE); command-line flags and TEEUP_* environment
// variables override it (see cmd/teeup-node). Paths relative to the file
// are resolved against the file's directory. The upgrade agent reads the
// file only (not the node's flags or environment).
type Config struct {
	// NodeID is this node's id in the genesis (≥1).
	NodeID uint64 `json:"node_id"`
	// Genesis is the path of the genesis file.
	Genesis string `json:"genesis"`
	// DataDir holds the ledger DB, sealed keys and, by default, the
	// sockets (see package layout).
	DataDir string `json:"data_dir"`
	// Platform is the simulated platform directory of this host.
	Platform string `json:"platform"`
	// PeerListen is where peers connect (default: the genesis peer_addr).
	PeerListen string `json:"peer_listen,omitempty"`
	// ClientListen is where clients connect (default: the genesis client_addr).
	ClientListen string `json:"client_listen,omitempty"`
	// AdminSocket is the admin API's unix socket (default DATA/admin.sock).
	AdminSocket string `json:"admin_socket,omitempty"`
	// AdminListen, when set (host:port), serves the admin API also over
	// TCP to remote operators with mutual TLS: the node's certificate is
	// attested, the client's carries an operator's ed25519 key (package
	// remoteadmin). Off by default.
	AdminListen string `json:"admin_listen,omitempty"`
	// AdminOperators are the hex ed25519 public keys of this host's own
	// operators: they may read and write over AdminListen (so may the
	// operator the chain records for this node; the Node Operators Group
	// in force and the operators of the network's members may read).
	AdminOperators []string `json:"admin_operators,omitempty"`
	// HandoverSocket is where this node serves its keys to the upgrade
	// agent (default DATA/handover.sock).
	HandoverSocket string `json:"handover_socket,omitempty"`
	// ImportKeysFrom is the agent's socket to fetch keys from when this
	// node has none sealed under its own MRENCLAVE (a new version started
	// by the agent during a handover).
	ImportKeysFrom string `json:"import_keys_from,omitempty"`
	// EnclaveID is a signed release manifest whose node enclave ID covers
	// this binary; a node importing keys presents it to the agent.
	EnclaveID string `json:"enclave_id,omitempty"`
	// Bootstrap lets this node create the network's ledger key when no
	// node has one yet (exactly one genesis node should set it).
	Bootstrap bool `json:"bootstrap,omitempty"`
	// EnclaveDebug runs without a valid signature structure; the identity
	// is marked Debug and peers with production policies refuse it.
	EnclaveDebug bool `json:"enclave_debug,omitempty"`
	// AllowDebugPeers accepts debug enclaves as peers and agents (development only).
	AllowDebugPeers bool `json:"allow_debug_peers,omitempty"`
	// IngressCloseBlocks is how many blocks before a scheduled upgrade's
	// activation height client ingress closes (default 2: payments are
	// admitted into the leader's mempool and the next block carries them,
	// so one block drains it and the second is a margin for payments
	// forwarded while ingress closes).
	IngressCloseBlocks uint64 `json:"ingress_close_blocks,omitempty"`
	// SubmitTimeout bounds how long a client waits for its payment to be
	// committed (default 15s).
	SubmitTimeout Duration `json:"submit_timeout,omitempty"`
	// RaftCompactEvery: each node compacts its raft log once it holds this
	// many applied entries (default 4096), keeping RaftCompactKeep of them
	// (default a quarter) for peers that lag a little; a peer further
	// behind receives a state snapshot of the ledger.
	RaftCompactEvery uint64 `json:"raft_compact_every,omitempty"`
	RaftCompactKeep  uint64 `json:"raft_compact_keep,omitempty"`
	// Peers are peer addresses (by node id) to contact before this node
	// has the ledger, e.g. a node added by governance after the genesis;
	// default: the genesis nodes. Once the ledger is open, the members on
	// chain are the peers.
	Peers map[uint64]string `json:"peers,omitempty"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `json:"log_level,omitempty"`
	// MetricsListen serves Prometheus metrics on /metrics when set.
	MetricsListen string `json:"metrics_listen,omitempty"`
	// ClientLimits bound what clients can make the client API hold.
	ClientLimits ClientLimits `json:"client_limits,omitzero"`
}

// ClientLimits bound the client API's connections, time, request rate and
// bodies (see internal/httplimit). Zero fields take the defaults given.
type ClientLimits struct {
	// MaxConnections bounds the open client connections (default 4096).
	// At the bound, the connection that has waited longest without a
	// request in progress is closed to make room; if every connection is
	// busy, the new one is closed.
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxConnectionsPerSource bounds the connections from one IP address
	// (default 1024, at most MaxConnections).
	MaxConnectionsPerSource int `json:"max_connections_per_source,omitempty"`
	// RateLimit is the requests per second one IP address may sustain
	// (default 1000; negative: no limit); beyond it the API answers 429.
	RateLimit float64 `json:"rate_limit,omitempty"`
	// RateBurst is how many requests one IP address may make at once
	// (default twice RateLimit).
	RateBurst int `json:"rate_burst,omitempty"`
	// ReadHeaderTimeout bounds the TLS handshake and a request's header
	// (default 5s); ReadTimeout the whole request, body included (10s).
	ReadHeaderTimeout Duration `json:"read_header_timeout,omitempty"`
	ReadTimeout       Duration `json:"read_timeout,omitempty"`
	// WriteTimeout bounds a request from its header to the end of its
	// response (default submit_timeout + 5s; must exceed submit_timeout).
	WriteTimeout Duration `json:"write_timeout,omitempty"`
	// IdleTimeout closes a keep-alive connection idle this long (60s).
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
}

// HTTPLimits maps the client limits onto httplimit's, with request
// bodies bounded by maxBody (zero fields keep httplimit's defaults; the
// caller sets Reject).
func (l ClientLimits) HTTPLimits(maxBody int64) httplimit.Config {
	return httplimit.Config{
		ReadHeaderTimeout: time.Duration(l.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(l.ReadTimeout),
		WriteTimeout:      time.Duration(l.WriteTimeout),
		IdleTimeout:       time.Duration(l.IdleTimeout),
		MaxConns:          l.MaxConnections,
		MaxConnsPerSource: l.MaxConnectionsPerSource,
		Rate:              l.RateLimit,
		Burst:             l.RateBurst,
		MaxBody:           maxBody,
	}
}

// Duration is a duration written as a string ("15s") in JSON.
type Duration = jsonutil.Duration

// Load reads a JSON configuration file strictly: unknown fields are
// errors, so a misspelt option is not silently ignored.
func Load(path string) (*Config, error) {
	var c Config
	if err := jsonutil.LoadStrict(path, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	jsonutil.ResolvePaths(path, &c.Genesis, &c.DataDir, &c.Platform, &c.AdminSocket, &c.HandoverSocket, &c.ImportKeysFrom, &c.EnclaveID)
	return &c, nil
}

// WithDefaults fills unset optional fields; the sockets default to the
// data dir's (layout.Node).
func (c Config) WithDefaults() Config {
	if c.AdminSocket == "" && c.DataDir != "" {
		c.AdminSocket = layout.Node(c.DataDir).AdminSocket()
	}
	if c.HandoverSocket == "" && c.DataDir != "" {
		c.HandoverSocket = layout.Node(c.DataDir).HandoverSocket()
	}
	if c.IngressCloseBlocks == 0 {
		c.IngressCloseBlocks = 2
	}
	if c.SubmitTimeout == 0 {
		c.SubmitTimeout = Duration(15 * time.Second)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.RaftCompactEvery == 0 {
		c.RaftCompactEvery = 4096
	}
	if c.RaftCompactKeep == 0 || c.RaftCompactKeep > c.RaftCompactEvery {
		c.RaftCompactKeep = max(1, c.RaftCompactEvery/4)
	}
	if c.ClientLimits.WriteTimeout == 0 {
		c.ClientLimits.WriteTimeout = c.SubmitTimeout + Duration(5*time.Second)
	}
	return c
}

// Validate reports the first missing or inconsistent setting.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == 0 {
		errs = append(errs, errors.New("node_id is required (≥1)"))
	}
	if c.Genesis == "" {
		errs = append(errs, errors.New("genesis is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	if len(c.AdminSocket) > 100 {
		errs = append(errs, fmt.Errorf("admin_socket %q is too long for a unix socket path (max ~100 bytes)", c.AdminSocket))
	}
	for _, k := range c.AdminOperators {
		if b, err := hex.DecodeString(k); err != nil || len(b) != ed25519.PublicKeySize {
			errs = append(errs, fmt.Errorf("admin_operators: %q is not an ed25519 public key (64 hex digits)", k))
		}
	}
	if err := c.ClientLimits.HTTPLimits(httplimit.DefaultMaxBody).WithDefaults().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("client_limits: %w", err))
	}
	if w := c.ClientLimits.WriteTimeout; w != 0 && w <= c.SubmitTimeout {
		errs = append(errs, fmt.Errorf("client_limits: write_timeout %s must exceed submit_timeout %s (a payment request waits that long for its block)", time.Duration(w), time.Duration(c.SubmitTimeout)))
	}
	return errors.Join(errs...)
}
