package devnet

import (
	"context"
	"errors"
	"time"

	"github.com/teeup/teeup/nodeapi"
)

// HostStatus is one row of 'teeup devnet status'.
type HostStatus struct {
	ID         uint64 `json:"id"`
	Name       string `json:"name"`
	NodePID    int    `json:"node_pid,omitempty"`
	AgentPID   int    `json:"agent_pid,omitempty"`
	DistPID    int    `json:"distribute_pid,omitempty"`
	ClientAddr string `json:"client_addr"`
	Admin      string `json:"admin_socket"`
	// Namespace and Link describe an isolated host's network: its
	// namespace, and "up", "partitioned" or "unknown".
	Namespace string          `json:"namespace,omitempty"`
	Link      string          `json:"link,omitempty"`
	Status    *nodeapi.Status `json:"status,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// Statuses queries every host: its processes and its node's admin status.
func Statuses(ctx context.Context, n *Network) []HostStatus {
	out := make([]HostStatus, 0, len(n.Hosts))
	for i := range n.Hosts {
		h := &n.Hosts[i]
		hs := HostStatus{ID: h.ID, Name: h.Name, ClientAddr: h.ClientAddr, Admin: h.AdminSocket, Namespace: h.Namespace}
		if n.Isolation != nil {
			switch up, err := LinkUp(ctx, n, h); {
			case err != nil:
				hs.Link = "unknown" // no root, or the namespaces are gone (down)
			case up:
				hs.Link = "up"
			default:
				hs.Link = "partitioned"
			}
		}
		if pid, ok := ProcessAlive(h, NodeBin); ok {
			hs.NodePID = pid
		}
		if pid, ok := ProcessAlive(h, AgentBin); ok {
			hs.AgentPID = pid
		}
		if pid, ok := ProcessAlive(h, DistributeBin); ok {
			hs.DistPID = pid
		}
		c := nodeapi.NewAdminClient(h.AdminSocket)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(cctx)
		cancel()
		c.Close()
		if err != nil {
			hs.Error = err.Error()
		} else {
			hs.Status = st
		}
		out = append(out, hs)
	}
	return out
}

// Down stops every process of the devnet: agents, distribution, nodes;
// on an isolated devnet it then removes every namespace of the devnet
// (RemoveNetwork). The directory and its data are kept: StartHost (after
// ConnectHost) starts a host again.
func Down(ctx context.Context, n *Network) error {
	var errs []error
	for i := range n.Hosts {
		if err := StopHost(ctx, &n.Hosts[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Isolation != nil {
		if _, err := RemoveNetwork(ctx, n.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
