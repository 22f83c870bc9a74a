package cli

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/nodeapi"
)

// target is how a command reaches a node: its client address and what to
// expect of its attestation, or the admin socket. It is filled from
// --devnet (and --node-id), or from --node, --root and --mrenclave.
type target struct {
	devnetDir  string
	nodeID     uint64
	addr       string
	rootPath   string
	mrenclaves []string
	adminPath  string
	allowDebug bool
	chainID    string
}

func (t *target) bind(cmd *cobra.Command, withAdmin bool) {
	f := cmd.Flags()
	f.StringVar(&t.devnetDir, "devnet", os.Getenv("TEEUP_DEVNET"), "devnet directory (env TEEUP_DEVNET): take the node's address, root and measurement from it")
	f.Uint64Var(&t.nodeID, "node-id", 1, "with --devnet: which node to talk to")
	f.StringVar(&t.addr, "node", "", "node client API address host:port")
	f.StringVar(&t.rootPath, "root", "", "simulated attestation root certificate (PEM) to pin")
	f.StringSliceVar(&t.mrenclaves, "mrenclave", nil, "expected node MRENCLAVE (hex; repeat or comma-separate to accept several)")
	f.BoolVar(&t.allowDebug, "allow-debug", false, "accept a DEBUG node enclave (development only)")
	f.StringVar(&t.chainID, "chain-id", "", "chain id (default: the devnet's)")
	if withAdmin {
		f.StringVar(&t.adminPath, "admin-socket", "", "node admin unix socket (instead of --devnet)")
	}
}

// client returns an attested client API connection. For an isolated
// devnet its connections are made from the devnet's observer namespace.
func (t *target) client() (*nodeapi.Client, error) {
	addr, root, ms := t.addr, t.rootPath, t.mrenclaves
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if t.devnetDir != "" {
		net, err := devnet.Load(t.devnetDir)
		if err != nil {
			return nil, err
		}
		h, err := net.Host(t.nodeID)
		if err != nil {
			return nil, err
		}
		if addr == "" {
			addr = h.ClientAddr
		}
		if root == "" {
			root = net.RootCert()
		}
		if len(ms) == 0 {
			ms = net.AcceptedMeasurements()
		}
		if dial, err = net.DialContext(context.Background()); err != nil {
			return nil, err
		}
	}
	if addr == "" || root == "" || len(ms) == 0 {
		return nil, errors.New("say which node to talk to: --devnet DIR [--node-id N], or --node ADDR --root ROOT.crt --mrenclave HEX")
	}
	return nodeapi.Dial(nodeapi.DialConfig{Addr: addr, RootPath: root, MREnclaves: ms, AllowDebug: t.allowDebug, DialContext: dial})
}

// admin returns an admin API client.
func (t *target) admin() (*nodeapi.AdminClient, error) {
	path := t.adminPath
	if path == "" && t.devnetDir != "" {
		net, err := devnet.Load(t.devnetDir)
		if err != nil {
			return nil, err
		}
		h, err := net.Host(t.nodeID)
		if err != nil {
			return nil, err
		}
		path = h.AdminSocket
	}
	if path == "" {
		return nil, errors.New("say which node to talk to: --devnet DIR [--node-id N], or --admin-socket PATH")
	}
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err == nil {
			path = abs
		}
	}
	return nodeapi.NewAdminClient(path), nil
}
