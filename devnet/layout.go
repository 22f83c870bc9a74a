package devnet

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/teeup/teeup/layout"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/nodeconfig"
	"github.com/teeup/teeup/tee/sim"
)

// HostAddrs are where a host's node listens: its peer and client API
// addresses (host:port), as the genesis lists them, and, on a devnet with
// RemoteAdmin, the node's and the agent's remote admin APIs.
type HostAddrs struct {
	Peer, Client string
	Admin, Agent string
}

// NewHostAddrs returns addresses for a new host id: on an isolated devnet
// the host's own address on the private subnet with the fixed ports;
// otherwise two free loopback ports (free now: start the host soon).
func (n *Network) NewHostAddrs(id uint64) (HostAddrs, error) {
	r := &portReserver{}
	defer r.release()
	return n.hostAddrs(id, r)
}

// hostAddrs returns host id's addresses, reserving loopback ports with r.
func (n *Network) hostAddrs(id uint64, r *portReserver) (HostAddrs, error) {
	if n.Isolation != nil {
		ip, err := n.Isolation.HostIP(id)
		if err != nil {
			return HostAddrs{}, err
		}
		a := HostAddrs{Peer: net.JoinHostPort(ip.String(), fmt.Sprint(PeerPort)), Client: net.JoinHostPort(ip.String(), fmt.Sprint(ClientPort))}
		if n.RemoteAdmin {
			a.Admin, a.Agent = net.JoinHostPort(ip.String(), fmt.Sprint(AdminPort)), net.JoinHostPort(ip.String(), fmt.Sprint(AgentPort))
		}
		return a, nil
	}
	var a HostAddrs
	ports := []*string{&a.Peer, &a.Client}
	if n.RemoteAdmin {
		ports = append(ports, &a.Admin, &a.Agent)
	}
	for _, p := range ports {
		addr, err := r.next()
		if err != nil {
			return HostAddrs{}, err
		}
		*p = addr
	}
	return a, nil
}

// LayoutHost lays out host id in DIR/hosts/node-<id>: its directories (the
// host directory 0700) and a simulated platform certified by ca. It
// writes no configuration (ConfigureHost does, once the genesis exists)
// and does not add the host to n.Hosts.
//
// Adding a host to a running devnet is LayoutHost, appending the host to
// n.Hosts, ConfigureHost, n.Save, ConnectHost and StartHost; its node
// joins once the network's membership admits it.
func LayoutHost(n *Network, ca *sim.CA, id uint64, addrs HostAddrs) (Host, error) {
	name := fmt.Sprintf("node-%d", id)
	hd := filepath.Join(n.Dir, "hosts", name)
	if _, err := os.Stat(hd); err == nil {
		return Host{}, fmt.Errorf("devnet host %d: %s already exists", id, hd)
	}
	h := Host{
		ID: id, Name: name, Dir: hd,
		PlatformDir: filepath.Join(hd, "platform"),
		DataDir:     filepath.Join(hd, "data"),
		AgentDir:    filepath.Join(hd, "agent"),
		NodeConfig:  filepath.Join(hd, "node.json"),
		AgentConfig: filepath.Join(hd, "agent.json"),
		DistDir:     filepath.Join(hd, "dist"),
		DistState:   filepath.Join(hd, "dist.state"),
		LogDir:      filepath.Join(hd, "logs"),
		PeerAddr:    addrs.Peer, ClientAddr: addrs.Client,
		AdminAddr: addrs.Admin, AgentAddr: addrs.Agent,
	}
	h.AdminSocket = layout.Node(h.DataDir).AdminSocket()
	h.AgentSocket = layout.Agent(h.AgentDir).Socket()
	if iso := n.Isolation; iso != nil {
		h.Namespace = iso.HostNamespace(id)
		h.SwitchPort = fmt.Sprintf("h%d", id)
	}
	if err := os.MkdirAll(hd, 0o700); err != nil {
		return Host{}, fmt.Errorf("devnet host %d: %w", id, err)
	}
	for _, d := range []string{h.DataDir, h.AgentDir, h.DistDir, h.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return Host{}, fmt.Errorf("devnet host %d: %w", id, err)
		}
	}
	if _, err := sim.InitPlatform(h.PlatformDir, ca); err != nil {
		return Host{}, err
	}
	return h, nil
}

// ConfigureHost writes the host's node and agent configurations for the
// network's current release and genesis. On an isolated devnet it first
// gives the host its own copies of the genesis and of the release (hard
// links where possible), so that nothing in its configuration points
// outside its directory.
func ConfigureHost(n *Network, h *Host) error {
	h.AgentManaged = n.Agents
	if n.Isolation != nil {
		if err := fsutil.CopyFile(n.GenesisPath(), n.hostGenesis(h), 0o644); err != nil {
			return fmt.Errorf("devnet host %d: genesis: %w", h.ID, err)
		}
		dir := filepath.Join(h.Dir, "release", n.Release.Version)
		if err := linkTree(n.Release.Dir, dir); err != nil {
			return fmt.Errorf("devnet host %d: release %s: %w", h.ID, n.Release.Version, err)
		}
		h.ReleaseDir = dir
	}
	if err := writeNodeConfig(n, h); err != nil {
		return err
	}
	return writeAgentConfig(n, h, !n.NoDistribute)
}

