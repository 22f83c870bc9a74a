package hostinit

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/node"
)

// ConfigOptions are what a host's node and agent configurations depend on
// besides its layout.
type ConfigOptions struct {
	// NodeID is the node's id in the genesis.
	NodeID uint64
	// Platform is the platform directory (default: the layout's).
	Platform string
	// ReleaseDir holds the installed release: release.json, teeup-node
	// (+ .sig), teeup-agent (+ .sig), teeup-distribute (default: the
	// layout's).
	ReleaseDir string
	// Bootstrap lets this node create the network's ledger key (exactly
	// one node of the network sets it).
	Bootstrap bool
	// PeerListen and ClientListen override the genesis addresses as
	// listen addresses (e.g. 0.0.0.0:7101 behind NAT).
	PeerListen, ClientListen string
	// NoDistribute leaves ledger distribution out of the agent's care.
	NoDistribute bool
	// DistributeDest is distribution's destination: a directory or an
	// s3:// URL (default: the layout's dist directory).
	DistributeDest string
	// AdminListen and AgentListen (host:port), when set, serve the node's
	// and the agent's admin APIs to remote operators over mutual TLS.
	AdminListen, AgentListen string
	// Operators are the hex public keys of the host's own operators,
	// authorised in both configurations (admin_operators).
	Operators []string
}

func (o ConfigOptions) withDefaults(l Layout) ConfigOptions {
	if o.Platform == "" {
		o.Platform = l.Platform()
	}
	if o.ReleaseDir == "" {
		o.ReleaseDir = l.Release()
	}
	if o.DistributeDest == "" {
		o.DistributeDest = l.Dist()
	}
	return o
}

// NodeConfig returns the host's complete teeup-node configuration: every
// optional field at its default, written out so the operator sees it.
func NodeConfig(l Layout, o ConfigOptions) node.Config {
	o = o.withDefaults(l)
	return node.Config{
		NodeID:         o.NodeID,
		Genesis:        l.Genesis(),
		DataDir:        l.Data(),
		Platform:       o.Platform,
		PeerListen:     o.PeerListen,
		ClientListen:   o.ClientListen,
		AdminListen:    o.AdminListen,
		AdminOperators: o.Operators,
		Bootstrap:      o.Bootstrap,
	}.WithDefaults()
}

// AgentConfig returns the host's complete teeup-agent configuration: the
// agent supervises the node (and distribution) of the release installed in
// the release directory and follows upgrades scheduled on chain.
func AgentConfig(l Layout, o ConfigOptions) agent.Config {
	o = o.withDefaults(l)
	c := agent.Config{
		NodeID:            o.NodeID,
		Genesis:           l.Genesis(),
		Platform:          o.Platform,
		Dir:               l.Agent(),
		NodeConfig:        l.NodeConfig(),
		NodeDataDir:       l.Data(),
		NodeLog:           filepath.Join(l.Logs(), "node.log"),
		InitialRelease:    filepath.Join(o.ReleaseDir, ReleaseManifest),
		InitialNodeBinary: filepath.Join(o.ReleaseDir, NodeBinary),
		AdminListen:       o.AgentListen,
		AdminOperators:    o.Operators,
	}
	if !o.NoDistribute {
		c.Distribute = &agent.ProcessConfig{
			Binary: filepath.Join(o.ReleaseDir, DistributeBinary),
			Args:   []string{"run", "--admin-socket", l.AdminSocket(), "--dest", o.DistributeDest, "--state", l.DistState()},
			Log:    filepath.Join(l.Logs(), "distribute.log"),
		}
		c.DistributeState = l.DistState()
	}
	return c.WithDefaults()
}

// encodeJSON returns v as indented JSON with a final newline, as the
// configuration files are written.
func encodeJSON(v any) ([]byte, error) {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return append(raw, '\n'), nil
}

// EncodeNodeConfig returns a node configuration as its file's content.
func EncodeNodeConfig(c node.Config) ([]byte, error) { return encodeJSON(c) }

// EncodeAgentConfig returns an agent configuration as its file's content.
func EncodeAgentConfig(c agent.Config) ([]byte, error) { return encodeJSON(c) }
