package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/teeup/teeup/internal/jsonutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeconfig"
	"github.com/teeup/teeup/remoteadmin"
)

// Config is teeup-agent's configuration (JSON file; paths relative to the
// file resolve against its directory).
type Config struct {
	// NodeID is the node this agent looks after.
	NodeID uint64 `json:"node_id"`
	// Genesis is the network's genesis file (chain id, KMG keys).
	Genesis string `json:"genesis"`
	// Platform is this host's simulated platform directory.
	Platform string `json:"platform"`
	// Dir is the agent's own directory: journal, staged releases, sealed
	// keys in transit, snapshots, sockets.
	Dir string `json:"dir"`
	// NodeConfig is the node's configuration file, passed to teeup-node.
	// The agent reads the node's data directory and its admin and handover
	// sockets from it.
	NodeConfig string `json:"node_config"`
	// NodeDataDir is the node's data directory (ledger, sealed keys). It
	// defaults to the node configuration's data_dir, and must equal it
	// when both are given.
	NodeDataDir string `json:"node_data_dir,omitempty"`
	// NodeLog is where the node's output goes (default DIR/node.log).
	NodeLog string `json:"node_log,omitempty"`
	// InitialRelease is the signed release manifest of the version
	// installed when the agent first starts, and InitialNodeBinary that
	// version's local node binary. Both are verified before use.
	InitialRelease    string `json:"initial_release"`
	InitialNodeBinary string `json:"initial_node_binary"`
	// Distribute, if set, makes the agent supervise the host's ledger
	// distribution process (a flag day stops it before the snapshot).
	Distribute *ProcessConfig `json:"distribute,omitempty"`
	// DistributeState is the distribution state file captured in snapshots.
	DistributeState string `json:"distribute_state,omitempty"`
	// PollInterval is how often the agent reads the chain (default 1s).
	PollInterval Duration `json:"poll_interval,omitempty"`
	// ServeTimeout is how long a new node may take to receive its keys,
	// migrate and serve before the upgrade step fails (default 90s).
	ServeTimeout Duration `json:"serve_timeout,omitempty"`
	// AutoUpgrade follows upgrades scheduled on chain (default true).
	AutoUpgrade *bool `json:"auto_upgrade,omitempty"`
	// EnclaveDebug runs the agent without a valid signature structure.
	EnclaveDebug bool `json:"enclave_debug,omitempty"`
	// AllowDebugNodes accepts debug node enclaves (development only).
	AllowDebugNodes bool `json:"allow_debug_nodes,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level,omitempty"`
	// AdminListen, when set (host:port), serves the agent API also over
	// TCP to remote operators with mutual TLS: the agent's certificate is
	// attested, the client's carries an operator's ed25519 key (package
	// remoteadmin). Off by default.
	AdminListen string `json:"admin_listen,omitempty"`
	// AdminOperators are the hex ed25519 public keys of this host's own
	// operators: they may read and act over AdminListen (so may the
	// operator the chain records for this node; the Node Operators Group
	// in force and the operators of the network's members may read the
	// status).
	AdminOperators []string `json:"admin_operators,omitempty"`
	// FlagDay are the host's flag-day deadlines and test payments (see
	// FlagDayConfig).
	FlagDay FlagDayConfig `json:"flag_day,omitzero"`
}

// ProcessConfig describes a supervised helper process.
type ProcessConfig struct {
	Binary string   `json:"binary"`
	Args   []string `json:"args"`
	Log    string   `json:"log"`
}

// Duration is a duration written as a string ("2s") in JSON.
type Duration = jsonutil.Duration

// LoadConfig reads a configuration file strictly.
func LoadConfig(path string) (*Config, error) {
	var c Config
	if err := jsonutil.LoadStrict(path, &c); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	jsonutil.ResolvePaths(path, &c.FlagDay.TestKey)
	jsonutil.ResolvePaths(path, &c.Genesis, &c.Platform, &c.Dir, &c.NodeConfig, &c.NodeDataDir, &c.NodeLog, &c.InitialRelease, &c.InitialNodeBinary, &c.DistributeState)
	if c.Distribute != nil {
		jsonutil.ResolvePaths(path, &c.Distribute.Binary, &c.Distribute.Log)
	}
	return &c, nil
}

// WithDefaults fills optional fields.
func (c Config) WithDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = Duration(time.Second)
	}
	if c.ServeTimeout == 0 {
		c.ServeTimeout = Duration(90 * time.Second)
	}
	if c.NodeLog == "" && c.Dir != "" {
		c.NodeLog = layout.Agent(c.Dir).NodeLog()
	}
	if c.AutoUpgrade == nil {
		t := true
		c.AutoUpgrade = &t
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c
}

// Validate reports missing settings.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == 0 {
		errs = append(errs, errors.New("node_id is required"))
	}
	for name, v := range map[string]string{"genesis": c.Genesis, "dir": c.Dir, "node_config": c.NodeConfig,
		"initial_release": c.InitialRelease, "initial_node_binary": c.InitialNodeBinary} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	if _, err := remoteadmin.ParseKeys(c.AdminOperators); err != nil {
		errs = append(errs, fmt.Errorf("admin_operators: %w", err))
	}
	return errors.Join(errs...)
}

// nodeFiles is where the agent finds the node it supervises: its data
// directory and its sockets, as the node's configuration file sets them.
type nodeFiles struct {
	data           layout.Node
	adminSocket    string
	handoverSocket string
}

// resolveNode reads the node configuration file for the node's data
// directory and sockets (node.json may move the sockets out of the data
// directory).
func (c Config) resolveNode() (nodeFiles, error) {
	nc, err := nodeconfig.Load(c.NodeConfig)
	if err != nil {
		return nodeFiles{}, fmt.Errorf("node config: %w", err)
	}
	d := nc.WithDefaults()
	if d.DataDir == "" {
		return nodeFiles{}, fmt.Errorf("node config %s: data_dir is required", c.NodeConfig)
	}
	if c.NodeDataDir != "" && filepath.Clean(c.NodeDataDir) != filepath.Clean(d.DataDir) {
		return nodeFiles{}, fmt.Errorf("node_data_dir %s is not the data_dir %s of the node config %s: remove node_data_dir or make them equal",
			c.NodeDataDir, d.DataDir, c.NodeConfig)
	}
	return nodeFiles{data: layout.Node(d.DataDir), adminSocket: d.AdminSocket, handoverSocket: d.HandoverSocket}, nil
}
