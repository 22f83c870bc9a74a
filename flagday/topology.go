// Package flagday runs network-wide enclave upgrades — the seed's "flag
// day" — from any machine, with exactly one rollback owner per network.
//
// With coordinator-free agents (the default) each host's agent decides
// its part from the chain and owns its host's rollback; this package only
// checks every host before the flag day (CheckPreflight), casts its
// operator's own schedule vote and observes every host until it settled
// (RunFree, Observe), changing nothing on a host.
//
// With agents configured coordinated, the legacy Coordinator drives the
// flag day and owns the rollback: schedule it on chain (or run it now, in
// manual mode), verify that ingress closed, that nothing is in flight and
// every node stands at the same height and hash, let each host's agent
// snapshot and hand the keys over to the new enclave, verify that every
// new node attests every other, run test payments, reopen ingress and
// watch a live period. Any failure before reopening rolls the network
// back. Every step is idempotent and journalled, so a killed coordinator
// resumes where it stopped. It refuses a network whose agents are
// coordinator-free (ErrAgentsCoordinatorFree), and RunFree refuses
// coordinated agents (ErrAgentsCoordinated).
package flagday

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/teeup/teeup/devnet"
)

// Host is one node's host as the coordinator reaches it: on this machine
// through the node's and the agent's unix sockets, or on any machine
// through their remote admin APIs (admin_listen) over mutual TLS.
type Host struct {
	ID          uint64 `json:"id"`
	AdminSocket string `json:"admin_socket,omitempty"`
	AgentSocket string `json:"agent_socket,omitempty"`
	// AdminAddr and AgentAddr (host:port) are the node's and the agent's
	// remote admin APIs; either replaces the corresponding socket.
	AdminAddr string `json:"admin_addr,omitempty"`
	AgentAddr string `json:"agent_addr,omitempty"`
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

	// For hosts reached remotely (admin_addr, agent_addr): OperatorKey is
	// the key file the coordinator authenticates with (its operator's
	// own: other hosts let it read, its own host lets it act), Root the
	// attestation root to pin, NodeMREnclaves and AgentMREnclaves the
	// node and agent measurements to accept (hex; list the running
	// release's and the new one's).
	OperatorKey     string   `json:"operator_key,omitempty"`
	Root            string   `json:"root,omitempty"`
	NodeMREnclaves  []string `json:"node_mrenclaves,omitempty"`
	AgentMREnclaves []string `json:"agent_mrenclaves,omitempty"`
	// AllowDebug accepts DEBUG enclaves on remote hosts (development).
	AllowDebug bool `json:"allow_debug,omitempty"`
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

// Remote reports whether any host is reached over its remote admin API.
func (t Topology) Remote() bool {
	return slices.ContainsFunc(t.Hosts, func(h Host) bool { return h.AdminAddr != "" || h.AgentAddr != "" })
}

// Validate checks the topology is usable: every host reachable one way,
// no host listed twice — not by id, and not by a socket or an address
// that another entry (or the same entry's other API) already names — and
// what remote hosts need.
func (t Topology) Validate() error {
	if err := t.validateShape(); err != nil {
		return err
	}
	if d := t.duplicates(); len(d) > 0 {
		return fmt.Errorf("topology: %s", d[0].Detail)
	}
	return nil
}

// validateShape is Validate without the duplicate entries (which the
// coordinator-free preflight names as blockers, with every other one).
func (t Topology) validateShape() error {
	if t.ChainID == "" || len(t.Hosts) == 0 {
		return fmt.Errorf("topology: chain id and at least one host are required")
	}
	var nodesRemote, agentsRemote bool
	for _, h := range t.Hosts {
		if h.ID == 0 {
			return fmt.Errorf("topology: a host without its node id (\"id\")")
		}
		for _, api := range h.apis() {
			switch {
			case api.socket != "" && api.addr != "":
				return fmt.Errorf("topology: host %d names its %s both by socket and by address: give one", h.ID, api.name)
			case api.socket == "" && api.addr == "":
				return fmt.Errorf("topology: host %d needs its %s admin socket (%s_socket) or address (%s_addr)", h.ID, api.name, api.field, api.field)
			case api.addr != "":
				if _, err := normalizeAddr(api.addr); err != nil {
					return fmt.Errorf("topology: host %d %s address: %w", h.ID, api.name, err)
				}
				if api.name == "node" {
					nodesRemote = true
				} else {
					agentsRemote = true
				}
			}
		}
	}
	if nodesRemote || agentsRemote {
		if t.OperatorKey == "" || t.Root == "" {
			return fmt.Errorf("topology: hosts reached by address need \"operator_key\" (the key file you authenticate with) and \"root\" (the attestation root to pin)")
		}
		if nodesRemote && len(t.NodeMREnclaves) == 0 {
			return fmt.Errorf("topology: hosts reached by admin_addr need \"node_mrenclaves\" (the node measurements to accept)")
		}
		if agentsRemote && len(t.AgentMREnclaves) == 0 {
			return fmt.Errorf("topology: hosts reached by agent_addr need \"agent_mrenclaves\" (the agent measurements to accept)")
		}
	}
	if len(t.OperatorKeys) < 2 {
		return fmt.Errorf("topology: two operator test account keys are needed (self and cross payment)")
	}
	return nil
}

// hostAPI is one of a host's two admin APIs as the topology names it.
type hostAPI struct{ name, field, socket, addr string }

func (h Host) apis() []hostAPI {
	return []hostAPI{{"node", "admin", h.AdminSocket, h.AdminAddr}, {"agent", "agent", h.AgentSocket, h.AgentAddr}}
}

// duplicates names every entry that lists a host already listed: the
// same node id, or a socket or an address (in any spelling) that another
// entry — or the same entry's other API — already names.
func (t Topology) duplicates() []Blocker {
	var out []Blocker
	ids := map[uint64]bool{}
	seen := map[string]string{} // endpoint → which host's what
	for _, h := range t.Hosts {
		if ids[h.ID] {
			out = append(out, Blocker{Host: h.ID, Kind: BlockDuplicate, Detail: fmt.Sprintf("host %d listed twice", h.ID)})
			continue
		}
		ids[h.ID] = true
		for _, api := range h.apis() {
			var key, field string
			switch {
			case api.socket != "":
				key, field = "unix:"+filepath.Clean(api.socket), api.name+" socket "+api.socket
			case api.addr != "":
				norm, err := normalizeAddr(api.addr)
				if err != nil {
					continue // validateShape names it
				}
				key, field = "tcp:"+norm, api.name+" address "+api.addr
			default:
				continue
			}
			what := fmt.Sprintf("host %d's %s", h.ID, field)
			if prev, dup := seen[key]; dup {
				out = append(out, Blocker{Host: h.ID, Kind: BlockDuplicate, Detail: fmt.Sprintf("%s is also %s: the same host twice", what, prev)})
				continue
			}
			seen[key] = what
		}
	}
	return out
}

// normalizeAddr returns host:port in one spelling (lower-case name,
// canonical IP, numeric port), so that two spellings of one address are
// recognised as the same host.
func normalizeAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(strings.TrimSpace(addr))
	if err != nil {
		return "", err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("%q: port %q is not a port number", addr, port)
	}
	if host == "" {
		return "", fmt.Errorf("%q: no host", addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().WithZone("").String()
	} else {
		host = strings.TrimSuffix(strings.ToLower(host), ".")
	}
	return net.JoinHostPort(host, strconv.FormatUint(p, 10)), nil
}
