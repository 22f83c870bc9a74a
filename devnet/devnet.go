// Package devnet lays out and runs a local teeup network: one simulated
// host per node (its own platform directory), a shared simulated root CA,
// a genesis with Key Management Group, Node Operators Group, operator test
// and user accounts, signed enclave binaries, and the node, agent and
// distribution processes started in the background.
//
// Layout of DIR:
//
//	devnet.json               this description
//	genesis.json
//	ca/                       simulated root CA (root.crt is what clients pin)
//	keys/                     signer, kmg-N, nog-N, operator-N, user-N keys (ed25519)
//	releases/<version>/       teeup-node(.sig), teeup-agent(.sig), teeup-distribute
//	hosts/node-N/platform/    simulated platform of host N
//	hosts/node-N/data/        node data dir (package layout: ledger, sealed keys, sockets)
//	hosts/node-N/agent/       agent dir (package layout: journal, staged releases, snapshots, sockets)
//	hosts/node-N/dist/        distribution output; dist.state is its state file
//	hosts/node-N/logs/        process logs
//	hosts/node-N/node.json    node configuration; agent.json the agent's
//
// An isolated devnet (UpOptions.Isolate) also gives every host its own
// copy of what its processes read, so that their configuration names
// nothing outside hosts/node-N/:
//
//	hosts/node-N/genesis.json      the public genesis
//	hosts/node-N/release/<version> the initial release (hard links)
//
// and runs the host in its own network namespace (see Isolation). The
// operator keys in keys/ stay with the CLI.
package devnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/tee"
)

// FileName is the devnet description inside DIR.
const FileName = "devnet.json"

// Network describes a devnet.
type Network struct {
	// Dir is the devnet directory (not stored).
	Dir string `json:"-"`
	// ChainID of the network.
	ChainID string `json:"chain_id"`
	// CreatedAt is when the devnet was laid out.
	CreatedAt time.Time `json:"created_at"`
	// Hosts are the simulated hosts, one node each.
	Hosts []Host `json:"hosts"`
	// Release is the version the nodes were started with.
	Release Release `json:"release"`
	// Accepted lists node MRENCLAVEs clients accept (the running one, plus
	// a scheduled upgrade's).
	Accepted []tee.Measurement `json:"accepted_mrenclaves"`
	// Agents reports whether hosts run an upgrade agent that supervises
	// the node; otherwise devnet runs the node directly.
	Agents bool `json:"agents"`
	// RaftCompactEvery is the nodes' raft_compact_every (0: default).
	RaftCompactEvery uint64 `json:"raft_compact_every,omitempty"`
	// NoDistribute reports that hosts run no ledger distribution.
	NoDistribute bool `json:"no_distribute,omitempty"`
	// Isolation, when set, puts every host in its own network namespace on
	// a private subnet; nil for a devnet on loopback.
	Isolation *Isolation `json:"isolation,omitempty"`
	// RemoteAdmin gives every host's node and agent a remote admin API
	// (admin_listen, mutual TLS) that authorises operator-N on host N.
	RemoteAdmin bool `json:"remote_admin,omitempty"`
	// Coordinated makes the agents leave a flag day to a coordinator
	// ('teeup flagday coordinate'; agent.json flag_day.coordinated), the
	// legacy mode. By default they decide their part of it from the chain
	// (package agent/decide), host N paying with its own copy of
	// operator-N's test account key (HostTestKey).
	Coordinated bool `json:"coordinated,omitempty"`
}

// Release is a set of binaries laid out under releases/<version>.
type Release struct {
	Version        string          `json:"version"`
	Dir            string          `json:"dir"`
	NodeMREnclave  tee.Measurement `json:"node_mrenclave"`
	AgentMREnclave tee.Measurement `json:"agent_mrenclave,omitempty"`
}

