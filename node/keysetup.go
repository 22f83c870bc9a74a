package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
)

// obtainKeys returns the node's application keys:
//
//   - sealed under this MRENCLAVE: unseal them;
//   - ImportKeysFrom set on an existing node (a new version started by the
//     agent): run the handover as requester and seal what the agent hands
//     over;
//   - sealed only by other versions: refuse (only a handover moves them);
//   - none at all, on a fresh data dir: make a node identity key and get
//     the network's ledger key from an attested peer, or create it when
//     this is the bootstrap node and every peer confirms it has none.
func (n *Node) obtainKeys(ctx context.Context) (*Keys, error) {
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
		return nil, fmt.Errorf("data dir %s holds a ledger but no sealed keys: refusing to start a new identity over it", n.cfg.DataDir)
	}

	_, nodeKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	lk, err := n.acquireLedgerKey(ctx)
	if err != nil {
		return nil, err
	}
	k = &Keys{ChainID: n.genesis.ChainID, NodeID: n.cfg.NodeID, NodeKey: nodeKey, LedgerKey: lk}
	if err := SaveKeys(e, n.cfg.DataDir, k); err != nil {
		return nil, err
	}
	n.log.Info("new node keys sealed", "mrenclave", n.identity.UniqueID.Short())
	return k, nil
}

// acquireLedgerKey fetches the ledger key from a peer over mutual attested
// TLS, or creates it when this node bootstraps the network and every other
// genesis node answered that it has none.
func (n *Node) acquireLedgerKey(ctx context.Context) (ledger.LedgerKey, error) {
	var zero ledger.LedgerKey
	others := 0
	for _, gn := range n.genesis.Nodes {
		if gn.ID != n.cfg.NodeID {
			others++
		}
	}
	if others == 0 {
		if !n.cfg.Bootstrap {
			return zero, errors.New("single-node network: set bootstrap to create the ledger key")
		}
		n.log.Info("creating the network ledger key (single-node network)")
		return ledger.NewLedgerKey()
	}
	waitLogged := time.Time{}
	for {
		answeredNone := 0
		for _, gn := range n.genesis.Nodes {
			if gn.ID == n.cfg.NodeID {
				continue
			}
			key, ok, err := n.tr.FetchLedgerKey(ctx, gn.ID)
			if err != nil {
				n.log.Debug("ledger key: peer unavailable", "peer", gn.ID, "err", err)
				continue
			}
			if !ok {
				answeredNone++
				continue
			}
			var lk ledger.LedgerKey
			if len(key) != len(lk) {
				return zero, fmt.Errorf("ledger key from peer %d has %d bytes, want %d", gn.ID, len(key), len(lk))
			}
			copy(lk[:], key)
			n.log.Info("received the network ledger key from an attested peer", "peer", gn.ID)
			return lk, nil
		}
		if n.cfg.Bootstrap && answeredNone == others {
			n.log.Info("creating the network ledger key: every genesis node confirmed it has none")
			return ledger.NewLedgerKey()
		}
		if time.Since(waitLogged) > 10*time.Second {
			n.log.Info("waiting for an attested peer to provide the ledger key", "peers_without_key", answeredNone, "peers", others)
			waitLogged = time.Now()
		}
		select {
		case <-ctx.Done():
			return zero, fmt.Errorf("waiting for the ledger key: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
