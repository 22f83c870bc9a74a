package agent

import (
	"context"

	"github.com/teeup/teeup/nodeapi"
)

// nodeChain reads the chain through the node's admin socket.
type nodeChain struct{ admin *nodeapi.AdminClient }

func newNodeChain(socket string) *nodeChain { return &nodeChain{admin: nodeapi.NewAdminClient(socket)} }

// Approved implements chainView.
func (c *nodeChain) Approved(ctx context.Context) ([]approvedRelease, error) {
	g, err := c.admin.Releases(ctx)
	if err != nil {
		return nil, err
	}
	var out []approvedRelease
	for _, r := range g.ApprovedReleases() {
		out = append(out, approvedRelease{Version: r.Version, ApprovedAt: r.ApprovedAt, Release: r.Release})
	}
	return out, nil
}

// Schedule implements chainView.
func (c *nodeChain) Schedule(ctx context.Context) (*upgradeSchedule, error) {
	g, err := c.admin.Releases(ctx)
	if err != nil {
		return nil, err
	}
	if g.Schedule == nil {
		return nil, nil
	}
	return &upgradeSchedule{Version: g.Schedule.Version, NodeMREnclave: g.Schedule.NodeMREnclave, ActivationHeight: g.Schedule.ActivationHeight}, nil
}

// RollbackApproved implements chainView.
func (c *nodeChain) RollbackApproved(ctx context.Context, from, to string) (bool, error) {
	g, err := c.admin.Releases(ctx)
	if err != nil {
		return false, err
	}
	return g.RollbackAllowed(from, to), nil
}

// Status implements chainView.
func (c *nodeChain) Status(ctx context.Context) (*nodeapi.Status, error) {
	return c.admin.Status(ctx)
}
