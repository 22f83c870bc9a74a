package devnet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee/sim"
)

// Binary names (package layout's).
const (
	NodeBin       = layout.NodeProgram
	AgentBin      = layout.AgentProgram
	DistributeBin = layout.DistributeProgram
)

// Devnet key material.
const (
	KMGMembers      = 3
	KMGThreshold    = 2
	NOGMembers      = 3
	NOGQuorum       = 2
	OperatorCount   = 2
	UserCount       = 8
	InitialBalance  = 1_000_000_000
	EnclaveProduct  = 1
	EnclaveSVN      = 1
	DefaultChainID  = "devnet"
	startupDeadline = 90 * time.Second
)

// UpOptions configures Up.
type UpOptions struct {
	Dir     string
	Nodes   int
	BinDir  string // where teeup-node, teeup-agent, teeup-distribute are
	ChainID string
	// BlockInterval is the consensus block interval (default 200ms).
	BlockInterval time.Duration
	// NoAgents runs nodes directly instead of under teeup-agent.
	NoAgents bool
	// NoDistribute skips the distribution processes.
	NoDistribute bool
	// RaftCompactEvery sets the nodes' raft_compact_every (0: the node's
	// default); tests set it low to exercise state transfer.
	RaftCompactEvery uint64
	// Isolate starts every host in its own network namespace with its own
	// address on a private subnet (see Isolation). Needs root.
	Isolate bool
	// Subnet is the isolated devnet's private IPv4 subnet (default
	// DefaultSubnet); it must not overlap a network of this machine.
	Subnet netip.Prefix
	// RemoteAdmin gives every node and agent a remote admin API over
	// mutual TLS (admin_listen) for operator-N on host N (see
	// Network.RemoteAdmin).
	RemoteAdmin bool
	// Coordinated makes the agents leave flag days to a coordinator (see
	// Network.Coordinated); by default they decide their part from the
	// chain.
	Coordinated bool
	// Progress receives one line per step.
	Progress io.Writer
	Logger   *slog.Logger
}

// Up lays out a new devnet in opts.Dir and starts it. It refuses a
// directory that already holds a devnet. Once the devnet is saved, a
// failure returns the network with the error, so that the caller can Down
// what was started.
func Up(ctx context.Context, opts UpOptions) (*Network, error) {
	if opts.Nodes < 1 || opts.Nodes > 7 {
		return nil, fmt.Errorf("devnet up: --nodes %d: want 1 to 7", opts.Nodes)
	}
	if opts.ChainID == "" {
		opts.ChainID = DefaultChainID
	}
	if opts.BlockInterval == 0 {
		opts.BlockInterval = 200 * time.Millisecond
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	progress := func(format string, args ...any) { fmt.Fprintf(opts.Progress, format+"\n", args...) }
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("devnet up: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		return nil, fmt.Errorf("devnet up: %s already holds a devnet; use 'teeup devnet status' / 'teeup devnet down', or another --dir", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devnet up: %w", err)
	}
	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}

	n := &Network{Dir: dir, ChainID: opts.ChainID, CreatedAt: time.Now().UTC(), Agents: !opts.NoAgents, NoDistribute: opts.NoDistribute, RemoteAdmin: opts.RemoteAdmin, Coordinated: opts.Coordinated}
	if opts.Isolate {
		if n.Isolation, err = newIsolation(ctx, dir, opts.Subnet, opts.Nodes); err != nil {
			return nil, err
		}
	}
	progress("creating simulated root CA and %d platforms", opts.Nodes)
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		return nil, err
	}
	ports := &portReserver{}
	defer ports.release()
	for i := 1; i <= opts.Nodes; i++ {
		addrs, err := n.hostAddrs(uint64(i), ports)
		if err != nil {
			return nil, err
		}
		h, err := LayoutHost(n, ca, uint64(i), addrs)
		if err != nil {
			return nil, err
		}
		n.Hosts = append(n.Hosts, h)
	}

	progress("generating keys: enclave signer, %d KMG (threshold %d), %d NOG (quorum %d), %d operator test accounts, %d users",
		KMGMembers, KMGThreshold, NOGMembers, NOGQuorum, OperatorCount, UserCount)
	keys, err := generateKeys(n)
	if err != nil {
		return nil, err
	}

	progress("laying out and signing release binaries")
	rel, err := StageRelease(n, bins, "")
	if err != nil {
		return nil, err
	}
	n.Release = *rel
	n.Accept(rel.NodeMREnclave)

	g := &ledger.Genesis{
		ChainID: opts.ChainID,
		Time:    time.Now().UTC().Truncate(time.Second),
		KMG:     release.Group{Keys: keys["kmg"], Threshold: KMGThreshold},
		NOG:     release.Group{Keys: keys["nog"], Threshold: NOGQuorum},
		Params:  ledger.Params{BlockInterval: ledger.Duration(opts.BlockInterval)},
	}
	if release.ValidateVersion(rel.Version) == nil {
		g.Release = rel.Version // the chain refuses downgrades below it
	}
	for i, h := range n.Hosts {
		// Node N is operated by the holder of operator-N: that key may
		// re-key the node (teeup member rekey).
		op, err := ledger.ParseAddress(keys["operator"][i])
		if err != nil {
			return nil, err
		}
		g.Nodes = append(g.Nodes, ledger.GenesisNode{ID: h.ID, Name: h.Name, PeerAddr: h.PeerAddr, ClientAddr: h.ClientAddr, Operator: op.String()})
	}
	for _, role := range []string{"operator", "user"} {
		for i, k := range keys[role] {
			a, err := ledger.ParseAddress(k)
			if err != nil {
				return nil, err
			}
			g.Accounts = append(g.Accounts, ledger.GenesisAccount{Address: a, Balance: InitialBalance, Label: fmt.Sprintf("%s-%d", role, i+1)})
		}
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("devnet genesis: %w", err)
	}
	graw, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("devnet genesis: %w", err)
	}
	if err := fsutil.WriteFileAtomic(n.GenesisPath(), append(graw, '\n'), 0o644); err != nil {
		return nil, err
	}
	n.RaftCompactEvery = opts.RaftCompactEvery
	for i := range n.Hosts {
		if err := ConfigureHost(n, &n.Hosts[i]); err != nil {
			return nil, err
		}
	}
	if err := n.Save(); err != nil {
		return nil, err
	}
	if iso := n.Isolation; iso != nil {
		progress("creating network namespaces %s* on private subnet %s (observer %s)", iso.Prefix, iso.Subnet, iso.ObserverAddr)
		for i := range n.Hosts {
			if err := ConnectHost(ctx, n, &n.Hosts[i]); err != nil {
				return n, err
			}
		}
	}
	progress("starting %d hosts", len(n.Hosts))
	ports.release() // the nodes bind them now
	for i := range n.Hosts {
		if err := StartHost(n, &n.Hosts[i], !opts.NoDistribute); err != nil {
			return n, err
		}
	}
	progress("waiting for every node to register and commit blocks")
	if err := WaitHealthy(ctx, n, startupDeadline); err != nil {
		return n, err
	}
	return n, nil
}

