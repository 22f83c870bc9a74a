package node

import "github.com/teeup/teeup/nodeconfig"

// Config is teeup-node's configuration. It is defined in package
// nodeconfig, which the upgrade agent reads without linking the node.
type Config = nodeconfig.Config

// ClientLimits bound the client API (see nodeconfig.ClientLimits).
type ClientLimits = nodeconfig.ClientLimits

// Duration is a duration written as a string ("15s") in JSON.
type Duration = nodeconfig.Duration

// LoadConfig reads a node configuration file (see nodeconfig.Load).
func LoadConfig(path string) (*Config, error) { return nodeconfig.Load(path) }
