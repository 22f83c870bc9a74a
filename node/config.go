package node

import "github.com/teeup/teeup/nodeconfig"

// Config is teeup-node's configuration. It is defined in package
// nodeconfig, which the upgrade agent reads without linking the node.
type Config = nodeconfig.Config
