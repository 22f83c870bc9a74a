package ledger

import (
	"github.com/teeup/teeup/internal/jsonutil"

	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"os"
	"strings"
	"time"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/release"
)

// Genesis limits.
const (
	// MaxGenesisNodes is the largest network a genesis may describe.
	MaxGenesisNodes = 7
	// MaxGenesisSize is the largest genesis file LoadGenesis reads.
	MaxGenesisSize = 4 << 20
	// MaxBlockTxsLimit bounds Params.MaxBlockTxs so that any block body fits
	// in MaxBodySize.
	MaxBlockTxsLimit = 1000
	// MaxPoolLimit bounds Params.MaxPool.
	MaxPoolLimit = 1_000_000
	// maxLabelLen bounds node names and account labels.
	maxLabelLen = 128
)

// Parameter defaults, applied by Params.WithDefaults.
const (
	DefaultBlockInterval = 500 * time.Millisecond
	DefaultMaxBlockTxs   = 500
	DefaultMaxPool       = 10000
)

// Genesis describes a network at height 0. It is a public JSON file; its
// hash (Genesis.Hash) is the body hash of block 0 and pins every node to the
// same network.
type Genesis struct {
	ChainID  string           `json:"chain_id"`
	Time     time.Time        `json:"time"`
	Nodes    []GenesisNode    `json:"nodes"`
	Accounts []GenesisAccount `json:"accounts"`
	// KMG is the Key Management Group: it signs releases.
	KMG release.Group `json:"kmg"`
	// NOG is the Node Operators Group: its threshold is the quorum that
	// approves a release on chain.
	NOG    release.Group `json:"nog"`
	Params Params        `json:"params"`
	// Release is the version of the release the network starts with,
	// optional: proposals and schedules of versions that are not newer are
	// refused as downgrades (see Store.RunningRelease). Omitted when empty,
	// so a genesis without it hashes as before the field existed, and then
	// there is no floor until the first upgrade takes effect.
	Release string `json:"release,omitempty"`
}

// GenesisNode is a consensus node of the initial network.
type GenesisNode struct {
	// ID is the node's raft id (≥ 1).
	ID         uint64 `json:"id"`
	Name       string `json:"name"`
	PeerAddr   string `json:"peer_addr"`
	ClientAddr string `json:"client_addr"`
	// Operator is the hex ed25519 public key (64 lower-case hex digits) of
	// the node's operator, optional: it authorises re-keying this node and
	// remote admin writes on its host. Omitted when empty, so a genesis
	// without operators hashes as it did before the field existed.
	Operator string `json:"operator,omitempty"`
	// NodeKey, if set, is the hex ed25519 node identity key the node must
	// register with; unset, the first key it registers is taken.
	NodeKey string `json:"node_key,omitempty"`
}

// Validate checks one node entry on its own: id ≥ 1, a name of at most 128
// bytes, host:port addresses, and an operator key, when present, of 64
// lower-case hex digits. Genesis.Validate also checks the entries against
// each other.
func (n GenesisNode) Validate() error {
	if n.ID == 0 {
		return errors.New("id must be at least 1")
	}
	if len(n.Name) > maxLabelLen {
		return fmt.Errorf("name longer than %d bytes", maxLabelLen)
	}
	for _, a := range []struct{ field, addr string }{{"peer_addr", n.PeerAddr}, {"client_addr", n.ClientAddr}} {
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("%s %q is not host:port", a.field, a.addr)
		}
	}
	for _, k := range []struct{ field, key string }{{"operator", n.Operator}, {"node_key", n.NodeKey}} {
		if k.key == "" {
			continue
		}
		if _, err := keyfile.ParsePublicHex(k.key); err != nil {
			return fmt.Errorf("%s: %w", k.field, err)
		}
		if k.key != strings.ToLower(k.key) {
			return fmt.Errorf("%s %q is not lower-case hex", k.field, k.key)
		}
	}
	return nil
}

// GenesisAccount is an initial balance.
type GenesisAccount struct {
	Address Address `json:"address"`
	Balance uint64  `json:"balance"`
	// Label names the account for people, e.g. "operator-test-1".
	Label string `json:"label,omitempty"`
}

// Params are the consensus parameters. Zero values mean the defaults.
type Params struct {
	BlockInterval Duration `json:"block_interval"`
	MaxBlockTxs   int      `json:"max_block_txs"`
	MaxPool       int      `json:"max_pool"`
}

