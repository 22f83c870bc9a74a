package flagday

import (
	"context"
	"fmt"
	"time"

	"github.com/teeup/teeup/agentapi"
)

// RolloutResult reports a non-enclave rollout.
type RolloutResult struct {
	Version string
	Hosts   []RolloutHost
}

// RolloutHost is one host's part.
type RolloutHost struct {
	ID         uint64
	Took       time.Duration
	Distribute string
	Height     uint64
}

// Rollout installs a release that changes no enclave — its node MRENCLAVE
// equals the running one, say only teeup-distribute changed — host by
// host: no ingress closure, no halt, no key handover. Each host is
// verified (node still serving and committing, distribution running the
// new binary) before the next one starts.
func Rollout(ctx context.Context, opt Options) (*RolloutResult, error) {
	c, err := newCoordinator(opt)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	g, err := c.governance(ctx)
	if err != nil {
		return nil, err
	}
	sr, _, err := releaseOf(g, opt.Version)
	if err != nil {
		return nil, err
	}
	sts, err := c.statuses(ctx)
	if err != nil {
		return nil, err
	}
	for id, st := range sts {
		if st.MREnclave != sr.Manifest.Node.MREnclave {
			return nil, fmt.Errorf("release %s changes the node enclave (node %d runs %s, the release has %s): it needs a flag day ('teeup flagday run', or 'coordinate' for coordinated agents), not a rollout",
				opt.Version, id, st.MREnclave.Short(), sr.Manifest.Node.MREnclave.Short())
		}
	}
	raw, err := sr.Marshal()
	if err != nil {
		return nil, err
	}
	res := &RolloutResult{Version: opt.Version}
	for _, h := range opt.Topology.Hosts {
		start := time.Now()
		fmt.Fprintf(c.out, "── host %d: rolling out %s (node enclave unchanged: no flag day)\n", h.ID, opt.Version)
		if _, err := c.agents[h.ID].Stage(ctx, raw); err != nil {
			return res, fmt.Errorf("host %d: stage: %w", h.ID, err)
		}
		before, err := c.admins[h.ID].Status(ctx)
		if err != nil {
			return res, fmt.Errorf("host %d: %w", h.ID, err)
		}
		inst, err := c.agents[h.ID].Rollout(ctx, opt.Version)
		if err != nil {
			return res, fmt.Errorf("host %d: %w", h.ID, err)
		}
		// Verify: the node kept serving and committing; distribution runs
		// the release's binary.
		var last *agentapi.Status
		err = c.poll(ctx, 200*time.Millisecond, func() (bool, string, error) {
			st, err := c.admins[h.ID].Status(ctx)
			if err != nil {
				return false, err.Error(), nil
			}
			if st.Height <= before.Height {
				return false, fmt.Sprintf("node %d not advancing past %d", h.ID, before.Height), nil
			}
			ag, err := c.agents[h.ID].Status(ctx)
			if err != nil {
				return false, err.Error(), nil
			}
			last = ag
			if inst.DistributeBinary != "" && ag.DistributePID == 0 {
				return false, "distribution not running yet", nil
			}
			return ag.Installed.Version == opt.Version, "agent has not installed " + opt.Version, nil
		})
		if err != nil {
			return res, fmt.Errorf("host %d after rollout: %w", h.ID, err)
		}
		st, _ := c.admins[h.ID].Status(ctx)
		rh := RolloutHost{ID: h.ID, Took: time.Since(start), Distribute: inst.DistributeBinary}
		if st != nil {
			rh.Height = st.Height
		}
		res.Hosts = append(res.Hosts, rh)
		_ = last
		fmt.Fprintf(c.out, "   host %d on %s in %s; node kept serving (height %d)\n", h.ID, opt.Version, rh.Took.Round(time.Millisecond), rh.Height)
	}
	return res, nil
}
