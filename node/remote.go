package node

import (
	"context"
	"fmt"
	"net/http"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/remoteadmin"
)

// startRemoteAdmin serves the admin API (the same handler as the unix
// socket: early, then whole) on admin_listen over mutual TLS, if
// configured: the node presents attested credentials bound to (node,
// chain id, node id), and every request is authorised by the client's
// operator key (remotePolicy).
func (n *Node) startRemoteAdmin() (func(), error) {
	if n.cfg.AdminListen == "" {
		return func() {}, nil
	}
	own, err := remoteadmin.ParseKeys(n.cfg.AdminOperators)
	if err != nil {
		return nil, fmt.Errorf("admin_operators: %w", err)
	}
	creds, err := remoteadmin.NewServerCredentials(n.platform.Enclave, remoteadmin.RoleNode, n.genesis.ChainID, n.cfg.NodeID)
	if err != nil {
		return nil, err
	}
	log := n.log.With("component", "remote-admin")
	h := remoteadmin.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*n.admin.Load()).ServeHTTP(w, r) }),
		remoteadmin.HandlerOptions{
			Role: remoteadmin.RoleNode, NodeID: n.cfg.NodeID,
			// Attesting the peers probes them and changes nothing: a read.
			Required: remoteadmin.ReadsAre(nodeapi.PathAttestPeers),
			Policy:   func(context.Context) (remoteadmin.Policy, error) { return n.remotePolicy(own) },
			Log:      log,
		})
	addr, stop, err := remoteadmin.Serve(n.cfg.AdminListen, creds, h, log)
	if err != nil {
		return nil, err
	}
	n.log.Info("remote admin API serving", "addr", addr, "configured_operators", len(own))
	return stop, nil
}

// remotePolicy is who may use this host's admin API now: the configured
// operators, and, once the ledger is open, the chain's view — the operator
// recorded for this node (own), the Node Operators Group in force and the
// operators of the active members (readers). Before the ledger is open
// only the configured operators are known.
func (n *Node) remotePolicy(configured []remoteadmin.Key) (remoteadmin.Policy, error) {
	base := remoteadmin.Policy{Own: configured}
	st := n.storeRef.Load()
	if st == nil {
		return base, nil
	}
	members, err := st.Members()
	if err != nil {
		return remoteadmin.Policy{}, err
	}
	nog, _, err := st.Groups()
	if err != nil {
		return remoteadmin.Policy{}, err
	}
	return chainPolicy(base, n.cfg.NodeID, members, nog)
}

// chainPolicy adds the chain's view to base: the operator the chain
// records for member self is one of its own operators (if self is an
// active member); the NOG's keys and every active member's operator may
// read. A removed member's operator gains nothing.
func chainPolicy(base remoteadmin.Policy, self uint64, members []ledger.Member, nog release.Group) (remoteadmin.Policy, error) {
	var ops []remoteadmin.MemberOperator
	for _, m := range members {
		if m.Active() {
			ops = append(ops, remoteadmin.MemberOperator{Node: m.ID, Operator: remoteadmin.Key(m.Operator)})
		}
	}
	return base.WithChain(self, ops, nog.Keys)
}