func generateKeys(n *Network) (map[string][]string, error) {
	out := map[string][]string{}
	gen := func(name string) (string, error) {
		pub, err := keyfile.Generate(n.KeyPath(name))
		if err != nil {
			return "", err
		}
		return hex.EncodeToString(pub), nil
	}
	if _, err := gen("signer"); err != nil {
		return nil, err
	}
	for _, g := range []struct {
		role  string
		count int
	}{{"kmg", KMGMembers}, {"nog", NOGMembers}, {"operator", max(OperatorCount, len(n.Hosts))}, {"user", UserCount}} {
		for i := 1; i <= g.count; i++ {
			pub, err := gen(fmt.Sprintf("%s-%d", g.role, i))
			if err != nil {
				return nil, err
			}
			out[g.role] = append(out[g.role], pub)
		}
	}
	return out, nil
}

// Binaries are the paths of the programs a release is made of.
type Binaries struct {
	Node, Agent, Distribute string
}

func findBinaries(binDir string) (Binaries, error) {
	if binDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return Binaries{}, fmt.Errorf("find binaries: %w", err)
		}
		binDir = filepath.Dir(exe)
	}
	b := Binaries{
		Node:       filepath.Join(binDir, NodeBin),
		Agent:      filepath.Join(binDir, AgentBin),
		Distribute: filepath.Join(binDir, DistributeBin),
	}
	for _, p := range []string{b.Node, b.Agent, b.Distribute} {
		if _, err := os.Stat(p); err != nil {
			return Binaries{}, fmt.Errorf("%s not found in %s: run 'make build' (binaries go to ./bin) or pass --bin DIR", filepath.Base(p), binDir)
		}
	}
	return b, nil
}

// StageDirRelease stages the binaries found in binDir as a new release of
// the devnet (see StageRelease) and lets clients accept its node
// measurement.
func StageDirRelease(n *Network, binDir, version string) (*Release, error) {
	bins, err := findBinaries(binDir)
	if err != nil {
		return nil, err
	}
	r, err := StageRelease(n, bins, version)
	if err != nil {
		return nil, err
	}
	n.Accept(r.NodeMREnclave)
	if err := n.Save(); err != nil {
		return nil, err
	}
	return r, nil
}

