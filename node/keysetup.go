package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/teeup/teeup/consensus"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
)

// obtainIdentity returns the node's keys as far as it has them:
//
//   - sealed under this MRENCLAVE: unseal them (complete);
//   - ImportKeysFrom set on an existing node (a new version started by the
//     agent): run the handover as requester and seal what the agent hands
//     over (complete);
//   - sealed only by other versions: refuse (only a handover moves them);
//   - none: the node identity key sealed while this node waited for the
//     ledger key, or a new one (sealed at once, so that a restart keeps the
//     key its operator may already have registered). The ledger key is
//     then zero: completeKeys gets it from a peer.
func (n *Node) obtainIdentity(ctx context.Context) (*Keys, error) {
	e := n.platform.Enclave
	k, err := LoadKeys(e, n.cfg.DataDir, n.genesis.ChainID, n.cfg.NodeID)
	if err == nil {
		n.log.Info("keys unsealed", "mrenclave", n.identity.UniqueID.Short())
		return k, nil
	}
	if !errors.Is(err, ErrNoKeys) {
		return nil, err
	}
	_, ledgerErr := os.Stat(layout.Node(n.cfg.DataDir).Ledger())
	existing := ledgerErr == nil || len(OtherSealedKeys(n.cfg.DataDir, n.identity.UniqueID)) > 0
	if n.cfg.ImportKeysFrom != "" && existing {
		// A new version on an existing node: only the handover gives it the keys.
		k, err := n.importKeys(ctx)
		if err != nil {
			return nil, err
		}
		if err := SaveKeys(e, n.cfg.DataDir, k); err != nil {
			return nil, err
		}
		n.faults.CrashPoint("node.after-import-seal")
		n.log.Info("keys received through the handover and sealed", "mrenclave", n.identity.UniqueID.Short())
		return k, nil
	}
	if others := OtherSealedKeys(n.cfg.DataDir, n.identity.UniqueID); len(others) > 0 {
		return nil, err // names the other versions and the handover
	}
	if ledgerErr == nil {
		n.log.Warn("the data dir holds a ledger but no sealed keys: starting with a new node identity, which this node's operator must register (teeup member rekey)",
			"data_dir", n.cfg.DataDir)
	}
	nodeKey, err := LoadPendingIdentity(e, n.cfg.DataDir, n.genesis.ChainID, n.cfg.NodeID)
	switch {
	case err == nil:
		n.log.Info("node identity key unsealed; the ledger key is still to come from a peer")
	case errors.Is(err, ErrNoKeys):
		if _, nodeKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return nil, fmt.Errorf("generate node key: %w", err)
		}
		if err := SavePendingIdentity(e, n.cfg.DataDir, n.genesis.ChainID, n.cfg.NodeID, nodeKey); err != nil {
			return nil, err
		}
		n.log.Info("new node identity key sealed", "node_key", ledger.Address(nodeKey.Public().(ed25519.PublicKey)).String())
	default:
		return nil, err
	}
	return &Keys{ChainID: n.genesis.ChainID, NodeID: n.cfg.NodeID, NodeKey: nodeKey}, nil
}

// completeKeys gets the ledger key for keys (from an attested member, or
// created when this node bootstraps the network), seals the complete keys
// and drops the pending identity.
func (n *Node) completeKeys(ctx context.Context, keys *Keys) (*Keys, error) {
	lk, err := n.acquireLedgerKey(ctx, keys)
	if err != nil {
		return nil, err
	}
	k := &Keys{ChainID: keys.ChainID, NodeID: keys.NodeID, NodeKey: keys.NodeKey, LedgerKey: lk}
	if err := SaveKeys(n.platform.Enclave, n.cfg.DataDir, k); err != nil {
		return nil, err
	}
	if err := RemovePendingIdentity(n.cfg.DataDir, n.identity.UniqueID); err != nil {
		return nil, err
	}
	n.log.Info("new node keys sealed", "mrenclave", n.identity.UniqueID.Short())
	return k, nil
}

// acquireLedgerKey fetches the ledger key from a member over mutual
// attested TLS (members give it only to a node whose identity key is the
// one registered for its id, or to a member not registered yet), or creates
// it when this node bootstraps the network and every other genesis node
// answered that it has none.
func (n *Node) acquireLedgerKey(ctx context.Context, keys *Keys) (ledger.LedgerKey, error) {
	var zero ledger.LedgerKey
	peers := n.peerAddrs()
	if len(peers) == 0 {
		if !n.cfg.Bootstrap {
			return zero, errors.New("single-node network: set bootstrap to create the ledger key")
		}
		n.log.Info("creating the network ledger key (single-node network)")
		return ledger.NewLedgerKey()
	}
	nodeKey := ledger.Address(keys.NodeKey.Public().(ed25519.PublicKey))
	var waitLogged, refusalLogged time.Time
	for {
		answeredNone, refused := 0, 0
		var lastRefusal error
		for id, addr := range peers {
			key, ok, err := n.tr.FetchLedgerKey(ctx, id, addr)
			if err != nil {
				if errors.Is(err, consensus.ErrRefused) {
					refused++
					lastRefusal = err
				}
				n.log.Debug("ledger key: peer unavailable", "peer", id, "err", err)
				continue
			}
			if !ok {
				answeredNone++
				continue
			}
			var lk ledger.LedgerKey
			if len(key) != len(lk) {
				return zero, fmt.Errorf("ledger key from peer %d has %d bytes, want %d", id, len(key), len(lk))
			}
			copy(lk[:], key)
			n.log.Info("received the network ledger key from an attested member", "peer", id)
			return lk, nil
		}
		if n.cfg.Bootstrap && answeredNone == len(peers) {
			n.log.Info("creating the network ledger key: every genesis node confirmed it has none")
			return ledger.NewLedgerKey()
		}
		if refused > 0 && time.Since(refusalLogged) > 10*time.Second {
			n.log.Error("members refuse this node the ledger key: its identity key is not the one registered for node "+
				fmt.Sprint(n.cfg.NodeID)+"; if this node lost its keys, its operator must re-key it on chain: "+
				fmt.Sprintf("teeup member rekey %d --node-key %s --key OPERATOR_KEY", n.cfg.NodeID, nodeKey),
				"node_key", nodeKey.String(), "refusals", refused, "err", lastRefusal)
			refusalLogged = time.Now()
		} else if time.Since(waitLogged) > 10*time.Second {
			n.log.Info("waiting for an attested peer to provide the ledger key", "peers_without_key", answeredNone, "peers", len(peers))
			waitLogged = time.Now()
		}
		select {
		case <-ctx.Done():
			return zero, fmt.Errorf("waiting for the ledger key: %w", ctx.Err())
		case <-n.stopReq:
			return zero, errors.New("stopped while waiting for the ledger key")
		case <-time.After(500 * time.Millisecond):
		}
	}
}
