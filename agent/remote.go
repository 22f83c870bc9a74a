package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
)

// startRemote serves the agent API on admin_listen over mutual TLS, if
// configured: the agent presents attested credentials bound to (agent,
// chain id, node id) and every request is authorised by the client's
// operator key (remotePolicy). Only GET requests (the status) are reads.
func (a *Agent) startRemote(handler func() (remoteadmin.Policy, error)) (func(), error) {
	if a.cfg.AdminListen == "" {
		return func() {}, nil
	}
	creds, err := remoteadmin.NewServerCredentials(a.enclave, remoteadmin.RoleAgent, a.network.ChainID, a.cfg.NodeID)
	if err != nil {
		return nil, err
	}
	log := a.log.With("component", "remote-admin")
	h := remoteadmin.Handler(a.routes(), remoteadmin.HandlerOptions{
		Role: remoteadmin.RoleAgent, NodeID: a.cfg.NodeID,
		Required: remoteadmin.ReadsAre(),
		Policy:   func(context.Context) (remoteadmin.Policy, error) { return handler() },
		Log:      log,
	})
	addr, stop, err := remoteadmin.Serve(a.cfg.AdminListen, creds, h, log)
	if err != nil {
		return nil, err
	}
	a.log.Info("remote agent API serving", "addr", addr, "configured_operators", len(a.cfg.AdminOperators))
	return stop, nil
}

// chainAuth is who may use the agent's remote API: the configured
// operators, and what the agent's node says of the chain — the operator it
// records for this node (own), the Node Operators Group in force and the
// operators of the active members (readers). The node's answer is kept for
// chainAuthRefresh; while the node does not answer (it is stopped during an
// upgrade) the last answer stands, and before any answer only the
// configured operators are known.
type chainAuth struct {
	self       uint64
	configured []remoteadmin.Key
	read       func(ctx context.Context) (*nodeapi.Governance, error)
	log        *slog.Logger
	now        func() time.Time

	mu   sync.Mutex
	last *remoteadmin.Policy
	at   time.Time
}

// chainAuthRefresh is how long the node's answer is used before it is
// asked again.
const chainAuthRefresh = 3 * time.Second

func newChainAuth(self uint64, configured []string, read func(ctx context.Context) (*nodeapi.Governance, error), log *slog.Logger) (*chainAuth, error) {
	keys, err := remoteadmin.ParseKeys(configured)
	if err != nil {
		return nil, fmt.Errorf("admin_operators: %w", err)
	}
	return &chainAuth{self: self, configured: keys, read: read, log: log, now: time.Now}, nil
}

// Policy returns the policy in force.
func (c *chainAuth) Policy() (remoteadmin.Policy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := remoteadmin.Policy{Own: c.configured}
	if c.last != nil && c.now().Sub(c.at) < chainAuthRefresh {
		return *c.last, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g, err := c.read(ctx)
	if err == nil {
		var p remoteadmin.Policy
		if p, err = governancePolicy(base, c.self, g); err == nil {
			c.last, c.at = &p, c.now()
			return p, nil
		}
	}
	if c.last != nil {
		c.log.Debug("remote agent API: the node does not answer; the chain's last known view stands", "err", err, "since", c.at)
		return *c.last, nil
	}
	c.log.Debug("remote agent API: the node does not answer; only the configured operators are known", "err", err)
	return base, nil
}

// governancePolicy adds the chain's view, as the node reports it, to base
// (see node.chainPolicy: the same rules).
func governancePolicy(base remoteadmin.Policy, self uint64, g *nodeapi.Governance) (remoteadmin.Policy, error) {
	var ops []remoteadmin.MemberOperator
	for _, m := range g.Members {
		if m.RemovedAt != 0 || m.Operator == "" {
			continue
		}
		k, err := remoteadmin.ParseKey(m.Operator)
		if err != nil {
			return remoteadmin.Policy{}, fmt.Errorf("member %d: %w", m.ID, err)
		}
		ops = append(ops, remoteadmin.MemberOperator{Node: m.ID, Operator: k})
	}
	var nog []string
	if g.NOG != nil {
		nog = g.NOG.Keys
	}
	return base.WithChain(self, ops, nog)
}