// WithDefaults returns p with zero fields set to their defaults.
func (p Params) WithDefaults() Params {
	if p.BlockInterval == 0 {
		p.BlockInterval = Duration(DefaultBlockInterval)
	}
	if p.MaxBlockTxs == 0 {
		p.MaxBlockTxs = DefaultMaxBlockTxs
	}
	if p.MaxPool == 0 {
		p.MaxPool = DefaultMaxPool
	}
	return p
}

// Duration is a time.Duration written in JSON as a string such as "500ms".

// Duration is a duration written as a string ("500ms") in JSON.
type Duration = jsonutil.Duration

// LoadGenesis reads, parses and validates a genesis file, and fills in
// default parameters.
func LoadGenesis(path string) (*Genesis, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load genesis: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxGenesisSize+1))
	if err != nil {
		return nil, fmt.Errorf("load genesis %s: %w", path, err)
	}
	if len(b) > MaxGenesisSize {
		return nil, fmt.Errorf("load genesis %s: larger than %d bytes", path, MaxGenesisSize)
	}
	g, err := ParseGenesis(b)
	if err != nil {
		return nil, fmt.Errorf("load genesis %s: %w", path, err)
	}
	return g, nil
}

// ParseGenesis parses strict JSON (no unknown fields, nothing after the
// object), validates it and fills in default parameters.
func ParseGenesis(b []byte) (*Genesis, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var g Genesis
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("parse genesis: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse genesis: data after the JSON object")
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	g.Params = g.Params.WithDefaults()
	return &g, nil
}

// Validate checks the genesis: chain id of 1 to 64 characters [a-z0-9-];
// a time; 1 to 7 nodes with distinct ids ≥ 1, distinct host:port
// addresses and valid operator keys where given (GenesisNode.Validate); distinct accounts whose balances sum without overflow; valid
// KMG and NOG groups with lower-case hex keys; parameters in range; a
// release, when named, that is a valid version.
func (g *Genesis) Validate() error {
	if err := ValidateChainID(g.ChainID); err != nil {
		return fmt.Errorf("invalid genesis: %w", err)
	}
	if err := ValidateGenesisTime(g.Time); err != nil {
		return fmt.Errorf("invalid genesis: %w", err)
	}
	if err := validateNodes(g.Nodes); err != nil {
		return fmt.Errorf("invalid genesis: %w", err)
	}
	if err := validateAccounts(g.Accounts); err != nil {
		return fmt.Errorf("invalid genesis: %w", err)
	}
	for _, grp := range []struct {
		name string
		g    release.Group
	}{{"kmg", g.KMG}, {"nog", g.NOG}} {
		if err := grp.g.Validate(); err != nil {
			return fmt.Errorf("invalid genesis: %s: %w", grp.name, err)
		}
		// Group.Contains compares hex strings: only the canonical form
		// would ever match.
		for i, k := range grp.g.Keys {
			if k != strings.ToLower(strings.TrimSpace(k)) {
				return fmt.Errorf("invalid genesis: %s: key %d %q is not lower-case hex", grp.name, i, k)
			}
		}
	}
	if err := g.Params.Validate(); err != nil {
		return fmt.Errorf("invalid genesis: params: %w", err)
	}
	if g.Release != "" {
		if err := release.ValidateVersion(g.Release); err != nil {
			return fmt.Errorf("invalid genesis: release: %w", err)
		}
	}
	return nil
}

// ValidateChainID checks a chain id: 1 to 64 characters of a-z, 0-9 and '-'.
func ValidateChainID(id string) error {
	if len(id) == 0 || len(id) > MaxChainIDLen {
		return fmt.Errorf("chain id %q must have 1 to %d characters", id, MaxChainIDLen)
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("chain id %q may only contain a-z, 0-9 and '-'", id)
		}
	}
	return nil
}

// ValidateGenesisTime checks a genesis time: set, and representable as
// Unix nanoseconds in an int64 (how block times are kept).
func ValidateGenesisTime(t time.Time) error {
	if t.IsZero() {
		return errors.New("time is missing")
	}
	// Block times are Unix nanoseconds in an int64.
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, math.MaxInt64)) {
		return fmt.Errorf("time %s is out of range", t.Format(time.RFC3339))
	}
	return nil
}

