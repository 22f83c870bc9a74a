package flagday

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
)

// dialHosts returns the node admin and agent clients of every host: unix
// sockets, or remote admin APIs over mutual TLS authenticated with the
// topology's operator key. Every client addresses its host's node id: a
// host that answers as another node is refused (before anything is sent,
// remotely: the node's attested certificate binds its node id).
func dialHosts(top Topology) (map[uint64]*nodeapi.AdminClient, map[uint64]*agentapi.Client, error) {
	admins, agents := map[uint64]*nodeapi.AdminClient{}, map[uint64]*agentapi.Client{}
	var base remoteadmin.Target
	var nodeV, agentV *attest.Verifier
	if top.Remote() {
		key, err := keyfile.ReadPrivate(top.OperatorKey)
		if err != nil {
			return nil, nil, fmt.Errorf("topology operator_key: %w", err)
		}
		base = remoteadmin.Target{ChainID: top.ChainID, RootPath: top.Root, AllowDebug: top.AllowDebug, OperatorKey: key}
		if len(top.NodeMREnclaves) > 0 {
			t := base
			t.MREnclaves = top.NodeMREnclaves
			if nodeV, err = t.Verifier(); err != nil {
				return nil, nil, fmt.Errorf("topology: nodes: %w", err)
			}
		}
		if len(top.AgentMREnclaves) > 0 {
			t := base
			t.MREnclaves = top.AgentMREnclaves
			if agentV, err = t.Verifier(); err != nil {
				return nil, nil, fmt.Errorf("topology: agents: %w", err)
			}
		}
	}
	for _, h := range top.Hosts {
		t := base
		t.NodeID = h.ID
		if h.AdminAddr != "" {
			t.Addr = h.AdminAddr
			a, err := nodeapi.DialAdminWith(t, nodeV)
			if err != nil {
				return nil, nil, err
			}
			admins[h.ID] = a
		} else {
			admins[h.ID] = nodeapi.NewAdminClient(h.AdminSocket).ExpectNode(h.ID)
		}
		if h.AgentAddr != "" {
			t.Addr = h.AgentAddr
			a, err := agentapi.DialRemoteWith(t, agentV)
			if err != nil {
				return nil, nil, err
			}
			agents[h.ID] = a
		} else {
			agents[h.ID] = agentapi.NewClient(h.AgentSocket).ExpectNode(h.ID)
		}
	}
	return admins, agents, nil
}

// ErrUnreachable: a host's node or agent does not answer (or answers as
// another node, or refuses the coordinator's key).
var ErrUnreachable = errors.New("a host is unreachable")

// reach reports whether host id's node and agent both answer (each read of
// the status is bounded to 3 s).
func (c *Coordinator) reach(ctx context.Context, id uint64) error {
	var errs []error
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := c.admins[id].Status(sctx); err != nil {
		errs = append(errs, fmt.Errorf("host %d node: %w", id, err))
	}
	if _, err := c.agents[id].Status(sctx); err != nil {
		errs = append(errs, fmt.Errorf("host %d agent: %w", id, err))
	}
	return errors.Join(errs...)
}

// refuseCoordinatorFree returns a *PreflightError matching
// ErrAgentsCoordinatorFree when any host's agent reports that it runs
// coordinator-free flag days: that agent owns its host's rollback, so a
// coordinator acting on the network would be a second owner. An agent
// that does not answer is not counted (it cannot be told apart).
func (c *Coordinator) refuseCoordinatorFree(ctx context.Context) error {
	var bs []Blocker
	for _, h := range c.opt.Topology.Hosts {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := c.agents[h.ID].Status(sctx)
		cancel()
		if err == nil && st.FlagDay() == agentapi.FlagDayCoordinatorFree {
			bs = append(bs, Blocker{Host: h.ID, Kind: BlockMode, cause: ErrAgentsCoordinatorFree,
				Detail: "its agent is coordinator-free: it decides its host's part from the chain and owns its rollback; use 'teeup flagday run' (observe and vote), or configure every agent flag_day.coordinated"})
		}
	}
	if len(bs) > 0 {
		return &PreflightError{Version: c.opt.Version, Blockers: bs}
	}
	return nil
}