// linkTree gives dst a copy of every regular file in src: a hard link
// where the file system allows it, a copy otherwise.
func linkTree(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		err := os.Link(from, to)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			fi, serr := e.Info()
			if serr != nil {
				return serr
			}
			if err := fsutil.CopyFile(from, to, fi.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeNodeConfig(n *Network, h *Host) error {
	cfg := nodeconfig.Config{
		NodeID:    h.ID,
		Genesis:   n.hostGenesis(h),
		DataDir:   h.DataDir,
		Platform:  h.PlatformDir,
		Bootstrap: h.ID == 1,
		// Explicit, so that a host added after the genesis (which does not
		// list it) knows where to listen.
		PeerListen: h.PeerAddr, ClientListen: h.ClientAddr,
		// Every devnet client (bench, demo, distribution, CLI) connects from
		// one address: a per-source rate would throttle them all as one.
		ClientLimits: nodeconfig.ClientLimits{RateLimit: -1},

		RaftCompactEvery: n.RaftCompactEvery,
		AdminListen:      h.AdminAddr,
		AdminOperators:   n.hostOperators(h),
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(h.NodeConfig, append(raw, '\n'), 0o644)
}

// writeAgentConfig writes the host's teeup-agent configuration: the agent
// supervises the node and the distribution process of the initial release.
func writeAgentConfig(n *Network, h *Host, distribute bool) error {
	relDir := n.Release.Dir
	if h.ReleaseDir != "" {
		relDir = h.ReleaseDir
	}
	cfg := agent.Config{
		NodeID: h.ID, Genesis: n.hostGenesis(h), Platform: h.PlatformDir, Dir: h.AgentDir,
		NodeConfig: h.NodeConfig, NodeLog: filepath.Join(h.LogDir, "node.log"),
		InitialRelease: layout.Release(relDir).Manifest(), InitialNodeBinary: layout.Release(relDir).NodeBinary(),
		Distribute: &agent.ProcessConfig{
			Binary: layout.Release(relDir).DistributeBinary(),
			Args:   distributeArgs(h),
			Log:    filepath.Join(h.LogDir, "distribute.log"),
		},
		DistributeState: h.DistState,
		PollInterval:    agent.Duration(500 * time.Millisecond),
		AdminListen:     h.AgentAddr,
		AdminOperators:  n.hostOperators(h),
	}
	if !distribute {
		cfg.Distribute = nil
	}
	fd, err := n.flagDayConfig(h)
	if err != nil {
		return err
	}
	cfg.FlagDay = fd
	if !n.Coordinated {
		cfg.ServeTimeout = agent.Duration(30 * time.Second) // a host whose new node does not serve rolls back after this
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(h.AgentConfig, append(raw, '\n'), 0o644)
}

// hostOperators are the operator keys authorised on host h's remote admin
// APIs (devnet RemoteAdmin): operator-N's for host N, when the devnet has
// such a key. The chain records the same key as node N's operator.
func (n *Network) hostOperators(h *Host) []string {
	if h.AdminAddr == "" && h.AgentAddr == "" {
		return nil
	}
	pub, err := keyfile.ReadPublic(n.KeyPath(fmt.Sprintf("operator-%d", h.ID)) + keyfile.PublicSuffix)
	if err != nil {
		return nil
	}
	return []string{hex.EncodeToString(pub)}
}

func distributeArgs(h *Host) []string {
	return []string{"run", "--admin-socket", h.AdminSocket, "--dest", h.DistDir, "--state", h.DistState}
}

// portReserver hands out distinct free loopback addresses. Each port stays
// bound until release, so the kernel cannot give the same port twice while
// a devnet is being laid out (binding and closing at once could).
type portReserver struct{ held []net.Listener }

func (r *portReserver) next() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	r.held = append(r.held, ln)
	return ln.Addr().String(), nil
}

// release frees every reserved port for the processes that will use them.
func (r *portReserver) release() {
	for _, ln := range r.held {
		ln.Close()
	}
	r.held = nil
}

// flagDayConfig is host h's agent flag_day section: coordinated on a
// devnet started with Coordinated; otherwise host N pays with its own copy
// of operator-N's test account key (HostTestKey, written here: the host
// holds no other operator's key) and sends the cross payment to the next
// host's account, with deadlines that suit a devnet.
func (n *Network) flagDayConfig(h *Host) (agent.FlagDayConfig, error) {
	if n.Coordinated {
		return agent.FlagDayConfig{Coordinated: true}, nil
	}
	next := h.ID%uint64(len(n.Hosts)) + 1
	key, err := keyfile.ReadPrivate(n.KeyPath(fmt.Sprintf("operator-%d", next)))
	if err != nil {
		return agent.FlagDayConfig{}, fmt.Errorf("devnet host %d: flag day cross payment account: %w", h.ID, err)
	}
	own := n.HostTestKey(h)
	if err := os.MkdirAll(filepath.Dir(own), 0o700); err != nil {
		return agent.FlagDayConfig{}, fmt.Errorf("devnet host %d: test account key: %w", h.ID, err)
	}
	if err := fsutil.CopyFile(n.KeyPath(fmt.Sprintf("operator-%d", h.ID)), own, 0o600); err != nil {
		return agent.FlagDayConfig{}, fmt.Errorf("devnet host %d: test account key: %w", h.ID, err)
	}
	return agent.FlagDayConfig{
		ReadyTimeout: agent.Duration(time.Minute), LivePeriod: agent.Duration(5 * time.Second), Retry: agent.Duration(2 * time.Second),
		TestKey: own,
		CrossTo: hex.EncodeToString(key.Public().(ed25519.PublicKey)),
	}, nil
}
