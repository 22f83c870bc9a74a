package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/remoteadmin"
)

// endpoint is what every connection to a host shares: the devnet (if any)
// and the node id, what to expect of the enclave's attestation (root and
// measurements), the chain id, and — for a host's admin API over TCP
// (remote operator access) — its address and the operator's key.
type endpoint struct {
	devnetDir   string
	nodeID      uint64
	rootPath    string
	mrenclaves  []string
	allowDebug  bool
	chainID     string
	host        string
	operatorKey string
	// nodeIDSet records that --node-id was given (several commands may
	// share one endpoint, so the flag set cannot be asked).
	nodeIDSet bool
}

// nodeIDValue is --node-id: a uint64 that remembers being set.
type nodeIDValue struct{ e *endpoint }

func (v nodeIDValue) String() string { return strconv.FormatUint(v.e.nodeID, 10) }
func (v nodeIDValue) Type() string   { return "uint" }
func (v nodeIDValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return err
	}
	v.e.nodeID, v.e.nodeIDSet = n, true
	return nil
}

var _ pflag.Value = nodeIDValue{}

// bindEndpoint binds the shared flags; mrFlag names the expected
// measurements (the node's or the agent's).
func (e *endpoint) bindEndpoint(cmd *cobra.Command, mrFlag, mrHelp string, remote bool) {
	f := cmd.Flags()
	f.StringVar(&e.devnetDir, "devnet", os.Getenv("TEEUP_DEVNET"), "devnet directory (env TEEUP_DEVNET): take addresses, root, measurements and key names from it")
	if e.nodeID == 0 {
		e.nodeID = 1
	}
	f.Var(nodeIDValue{e}, "node-id", "which node (host) to talk to; required with --host")
	f.StringVar(&e.rootPath, "root", "", "simulated attestation root certificate (PEM) to pin")
	f.StringSliceVar(&e.mrenclaves, mrFlag, nil, mrHelp)
	f.BoolVar(&e.allowDebug, "allow-debug", false, "accept a DEBUG enclave (development only)")
	f.StringVar(&e.chainID, "chain-id", "", "chain id (default: the devnet's)")
	if remote {
		f.StringVar(&e.host, "host", "", "reach the host's admin API over TCP with mutual TLS at HOST:PORT (its admin_listen); needs --node-id, --operator-key, --root and the expected measurement")
		f.StringVar(&e.operatorKey, "operator-key", "", "with --host: the operator's ed25519 key file that authenticates you (with --devnet: a key name such as operator-2)")
	}
}

// nodeIDGiven reports whether --node-id was given explicitly.
func (e *endpoint) nodeIDGiven() bool { return e.nodeIDSet }

// devnet loads the devnet, nil without --devnet.
func (e *endpoint) devnet() (*devnet.Network, error) {
	if e.devnetDir == "" {
		return nil, nil
	}
	return devnet.Load(e.devnetDir)
}

