package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/teeup/teeup/handover"
	"github.com/teeup/teeup/internal/unixsock"
	"github.com/teeup/teeup/release"
)

// startHandoverServer serves this node's keys to the upgrade agent on the
// handover socket: the node is the provider of the seed's first leg. Keys
// go only to an enclave that proves, by a local report made on this
// platform for this node, that it is an agent whose enclave ID the Key
// Management Group signed; they travel encrypted to the agent's one-time
// key.
func (n *Node) startHandoverServer(ctx context.Context) (net.Listener, error) {
	k := n.keys.Load()
	p, err := handover.NewProvider(handover.ProviderConfig{
		Enclave: n.platform.Enclave,
		ChainID: n.genesis.ChainID,
		KMG:     n.genesis.KMG,
		Role:    release.RoleNode,
		Secret:  k.Encode(),
		Height:  func() uint64 { h, _ := n.store.Head(); return h },
		// Only the upgrade agent may request the node's keys.
		AcceptRequester: n.agentPeer().AcceptRequester,
	})
	if err != nil {
		return nil, fmt.Errorf("handover provider: %w", err)
	}
	ln, err := unixsock.Listen(n.cfg.HandoverSocket)
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					n.log.Warn("handover accept", "err", err)
				}
				return
			}
			go func() {
				defer c.Close()
				n.faults.CrashPoint("node.before-export")
				if err := handover.Serve(ctx, c, p); err != nil {
					n.log.Warn("key handover refused", "err", err)
					return
				}
				n.log.Info("keys handed to the upgrade agent")
			}()
		}
	}()
	return ln, nil
}

// agentPeer is who the node exchanges keys with: the upgrade agent; a
// debug agent only when this node is itself a debug enclave or allows
// debug peers.
func (n *Node) agentPeer() handover.Peer {
	return handover.AgentPeer(n.identity.Debug || n.cfg.AllowDebugPeers)
}

// importKeys runs the second leg of the handover as the requester: this
// new node asks the agent for the keys, proves its identity with a local
// report for the agent plus its network-signed enclave ID, checks that the
// agent is a network-signed agent enclave, and receives the keys encrypted
// to its one-time key.
func (n *Node) importKeys(ctx context.Context) (*Keys, error) {
	if n.cfg.EnclaveID == "" {
		return nil, errors.New("import keys: enclave_id (this version's network-signed enclave ID, from its release manifest) is required")
	}
	id, err := loadEnclaveID(n.cfg.EnclaveID, release.RoleNode)
	if err != nil {
		return nil, err
	}
	r, err := handover.NewRequester(handover.RequesterConfig{
		Enclave: n.platform.Enclave,
		ChainID: n.genesis.ChainID,
		KMG:     n.genesis.KMG,
		Role:    release.RoleNode,
		ID:      *id,
		// Keys may only come from an upgrade agent with a network-signed
		// agent enclave ID.
		AcceptProvider: n.agentPeer().AcceptProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("import keys: %w", err)
	}
	var lastErr error
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := d.DialContext(dctx, "unix", n.cfg.ImportKeysFrom)
		cancel()
		if err == nil {
			secret, ferr := handover.Fetch(ctx, c, r)
			c.Close()
			if ferr != nil {
				return nil, fmt.Errorf("import keys from %s: %w", n.cfg.ImportKeysFrom, ferr)
			}
			k, err := DecodeKeys(secret)
			if err != nil {
				return nil, fmt.Errorf("import keys: %w", err)
			}
			if k.ChainID != n.genesis.ChainID || k.NodeID != n.cfg.NodeID {
				return nil, fmt.Errorf("import keys: received keys of node %d of %q, this is node %d of %q", k.NodeID, k.ChainID, n.cfg.NodeID, n.genesis.ChainID)
			}
			return k, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("import keys: agent socket %s unreachable: %w", n.cfg.ImportKeysFrom, lastErr)
}

// loadEnclaveID reads a network-signed enclave ID for role from a file
// holding either a release manifest (release.json) or a bare enclave ID.
func loadEnclaveID(path string, role release.Role) (*release.EnclaveID, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enclave id: %w", err)
	}
	if sr, err := release.Parse(raw); err == nil {
		if role == release.RoleAgent {
			return &sr.AgentID, nil
		}
		return &sr.NodeID, nil
	}
	return nil, fmt.Errorf("enclave id %s: not a signed release manifest", path)
}
