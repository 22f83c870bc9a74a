package devnet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/tee/sim"
)

// AddNodeOptions configures AddNode.
type AddNodeOptions struct {
	// Vote casts the devnet's NOG votes (nog-1 … nog-quorum) that add the
	// node on chain; without it AddNode only starts the host, and its node
	// waits until the members are voted by hand ('teeup member add').
	Vote bool
	// Timeout bounds the wait for the new node to be current (default 2m).
	Timeout  time.Duration
	Progress io.Writer
}

// AddedNode is what AddNode did.
type AddedNode struct {
	Host    *Host
	NodeKey ledger.Address
	// Operator is the new node's operator key (devnet key operator-<id>).
	Operator ledger.Address
	Spec     ledger.MemberSpec
	Votes    []string // tx ids of the votes cast
}

// AddNode lays out and starts one more host on a running devnet: its
// platform (certified by the devnet CA), an operator key, its node and
// agent configurations, and its processes. The new node makes its identity
// key and waits; with opts.Vote the devnet's NOG votes it in (its id,
// addresses, operator and that identity key), after which the members give
// it the ledger key, the leader adds it to raft, and it receives the
// ledger by state transfer. AddNode returns once it is current.
func AddNode(ctx context.Context, n *Network, opts AddNodeOptions) (*AddedNode, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	progress := func(format string, args ...any) { fmt.Fprintf(opts.Progress, format+"\n", args...) }
	var id uint64
	for _, h := range n.Hosts {
		id = max(id, h.ID)
	}
	id++
	ca, err := sim.OpenCA(filepath.Join(n.Dir, "ca"))
	if err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	opName := fmt.Sprintf("operator-%d", id)
	opPub, err := ensureKey(n, opName)
	if err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	addrs, err := n.NewHostAddrs(id)
	if err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	progress("laying out host %d (peer %s, client %s)", id, addrs.Peer, addrs.Client)
	h, err := LayoutHost(n, ca, id, addrs)
	if err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	n.Hosts = append(n.Hosts, h)
	host := &n.Hosts[len(n.Hosts)-1]
	if err := ConfigureHost(n, host); err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	if err := n.Save(); err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	if err := ConnectHost(ctx, n, host); err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	progress("starting host %d", id)
	if err := StartHost(n, host, !n.NoDistribute); err != nil {
		return nil, fmt.Errorf("add node: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	admin := nodeapi.NewAdminClient(host.AdminSocket)
	defer admin.Close()
	var nodeKey ledger.Address
	for {
		st, err := admin.Status(ctx)
		if err == nil && st.NodeKey != "" {
			if nodeKey, err = ledger.ParseAddress(st.NodeKey); err != nil {
				return nil, fmt.Errorf("add node: node %d reports key %q: %w", id, st.NodeKey, err)
			}
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("add node: node %d did not report its identity key (see %s): %w", id, filepath.Join(host.LogDir, "node.log"), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	out := &AddedNode{Host: host, NodeKey: nodeKey, Operator: opPub,
		Spec: ledger.MemberSpec{ID: id, Name: host.Name, PeerAddr: host.PeerAddr, ClientAddr: host.ClientAddr, Operator: opPub, NodeKey: nodeKey}}
	progress("node %d's identity key is %s", id, nodeKey)
	if !opts.Vote {
		return out, nil
	}
	votes, err := voteMember(ctx, n, ledger.TxAddNode, ledger.EncodeMemberSpec(out.Spec))
	out.Votes = votes
	if err != nil {
		return out, fmt.Errorf("add node: %w", err)
	}
	progress("node %d voted in (%d votes); waiting until it is current", id, len(votes))
	if err := waitHostCurrent(ctx, host); err != nil {
		return out, fmt.Errorf("add node: %w", err)
	}
	return out, nil
}

// ensureKey returns the public key of devnet key name, generating it first
// if it does not exist.
func ensureKey(n *Network, name string) (ledger.Address, error) {
	path := n.KeyPath(name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		pub, err := keyfile.Generate(path)
		if err != nil {
			return ledger.Address{}, err
		}
		return ledger.AddressOf(pub)
	}
	k, err := keyfile.ReadPrivate(path)
	if err != nil {
		return ledger.Address{}, err
	}
	return ledger.AddressOf(k.Public().(ed25519.PublicKey))
}

// voteMember casts the NOG votes nog-1 … nog-quorum for a membership
// transaction through the first host's admin socket.
func voteMember(ctx context.Context, n *Network, kind ledger.TxKind, payload []byte) ([]string, error) {
	g, err := ledger.LoadGenesis(n.GenesisPath())
	if err != nil {
		return nil, err
	}
	admin := nodeapi.NewAdminClient(n.Hosts[0].AdminSocket)
	defer admin.Close()
	gov, err := admin.Releases(ctx)
	if err != nil {
		return nil, err
	}
	quorum := gov.Quorum
	var ids []string
	for i := 1; i <= quorum; i++ {
		key, err := keyfile.ReadPrivate(n.KeyPath(fmt.Sprintf("nog-%d", i)))
		if err != nil {
			return ids, err
		}
		from, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
		if err != nil {
			return ids, err
		}
		acct, err := admin.Account(ctx, from.String())
		if err != nil {
			return ids, fmt.Errorf("read nog-%d's account: %w", i, err)
		}
		tx, err := ledger.NewGovernanceTx(g.ChainID, kind, payload, acct.Nonce+1, key)
		if err != nil {
			return ids, err
		}
		rec, err := nodeapi.SubmitAndConfirm(ctx, admin, tx.Encode(), tx.ID().String(), 30*time.Second)
		if err != nil {
			return ids, fmt.Errorf("vote of nog-%d: %w", i, err)
		}
		if ledger.Code(rec.Code) == ledger.CodeNoEffect {
			return ids, fmt.Errorf("vote of nog-%d: tx %s at height %d: %w", i, rec.TxID, rec.Height, nodeapi.ErrNoEffect)
		}
		ids = append(ids, rec.TxID)
	}
	return ids, nil
}

// waitHostCurrent waits until host h's node runs and is current.
func waitHostCurrent(ctx context.Context, h *Host) error {
	admin := nodeapi.NewAdminClient(h.AdminSocket)
	defer admin.Close()
	last := "no answer"
	for {
		st, err := admin.Status(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case st.Phase == nodeapi.PhaseRunning && st.Sync.State == nodeapi.SyncCurrent:
			return nil
		default:
			last = st.Phase + ": " + st.Sync.Reason
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d is not current (%s; see %s): %w", h.ID, last, filepath.Join(h.LogDir, "node.log"), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
