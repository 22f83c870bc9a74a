package devnet

import (
	"context"
	"time"

	"github.com/teeup/teeup/nodeapi"
)

// HostStatus is one row of 'teeup devnet status'.
type HostStatus struct {
	ID         uint64          `json:"id"`
	Name       string          `json:"name"`
	NodePID    int             `json:"node_pid,omitempty"`
	AgentPID   int             `json:"agent_pid,omitempty"`
	DistPID    int             `json:"distribute_pid,omitempty"`
	ClientAddr string          `json:"client_addr"`
	Admin      string          `json:"admin_socket"`
	Status     *nodeapi.Status `json:"status,omitempty"`
	Error      string          `json:"error,omitempty"`
}

// Statuses queries every host: its processes and its node's admin status.
func Statuses(ctx context.Context, n *Network) []HostStatus {
	out := make([]HostStatus, 0, len(n.Hosts))
	for i := range n.Hosts {
		h := &n.Hosts[i]
		hs := HostStatus{ID: h.ID, Name: h.Name, ClientAddr: h.ClientAddr, Admin: h.AdminSocket}
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

// Down stops every process of the devnet: distribution, agents, nodes.
// The directory is kept (its data survives a later 'up --resume').
func Down(ctx context.Context, n *Network) error {
	var firstErr error
	for i := range n.Hosts {
		h := &n.Hosts[i]
		// Agents first: a running agent would restart what we stop.
		for _, prog := range []string{AgentBin, DistributeBin, NodeBin} {
			if err := StopProcess(ctx, h, prog, 10*time.Second); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}