func validateNodes(nodes []GenesisNode) error {
	if len(nodes) < 1 || len(nodes) > MaxGenesisNodes {
		return fmt.Errorf("%d nodes, want 1 to %d", len(nodes), MaxGenesisNodes)
	}
	ids := make(map[uint64]bool, len(nodes))
	addrs := make(map[string]string, 2*len(nodes))
	for i, n := range nodes {
		if err := n.Validate(); err != nil {
			if n.ID == 0 {
				return fmt.Errorf("node %d: %w", i, err) // no id to name it by: its index
			}
			return fmt.Errorf("node %d: %w", n.ID, err)
		}
		if ids[n.ID] {
			return fmt.Errorf("node %d: id %d appears twice", i, n.ID)
		}
		ids[n.ID] = true
		for _, a := range []struct{ field, addr string }{{"peer_addr", n.PeerAddr}, {"client_addr", n.ClientAddr}} {
			if other, dup := addrs[a.addr]; dup {
				return fmt.Errorf("node %d: %s %q is already used as %s", n.ID, a.field, a.addr, other)
			}
			addrs[a.addr] = fmt.Sprintf("node %d %s", n.ID, a.field)
		}
	}
	return nil
}

func validateAccounts(accounts []GenesisAccount) error {
	seen := make(map[Address]bool, len(accounts))
	var total uint64
	for i, a := range accounts {
		if a.Address.IsZero() {
			return fmt.Errorf("account %d: zero address", i)
		}
		if seen[a.Address] {
			return fmt.Errorf("account %d: address %s appears twice", i, a.Address)
		}
		seen[a.Address] = true
		if len(a.Label) > maxLabelLen {
			return fmt.Errorf("account %d: label longer than %d bytes", i, maxLabelLen)
		}
		var carry uint64
		total, carry = bits.Add64(total, a.Balance, 0)
		if carry != 0 {
			return fmt.Errorf("account %d: balances sum to more than %d", i, uint64(math.MaxUint64))
		}
	}
	return nil
}

// Validate checks the parameters' ranges; zero values stand for the
// defaults.
func (p Params) Validate() error {
	// Zero values mean the defaults.
	if iv := time.Duration(p.BlockInterval); iv != 0 && (iv < time.Millisecond || iv > time.Hour) {
		return fmt.Errorf("block_interval %s is not between 1ms and 1h", iv)
	}
	if p.MaxBlockTxs < 0 || p.MaxBlockTxs > MaxBlockTxsLimit {
		return fmt.Errorf("max_block_txs %d is not between 1 and %d (0: default)", p.MaxBlockTxs, MaxBlockTxsLimit)
	}
	if p.MaxPool < 0 || p.MaxPool > MaxPoolLimit {
		return fmt.Errorf("max_pool %d is not between 1 and %d (0: default)", p.MaxPool, MaxPoolLimit)
	}
	return nil
}

// Hash returns SHA-256 of the canonical JSON encoding of the genesis: the
// encoding/json encoding (struct fields in declaration order, no maps,
// so deterministic) of a copy with the time in UTC and default parameters
// filled in. Two files describing the same network thus hash the same
// whatever their spacing, field order or time zone.
func (g *Genesis) Hash() (Hash, error) {
	c := *g
	c.Time = g.Time.UTC()
	c.Params = g.Params.WithDefaults()
	if len(c.Accounts) == 0 {
		c.Accounts = []GenesisAccount{} // "[]" whether the file had [] or nothing
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return Hash{}, fmt.Errorf("hash genesis: %w", err)
	}
	return sha256.Sum256(b), nil
}

// OperatorAddress returns the node's operator key (zero if none).
func (n GenesisNode) OperatorAddress() Address {
	a, _ := ParseAddress(n.Operator) // Validate checked it
	return a
}

// NodeKeyAddress returns the key the node must register with (zero if
// the genesis names none).
func (n GenesisNode) NodeKeyAddress() Address {
	a, _ := ParseAddress(n.NodeKey)
	return a
}

// Node returns the genesis node with the id.
func (g *Genesis) Node(id uint64) (GenesisNode, bool) {
	for _, n := range g.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return GenesisNode{}, false
}

// GenesisBlock returns block 0, derived from the genesis: height 0, zero
// previous hash, body hash = the genesis hash, time = the genesis time, no
// transactions, no proposer, no signature and an empty body.
func GenesisBlock(g *Genesis) (*Block, error) {
	h, err := g.Hash()
	if err != nil {
		return nil, err
	}
	return &Block{Header: BlockHeader{
		ChainID:  g.ChainID,
		Height:   0,
		Time:     g.Time.UnixNano(),
		BodyHash: h,
	}}, nil
}
