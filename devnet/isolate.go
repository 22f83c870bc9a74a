package devnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/teeup/teeup/internal/netns"
	"github.com/teeup/teeup/internal/proc"
	"github.com/teeup/teeup/nodeapi"
)

// DefaultSubnet is the private subnet of an isolated devnet. It exists
// only inside the devnet's namespaces, so two isolated devnets may use the
// same one; it must not overlap a network of the machine itself.
var DefaultSubnet = netip.MustParsePrefix("10.77.0.0/24")

// The ports every isolated host's node listens on (each host has its own
// address, so all use the same ports).
const (
	PeerPort   = 7101
	ClientPort = 7201
	// AdminPort and AgentPort are the remote admin APIs' ports of an
	// isolated devnet with RemoteAdmin.
	AdminPort = 7301
	AgentPort = 7401
)

// tcpRetries is net.ipv4.tcp_retries2 inside an isolated devnet's
// namespaces: a connection whose data goes unacknowledged fails after
// about 3 s (200 ms doubling three times) instead of the kernel default's
// 15 minutes, so a partitioned node's peer connections break — and its
// status shows no peers — within seconds, as a peer behind a pulled cable
// would show on hosts with a short TCP user timeout.
const tcpRetries = "3"

// ErrNotIsolated reports an operation that needs an isolated devnet.
var ErrNotIsolated = errors.New("devnet is not isolated (create it with 'teeup devnet up --isolate')")

// Isolation is an isolated devnet's private network: every host in its own
// network namespace with its own address, joined by a bridge in a switch
// namespace; an observer namespace on the same bridge is where the CLI
// and tests dial the hosts' client APIs from. Nothing of it exists in the
// machine's own namespace: unix sockets (admin, agent) stay reachable from
// there because they are files.
//
// Names derive from the devnet directory (NamespacePrefix), so a later
// 'devnet down' finds and removes them even after a crash.
type Isolation struct {
	// Prefix begins every namespace name of the devnet.
	Prefix string `json:"namespace_prefix"`
	// Subnet is the private IPv4 subnet: the observer has its first
	// address, host N the (N+1)th.
	Subnet netip.Prefix `json:"subnet"`
	// Switch is the namespace holding the bridge and its ports.
	Switch string `json:"switch_namespace"`
	// Observer is the CLI side's namespace.
	Observer string `json:"observer_namespace"`
	// ObserverAddr is the observer's address on Subnet.
	ObserverAddr netip.Addr `json:"observer_addr"`
}