// StageRelease copies the binaries into releases/<version>/ (version read
// from the node binary unless given) and signs the enclave binaries with
// the devnet signer key.
func StageRelease(n *Network, bins Binaries, version string) (*Release, error) {
	if version == "" {
		v, err := binaryVersion(bins.Node)
		if err != nil {
			return nil, err
		}
		version = v
	}
	dir := filepath.Join(n.Dir, "releases", version)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("release %s is already staged in %s", version, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stage release %s: %w", version, err)
	}
	signer, err := keyfile.ReadPrivate(n.KeyPath("signer"))
	if err != nil {
		return nil, err
	}
	rel := &Release{Version: version, Dir: dir}
	lay := layout.Release(dir)
	for _, b := range []struct {
		src, dst string
		enclave  bool
		out      *[32]byte
	}{{bins.Node, lay.NodeBinary(), true, (*[32]byte)(&rel.NodeMREnclave)}, {bins.Agent, lay.AgentBinary(), true, (*[32]byte)(&rel.AgentMREnclave)}, {bins.Distribute, lay.DistributeBinary(), false, nil}} {
		if b.src == "" {
			continue
		}
		dst := b.dst
		if err := fsutil.CopyFile(b.src, dst, 0o755); err != nil {
			return nil, fmt.Errorf("stage release %s: %w", version, err)
		}
		if b.enclave {
			ss, err := sim.SignBinary(dst, EnclaveProduct, EnclaveSVN, signer)
			if err != nil {
				return nil, err
			}
			*b.out = ss.UniqueID
		}
	}
	if err := writeSignedRelease(n, rel); err != nil {
		return nil, err
	}
	return rel, nil
}

// ReleaseFile returns the signed release manifest of a staged release.
func (r *Release) ReleaseFile() string { return layout.Release(r.Dir).Manifest() }

// writeSignedRelease writes releases/<version>/release.json: the manifest of
// the staged binaries (fetched from file:// URLs) signed by the devnet's
// Key Management Group threshold.
func writeSignedRelease(n *Network, rel *Release) error {
	lay := layout.Release(rel.Dir)
	url := func(path string) string { return "file://" + path }
	nodeC, err := release.ComponentFromBinary(lay.NodeBinary(), url(lay.NodeBinary()))
	if err != nil {
		return fmt.Errorf("release %s: %w", rel.Version, err)
	}
	agentC, err := release.ComponentFromBinary(lay.AgentBinary(), url(lay.AgentBinary()))
	if err != nil {
		return fmt.Errorf("release %s: %w", rel.Version, err)
	}
	m := release.Manifest{NetworkID: n.ChainID, Version: rel.Version, Node: nodeC, Agent: agentC, CreatedAt: time.Now().UTC().Truncate(time.Second),
		Notes: "devnet release " + rel.Version}
	if _, err := os.Stat(lay.DistributeBinary()); err == nil {
		d, err := release.ArtifactFromFile(lay.DistributeBinary(), url(lay.DistributeBinary()))
		if err != nil {
			return fmt.Errorf("release %s: %w", rel.Version, err)
		}
		m.Distribute = &d
	}
	sr, err := release.New(m)
	if err != nil {
		return fmt.Errorf("release %s: %w", rel.Version, err)
	}
	for i := 1; i <= KMGThreshold; i++ {
		k, err := keyfile.ReadPrivate(n.KeyPath(fmt.Sprintf("kmg-%d", i)))
		if err != nil {
			return err
		}
		if err := release.Sign(sr, k); err != nil {
			return fmt.Errorf("release %s: %w", rel.Version, err)
		}
	}
	return sr.SaveNew(rel.ReleaseFile())
}

func binaryVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "", fmt.Errorf("%s --version printed nothing", bin)
	}
	return f[len(f)-1], nil
}

// WaitHealthy waits until every node answers on its admin socket, is
// registered, knows a leader and has committed past genesis.
func WaitHealthy(ctx context.Context, n *Network, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, h := range n.Hosts {
		c := nodeapi.NewAdminClient(h.AdminSocket)
		for {
			st, err := c.Status(ctx)
			if err == nil && st.Leader != 0 && st.Height > 0 && st.Sync.State == nodeapi.SyncCurrent {
				break
			}
			select {
			case <-ctx.Done():
				c.Close()
				last := "no answer on the admin socket"
				if err != nil {
					last = err.Error()
				} else {
					last = fmt.Sprintf("height %d, leader %d, %s", st.Height, st.Leader, st.Sync.Reason)
				}
				return fmt.Errorf("node %d not healthy after %s (%s); see %s", h.ID, timeout, last, filepath.Join(h.LogDir, "node.log"))
			case <-time.After(200 * time.Millisecond):
			}
		}
		c.Close()
	}
	return nil
}
