// Package hostinit prepares one operator's host of a teeup network without
// devnet: the directory layout (every directory 0700), the simulated
// platform (certified at once by a CA at hand, or by request so that its
// secret and attestation key never leave the host), the operator's keys,
// complete node and agent configuration files, and host.json, the host's
// public description from which its genesis bundle is made.
package hostinit

import (
	"path/filepath"
)

// Layout is where a host's files live, all under one directory.
type Layout struct {
	// Dir is the host directory (absolute).
	Dir string
}

// File and directory names inside a host directory.
const (
	HostFile        = "host.json"
	BundleFile      = "bundle.json"
	GenesisFile     = "genesis.json"
	NodeConfigFile  = "node.json"
	AgentConfigFile = "agent.json"
	KeysDir         = "keys"
	PlatformDir     = "platform"
	DataDir         = "data"
	AgentDir        = "agent"
	LogDir          = "logs"
	DistDir         = "dist"
	DistStateFile   = "dist.state"
	ReleaseDir      = "release"
)

// Binary names a release directory holds.
const (
	NodeBinary       = "teeup-node"
	AgentBinary      = "teeup-agent"
	DistributeBinary = "teeup-distribute"
	ReleaseManifest  = "release.json"
)

// Key file names in the keys directory, by role.
const (
	OperatorKeyFile = "operator.key"
	NOGKeyFile      = "nog.key"
	AccountKeyFile  = "account.key"
	KMGKeyFile      = "kmg.key"
)

func (l Layout) path(parts ...string) string {
	return filepath.Join(append([]string{l.Dir}, parts...)...)
}

// HostFile is the host's public description (host.json).
func (l Layout) HostFile() string { return l.path(HostFile) }

// BundleFile is where 'teeup host bundle' writes the bundle by default.
func (l Layout) BundleFile() string { return l.path(BundleFile) }

// Genesis is where the operator installs the network's genesis.json.
func (l Layout) Genesis() string { return l.path(GenesisFile) }

// NodeConfig is the node's configuration file.
func (l Layout) NodeConfig() string { return l.path(NodeConfigFile) }

// AgentConfig is the agent's configuration file.
func (l Layout) AgentConfig() string { return l.path(AgentConfigFile) }

// Keys is the directory of the operator's key files.
func (l Layout) Keys() string { return l.path(KeysDir) }

// Key is the key file of a role in the keys directory.
func (l Layout) Key(name string) string { return l.path(KeysDir, name) }

// Platform is the default platform directory.
func (l Layout) Platform() string { return l.path(PlatformDir) }

// Data is the node's data directory.
func (l Layout) Data() string { return l.path(DataDir) }

// Agent is the agent's directory.
func (l Layout) Agent() string { return l.path(AgentDir) }

// Logs holds the node's and distribution's logs.
func (l Layout) Logs() string { return l.path(LogDir) }

// Dist is the default ledger distribution destination.
func (l Layout) Dist() string { return l.path(DistDir) }

// DistState is the distribution state file.
func (l Layout) DistState() string { return l.path(DistStateFile) }

// Release is the default directory of the installed release.
func (l Layout) Release() string { return l.path(ReleaseDir) }

// AdminSocket is the node's admin socket (the node's default, DATA/admin.sock).
func (l Layout) AdminSocket() string { return l.path(DataDir, "admin.sock") }

// sockets are every unix socket the node and agent create on the host.
func (l Layout) sockets() []string {
	return []string{
		l.path(DataDir, "admin.sock"), l.path(DataDir, "handover.sock"),
		l.path(AgentDir, "agent.sock"), l.path(AgentDir, "handover.sock"),
	}
}

// dirs are the directories Init creates (0700), the host directory first.
func (l Layout) dirs() []string {
	return []string{l.Dir, l.Keys(), l.Data(), l.Agent(), l.Logs(), l.Dist(), l.Release()}
}