// NamespacePrefix returns the prefix of every namespace name an isolated
// devnet in dir uses: "teeup-" and 8 hex digits of the SHA-256 of the
// absolute directory, then "-".
func NamespacePrefix(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("devnet namespaces: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return "teeup-" + hex.EncodeToString(sum[:4]) + "-", nil
}

// newIsolation plans the private network of an isolated devnet in dir for
// hosts 1..nodes on subnet, and checks that it can be built here: root,
// iproute2, a subnet this machine does not use, and no namespaces left by
// an earlier devnet in dir.
func newIsolation(ctx context.Context, dir string, subnet netip.Prefix, nodes int) (*Isolation, error) {
	if err := netns.Supported(ctx); err != nil {
		return nil, fmt.Errorf("devnet up --isolate: %w", err)
	}
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	subnet = subnet.Masked()
	if !subnet.Addr().Is4() || subnet.Bits() > 28 {
		return nil, fmt.Errorf("devnet up --isolate: subnet %s: want an IPv4 subnet of at least 16 addresses (/28)", subnet)
	}
	prefix, err := NamespacePrefix(dir)
	if err != nil {
		return nil, err
	}
	iso := &Isolation{Prefix: prefix, Subnet: subnet, Switch: prefix + "sw", Observer: prefix + "obs", ObserverAddr: subnet.Addr().Next()}
	if _, err := iso.HostIP(uint64(nodes)); err != nil {
		return nil, fmt.Errorf("devnet up --isolate: %w", err)
	}
	if err := netns.CheckFree(ctx, subnet); err != nil {
		return nil, fmt.Errorf("devnet up --isolate: %w; choose another with --subnet", err)
	}
	left, err := netns.List(prefix)
	if err != nil {
		return nil, err
	}
	if len(left) > 0 {
		return nil, fmt.Errorf("devnet up --isolate: namespaces of an earlier devnet in %s still exist (%v): run 'teeup devnet down --dir %s'", dir, left, dir)
	}
	return iso, nil
}

// HostNamespace returns host id's namespace name.
func (iso *Isolation) HostNamespace(id uint64) string {
	return iso.Prefix + "h" + strconv.FormatUint(id, 10)
}

// HostIP returns host id's address on the subnet.
func (iso *Isolation) HostIP(id uint64) (netip.Addr, error) {
	a := iso.ObserverAddr
	for i := uint64(0); i < id && a.IsValid(); i++ {
		a = a.Next()
	}
	// Neither outside the subnet nor its broadcast address.
	if id == 0 || !iso.Subnet.Contains(a) || !iso.Subnet.Contains(a.Next()) {
		return netip.Addr{}, fmt.Errorf("subnet %s has no address for host %d", iso.Subnet, id)
	}
	return a, nil
}

func (iso *Isolation) sw() netns.Switch {
	return netns.Switch{NS: netns.Namespace{Name: iso.Switch}, Bridge: netns.BridgeName}
}

// observerPort is the observer's port on the switch.
const observerPort = "obs"

// ConnectHost makes sure the isolated devnet's switch and observer exist
// and that host h has its namespace on the switch with its own address. It
// is idempotent and repairs what is missing (after 'devnet down', or a
// crash); a host whose link exists keeps its state, so a partitioned host
// stays partitioned. It does nothing on a devnet that is not isolated.
func ConnectHost(ctx context.Context, n *Network, h *Host) error {
	iso := n.Isolation
	if iso == nil {
		return nil
	}
	if err := netns.Supported(ctx); err != nil {
		return fmt.Errorf("connect host %d: %w", h.ID, err)
	}
	sw, err := netns.NewSwitch(ctx, iso.Switch)
	if err != nil {
		return fmt.Errorf("connect host %d: %w", h.ID, err)
	}
	join := func(name, port string, ip netip.Addr) error {
		fresh := !(netns.Namespace{Name: name}).Exists()
		ns, err := netns.Add(ctx, name)
		if err != nil {
			return err
		}
		if fresh {
			// A port left from an earlier namespace of that name (deleted
			// while a process kept it alive) leads nowhere useful.
			if err := sw.RemovePort(ctx, port); err != nil {
				return err
			}
		}
		if fresh || !sw.HasPort(ctx, port) {
			if err := sw.Connect(ctx, ns, port, netip.PrefixFrom(ip, iso.Subnet.Bits())); err != nil {
				return err
			}
		}
		return ns.SetSysctl("net/ipv4/tcp_retries2", tcpRetries)
	}
	if err := join(iso.Observer, observerPort, iso.ObserverAddr); err != nil {
		return fmt.Errorf("connect observer: %w", err)
	}
	ip, err := iso.HostIP(h.ID)
	if err != nil {
		return err
	}
	if err := join(h.Namespace, h.SwitchPort, ip); err != nil {
		return fmt.Errorf("connect host %d: %w", h.ID, err)
	}
	return nil
}

// Partition cuts host h off the devnet's network: its switch port goes
// down, as a pulled cable. Its processes keep running; unix sockets stay
// reachable.
func Partition(ctx context.Context, n *Network, h *Host) error { return setLink(ctx, n, h, false) }

// Heal restores host h's network after Partition.
func Heal(ctx context.Context, n *Network, h *Host) error { return setLink(ctx, n, h, true) }

func setLink(ctx context.Context, n *Network, h *Host, up bool) error {
	if n.Isolation == nil {
		return fmt.Errorf("host %d: %w", h.ID, ErrNotIsolated)
	}
	if err := n.Isolation.sw().SetPort(ctx, h.SwitchPort, up); err != nil {
		return fmt.Errorf("host %d link: %w", h.ID, err)
	}
	return nil
}

// LinkUp reports whether host h's link is up (false while partitioned).
func LinkUp(ctx context.Context, n *Network, h *Host) (bool, error) {
	if n.Isolation == nil {
		return false, fmt.Errorf("host %d: %w", h.ID, ErrNotIsolated)
	}
	return n.Isolation.sw().PortUp(ctx, h.SwitchPort)
}

// RemoveNetwork removes every namespace of the isolated devnet in dir
// (their veths and bridge go with them), after stopping any process still
// inside one — only the devnet's own processes can be there. It needs only
// the directory's name, not its devnet.json, and returns the namespaces it
// removed.
func RemoveNetwork(ctx context.Context, dir string) ([]string, error) {
	prefix, err := NamespacePrefix(dir)
	if err != nil {
		return nil, err
	}
	names, err := netns.List(prefix)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	if err := netns.Supported(ctx); err != nil {
		return nil, fmt.Errorf("remove devnet namespaces %v: %w", names, err)
	}
	var firstErr error
	for _, name := range names {
		ns := netns.Namespace{Name: name}
		pids, err := ns.Pids(ctx)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for _, pid := range pids {
			if pid == os.Getpid() {
				continue // this process: one of its threads was inside
			}
			if exe, ok := proc.Executable(pid); ok {
				if err := proc.Stop(ctx, pid, exe, 5*time.Second); err != nil && firstErr == nil {
					firstErr = err
				}
			}
		}
		if err := netns.Delete(ctx, name); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return names, firstErr
}

// DialContext returns how to open TCP connections to the devnet's client
// APIs: from the observer namespace on an isolated devnet (this process
// must be root), nil (the default dialer) otherwise.
func (n *Network) DialContext(ctx context.Context) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	iso := n.Isolation
	if iso == nil {
		return nil, nil
	}
	if err := netns.Supported(ctx); err != nil {
		return nil, fmt.Errorf("devnet %s is isolated; its client APIs are reachable only from its observer namespace: %w", n.Dir, err)
	}
	obs := netns.Namespace{Name: iso.Observer}
	if !obs.Exists() {
		return nil, fmt.Errorf("devnet %s is isolated and its observer namespace %s does not exist (is it down?)", n.Dir, iso.Observer)
	}
	return obs.DialContext, nil
}

// DialNode returns an attested client for host h's client API, dialing
// from the observer namespace on an isolated devnet.
func (n *Network) DialNode(ctx context.Context, h *Host) (*nodeapi.Client, error) {
	return n.DialNodeConns(ctx, h, 0)
}

// DialNodeConns is DialNode with a client keeping conns connections (0:
// the default).
func (n *Network) DialNodeConns(ctx context.Context, h *Host, conns int) (*nodeapi.Client, error) {
	dial, err := n.DialContext(ctx)
	if err != nil {
		return nil, err
	}
	return nodeapi.Dial(nodeapi.DialConfig{Addr: h.ClientAddr, RootPath: n.RootCert(), MREnclaves: n.AcceptedMeasurements(), DialContext: dial, Conns: conns})
}
