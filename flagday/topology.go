// Package flagday coordinates a network-wide enclave upgrade — the seed's
// "flag day" — across every host: schedule it on chain (or run it now, in
// manual mode), verify that ingress closed, that nothing is in flight and
// every node stands at the same height and hash, let each host's agent
// snapshot and hand the keys over to the new enclave, verify that every
// new node attests every other, run test payments, reopen ingress and
// watch a live period. Any failure before reopening rolls the network
// back. Every step is idempotent and journalled, so a killed coordinator
// resumes where it stopped.
package flagday

import (
	"fmt"
	"slices"

	"github.com/teeup/teeup/devnet"
)

// Host is one node's host as the coordinator reaches it.
type Host struct {
	ID          uint64 `json:"id"`
	AdminSocket string `json:"admin_socket"`
	AgentSocket string `json:"agent_socket"`
}

// Topology is the network the coordinator drives.
type Topology struct {
	ChainID string `json:"chain_id"`
	Hosts   []Host `json:"hosts"`
	// NOGKeys are Node Operators Group key files the coordinator votes
	// with (schedule and abort); at least the quorum.
	NOGKeys []string `json:"nog_keys"`
	// OperatorKeys are operator test account key files: the first pays
	// itself (self payment) and the second (cross payment).
	OperatorKeys []string `json:"operator_keys"`
}

// FromDevnet derives the topology of a devnet.
func FromDevnet(n *devnet.Network) Topology {
	t := Topology{ChainID: n.ChainID}
	for _, h := range n.Hosts {
		t.Hosts = append(t.Hosts, Host{ID: h.ID, AdminSocket: h.AdminSocket, AgentSocket: h.AgentSocket})
	}
	for i := 1; i <= devnet.NOGMembers; i++ {
		t.NOGKeys = append(t.NOGKeys, n.KeyPath(fmt.Sprintf("nog-%d", i)))
	}
	for i := 1; i <= devnet.OperatorCount; i++ {
		t.OperatorKeys = append(t.OperatorKeys, n.KeyPath(fmt.Sprintf("operator-%d", i)))
	}
	return t
}

// Validate checks the topology is usable.
func (t Topology) Validate() error {
	if t.ChainID == "" || len(t.Hosts) == 0 {
		return fmt.Errorf("topology: chain id and at least one host are required")
	}
	ids := make([]uint64, 0, len(t.Hosts))
	for _, h := range t.Hosts {
		if h.AdminSocket == "" || h.AgentSocket == "" {
			return fmt.Errorf("topology: host %d needs its node admin socket and agent socket", h.ID)
		}
		if slices.Contains(ids, h.ID) {
			return fmt.Errorf("topology: host %d listed twice", h.ID)
		}
		ids = append(ids, h.ID)
	}
	if len(t.OperatorKeys) < 2 {
		return fmt.Errorf("topology: two operator test account keys are needed (self and cross payment)")
	}
	return nil
}