// Host is one simulated host.
type Host struct {
	ID          uint64 `json:"id"`
	Name        string `json:"name"`
	Dir         string `json:"dir"`
	PlatformDir string `json:"platform_dir"`
	DataDir     string `json:"data_dir"`
	AgentDir    string `json:"agent_dir"`
	AdminSocket string `json:"admin_socket"`
	AgentSocket string `json:"agent_socket"`
	NodeConfig  string `json:"node_config"`
	AgentConfig string `json:"agent_config"`
	ClientAddr  string `json:"client_addr"`
	PeerAddr    string `json:"peer_addr"`
	DistDir     string `json:"dist_dir"`
	DistState   string `json:"dist_state"`
	LogDir      string `json:"log_dir"`
	// AgentManaged means teeup-agent supervises this host's node and
	// distribution (and records their pids in AgentDir).
	AgentManaged bool `json:"agent_managed"`
	// ReleaseDir, when set, is the host's own copy of the release its
	// programs start from (isolated devnets); otherwise they start from
	// the network's Release.Dir.
	ReleaseDir string `json:"release_dir,omitempty"`
	// AdminAddr and AgentAddr are the node's and the agent's remote admin
	// APIs (devnets with RemoteAdmin only).
	AdminAddr string `json:"admin_addr,omitempty"`
	AgentAddr string `json:"agent_addr,omitempty"`
	// Namespace is the host's network namespace and SwitchPort its link on
	// the devnet's switch (isolated devnets only).
	Namespace  string `json:"namespace,omitempty"`
	SwitchPort string `json:"switch_port,omitempty"`
}

// Load reads DIR/devnet.json.
func Load(dir string) (*Network, error) {
	raw, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a devnet (no %s); create one with 'teeup devnet up --dir %s'", dir, FileName, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("load devnet: %w", err)
	}
	var n Network
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("load devnet %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load devnet: %w", err)
	}
	n.Dir = abs
	return &n, nil
}

// Save writes DIR/devnet.json atomically.
func (n *Network) Save() error {
	raw, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return fmt.Errorf("save devnet: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(n.Dir, FileName), append(raw, '\n'), 0o644)
}

// Host returns host id.
func (n *Network) Host(id uint64) (*Host, error) {
	for i := range n.Hosts {
		if n.Hosts[i].ID == id {
			return &n.Hosts[i], nil
		}
	}
	return nil, fmt.Errorf("devnet %s has no node %d (it has %d nodes)", n.Dir, id, len(n.Hosts))
}

// RootCert returns the path of the simulated root certificate.
func (n *Network) RootCert() string { return filepath.Join(n.Dir, "ca", layout.RootCertFile) }

// GenesisPath returns the path of the genesis file.
func (n *Network) GenesisPath() string { return filepath.Join(n.Dir, "genesis.json") }

// hostGenesis is the genesis file host h's processes read: its own copy on
// an isolated devnet.
func (n *Network) hostGenesis(h *Host) string {
	if n.Isolation != nil {
		return filepath.Join(h.Dir, "genesis.json")
	}
	return n.GenesisPath()
}

// programPath is where host h starts prog from.
func (n *Network) programPath(h *Host, prog string) string {
	if h.ReleaseDir != "" {
		return filepath.Join(h.ReleaseDir, prog)
	}
	return filepath.Join(n.Release.Dir, prog)
}

// HostTestKey is where host h keeps its own copy of its operator's test
// account key (operator-N for host N): its agent's flag_day.test_key, the
// one operator key in the host's directory.
func (n *Network) HostTestKey(h *Host) string {
	return filepath.Join(h.Dir, "keys", fmt.Sprintf("operator-%d.key", h.ID))
}

// KeyPath returns the path of a devnet key file by name ("operator-1").
func (n *Network) KeyPath(name string) string { return filepath.Join(n.Dir, "keys", name+".key") }

// AcceptedMeasurements returns the node MRENCLAVEs clients accept, as hex.
func (n *Network) AcceptedMeasurements() []string {
	out := make([]string, 0, len(n.Accepted))
	for _, m := range n.Accepted {
		out = append(out, m.String())
	}
	return out
}

// Accept adds m to the measurements clients accept.
func (n *Network) Accept(m tee.Measurement) {
	if !slices.Contains(n.Accepted, m) {
		n.Accepted = append(n.Accepted, m)
	}
}