// keyPath maps a devnet key name ("operator-1") to its file when --devnet
// is given and no such file exists in the working directory.
func (e *endpoint) keyPath(name string) string {
	if _, err := os.Stat(name); err == nil || e.devnetDir == "" {
		return name
	}
	if n, err := devnet.Load(e.devnetDir); err == nil {
		p := n.KeyPath(name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return name
}

// chain finds the chain id from --chain-id, or the devnet's genesis.
func (e *endpoint) chain() (string, error) {
	if e.chainID != "" {
		return e.chainID, nil
	}
	if e.devnetDir != "" {
		n, err := devnet.Load(e.devnetDir)
		if err != nil {
			return "", err
		}
		return n.ChainID, nil
	}
	return "", errors.New("--chain-id is required without --devnet")
}

// remote returns the remote admin target of role at --host: the node id
// addressed, the chain id, the root and measurements to expect (from the
// devnet by default) and the operator's key. This is the one place a
// command's flags become a remote connection.
func (e *endpoint) remote(role remoteadmin.Role) (remoteadmin.Target, error) {
	if e.host == "" {
		return remoteadmin.Target{}, errors.New("no --host given")
	}
	if !e.nodeIDGiven() {
		return remoteadmin.Target{}, fmt.Errorf("--host %s needs --node-id N: the node id of the host you mean to reach (a host that answers as another node is refused)", e.host)
	}
	if e.operatorKey == "" {
		return remoteadmin.Target{}, fmt.Errorf("--host %s needs --operator-key KEY: the operator key the host authorises", e.host)
	}
	t := remoteadmin.Target{Addr: e.host, NodeID: e.nodeID, RootPath: e.rootPath, MREnclaves: e.mrenclaves, AllowDebug: e.allowDebug}
	n, err := e.devnet()
	if err != nil {
		return t, err
	}
	if n != nil {
		if t.RootPath == "" {
			t.RootPath = n.RootCert()
		}
		if len(t.MREnclaves) == 0 {
			if role == remoteadmin.RoleAgent {
				t.MREnclaves = devnetAgentMeasurements(n)
			} else {
				t.MREnclaves = n.AcceptedMeasurements()
			}
		}
		if t.DialContext, err = n.DialContext(context.Background()); err != nil {
			return t, err
		}
	}
	if t.RootPath == "" || len(t.MREnclaves) == 0 {
		flag := "--mrenclave"
		if role == remoteadmin.RoleAgent {
			flag = "--agent-mrenclave"
		}
		return t, fmt.Errorf("--host needs --root ROOT.crt and %s HEX (what the host's %s enclave must prove it is), or --devnet DIR", flag, role)
	}
	if t.ChainID, err = e.chain(); err != nil {
		return t, fmt.Errorf("--host: %w", err)
	}
	if t.OperatorKey, err = keyfile.ReadPrivate(e.keyPath(e.operatorKey)); err != nil {
		return t, fmt.Errorf("--operator-key: %w", err)
	}
	return t, nil
}

// devnetAgentMeasurements are the agent MRENCLAVEs of the devnet's
// releases (the agent may move with a release).
func devnetAgentMeasurements(n *devnet.Network) []string {
	var out []string
	add := func(s string) {
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	if !n.Release.AgentMREnclave.IsZero() {
		add(n.Release.AgentMREnclave.String())
	}
	files, _ := filepath.Glob(filepath.Join(n.Dir, "releases", "*", "release.json"))
	for _, f := range files {
		if sr, err := release.Load(f); err == nil {
			add(sr.Manifest.Agent.MREnclave.String())
		}
	}
	return out
}

// target is how a command reaches a node: its client API (attested TLS),
// its admin socket, or its admin API on a remote host (--host). It is
// filled from --devnet (and --node-id), or from --node, --root and
// --mrenclave, --admin-socket, or --host with --operator-key.
type target struct {
	endpoint
	addr      string
	adminPath string
}

func (t *target) bind(cmd *cobra.Command, withAdmin bool) {
	t.bindEndpoint(cmd, "mrenclave", "expected node MRENCLAVE (hex; repeat or comma-separate to accept several)", withAdmin)
	f := cmd.Flags()
	f.StringVar(&t.addr, "node", "", "node client API address host:port")
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

// admin returns an admin API client: the remote host's with --host, else
// the unix socket's. Either way it addresses the node id given (a node of
// another id refuses it).
func (t *target) admin() (*nodeapi.AdminClient, error) {
	if t.host != "" {
		rt, err := t.remote(remoteadmin.RoleNode)
		if err != nil {
			return nil, err
		}
		return nodeapi.DialAdmin(rt)
	}
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
		return nil, errors.New("say which node to talk to: --devnet DIR [--node-id N], --admin-socket PATH, or --host HOST:PORT --node-id N --operator-key KEY")
	}
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err == nil {
			path = abs
		}
	}
	a := nodeapi.NewAdminClient(path)
	if t.devnetDir != "" || t.nodeIDGiven() {
		a.ExpectNode(t.nodeID)
	}
	return a, nil
}

// agentTarget is how a command reaches a host's agent: --devnet and
// --node-id, --agent-socket, or --host with --operator-key (the agent's
// admin_listen).
type agentTarget struct {
	endpoint
	socket string
}

func (t *agentTarget) bind(cmd *cobra.Command) {
	t.bindEndpoint(cmd, "agent-mrenclave", "with --host: expected agent MRENCLAVE (hex; repeat or comma-separate to accept several)", true)
	cmd.Flags().StringVar(&t.socket, "agent-socket", "", "the agent's unix socket (instead of --devnet)")
}

// client returns the agent API client (see target.admin).
func (t *agentTarget) client() (*agentapi.Client, error) {
	if t.host != "" {
		rt, err := t.remote(remoteadmin.RoleAgent)
		if err != nil {
			return nil, err
		}
		return agentapi.DialRemote(rt)
	}
	if t.socket != "" {
		c := agentapi.NewClient(t.socket)
		if t.nodeIDGiven() {
			c.ExpectNode(t.nodeID)
		}
		return c, nil
	}
	if t.devnetDir == "" {
		return nil, errors.New("say which agent: --devnet DIR [--node-id N], --agent-socket PATH, or --host HOST:PORT --node-id N --operator-key KEY")
	}
	n, err := devnet.Load(t.devnetDir)
	if err != nil {
		return nil, err
	}
	h, err := n.Host(t.nodeID)
	if err != nil {
		return nil, err
	}
	return agentapi.NewClient(h.AgentSocket).ExpectNode(t.nodeID), nil
}
