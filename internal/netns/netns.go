// Package netns builds private networks out of named Linux network
// namespaces: namespaces joined by a bridge that lives in a namespace of
// its own, so the network exists only inside the namespaces it creates and
// nothing of it appears in the caller's namespace. It also runs code inside
// a namespace (to dial, listen or start a process there).
//
// Namespaces are the ones `ip netns` manages (/run/netns/NAME), so an
// operator can inspect and repair them with the same tool
// (`ip netns list`, `ip -n NAME addr`). Links and addresses are configured
// with iproute2's `ip` command; entering a namespace uses setns(2) on a
// locked OS thread. Everything here needs root (CAP_SYS_ADMIN and
// CAP_NET_ADMIN): Supported says whether this process has what it takes.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RunDir is where `ip netns` keeps its named namespaces.
const RunDir = "/run/netns"

// Errors Supported reports.
var (
	// ErrNotRoot: network namespaces need root.
	ErrNotRoot = errors.New("network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
	// ErrNoIP: the iproute2 `ip` command is not installed.
	ErrNoIP = errors.New("the iproute2 'ip' command is not installed")
	// ErrUnavailable: the kernel or the sandbox refuses network namespaces.
	ErrUnavailable = errors.New("network namespaces are unavailable here")
)

// ErrSubnetInUse reports a subnet that overlaps an address or a route of
// the caller's namespace.
var ErrSubnetInUse = errors.New("subnet in use")

// Supported reports whether this process can create and enter network
// namespaces: it runs as root, `ip` is installed and `ip netns list`
// answers. The error wraps ErrNotRoot, ErrNoIP or ErrUnavailable.
func Supported(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return ErrNoIP
	}
	if _, err := ipCmd(ctx, "netns", "list"); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// ValidName reports whether name is usable as a namespace name: 1 to 64
// characters of letters, digits, '-', '_' and '.', not starting with '.'.
func ValidName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return fmt.Errorf("namespace name %q: want 1 to 64 characters, not starting with '.'", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("namespace name %q: character %q not allowed", name, c)
		}
	}
	return nil
}

// Namespace is a named network namespace.
type Namespace struct {
	// Name is the namespace's name under RunDir.
	Name string
}

// Path returns the namespace's file.
func (ns Namespace) Path() string { return filepath.Join(RunDir, ns.Name) }

// Exists reports whether the namespace exists.
func (ns Namespace) Exists() bool {
	_, err := os.Stat(ns.Path())
	return err == nil
}

// Add creates the namespace with its loopback interface up. One that
// already exists is left as it is.
func Add(ctx context.Context, name string) (Namespace, error) {
	if err := ValidName(name); err != nil {
		return Namespace{}, err
	}
	ns := Namespace{Name: name}
	if !ns.Exists() {
		if _, err := ipCmd(ctx, "netns", "add", name); err != nil {
			return Namespace{}, err
		}
	}
	if _, err := ipCmd(ctx, "-n", name, "link", "set", "lo", "up"); err != nil {
		return Namespace{}, err
	}
	return ns, nil
}

// Delete removes the namespace; the links inside it go with it (a veth
// whose one end is destroyed loses the other). A namespace that does not
// exist is not an error. Processes still inside keep the namespace alive
// after its name is gone: stop them first (Pids).
func Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if !(Namespace{Name: name}).Exists() {
		return nil
	}
	_, err := ipCmd(ctx, "netns", "delete", name)
	return err
}

// List returns the names of every namespace that begins with prefix,
// sorted.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// Pids returns the processes that run inside the namespace.
func (ns Namespace) Pids(ctx context.Context) ([]int, error) {
	out, err := ipCmd(ctx, "netns", "pids", ns.Name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("ip netns pids %s: unexpected %q", ns.Name, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Contains reports whether process pid runs inside the namespace.
func (ns Namespace) Contains(pid int) (bool, error) {
	var want, got unix.Stat_t
	if err := unix.Stat(ns.Path(), &want); err != nil {
		return false, fmt.Errorf("network namespace %s: %w", ns.Name, err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &got); err != nil {
		return false, fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	return want.Dev == got.Dev && want.Ino == got.Ino, nil
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn
// creates belong to the namespace (and keep belonging to it when used from
// any goroutine afterwards); processes it starts run inside it. Goroutines
// fn starts run outside. Afterwards the thread returns to the namespace it
// came from; if it cannot, it is discarded instead of going back to the Go
// scheduler in a foreign namespace.
func (ns Namespace) Do(fn func() error) error {
	target, err := os.Open(ns.Path())
	if err != nil {
		return fmt.Errorf("enter network namespace %s: %w", ns.Name, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread's own namespace, to return to. (A thread that stayed
		// in the namespace would show the whole process in it when it is
		// the main thread, which the runtime can never discard.)
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", ns.Name, err)
			return
		}
		defer home.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread() // setns failed: the thread is unchanged
			errc <- fmt.Errorf("enter network namespace %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		} // else: stay locked, so the thread ends with this goroutine
		errc <- ferr
	}()
	return <-errc
}

// DialContext connects to addr (an IP address and port: no name is
// resolved, since resolution could run on a thread outside the namespace)
// from inside the namespace. Its signature fits http.Transport.DialContext.
func (ns Namespace) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("dial %s in namespace %s: want IP:port: %w", addr, ns.Name, err)
	}
	var c net.Conn
	err := ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen listens on addr inside the namespace.
func (ns Namespace) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// SetSysctl sets a network sysctl of the namespace, e.g.
// "net/ipv4/tcp_retries2" (a path under /proc/sys).
func (ns Namespace) SetSysctl(key, value string) error {
	if strings.Contains(key, "..") || !strings.HasPrefix(key, "net/") {
		return fmt.Errorf("sysctl %q: only net/ keys of the namespace", key)
	}
	return ns.Do(func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, ns.Name, err)
		}
		return nil
	})
}

// Sysctl reads a network sysctl of the namespace.
func (ns Namespace) Sysctl(key string) (string, error) {
	if strings.Contains(key, "..") || !strings.HasPrefix(key, "net/") {
		return "", fmt.Errorf("sysctl %q: only net/ keys of the namespace", key)
	}
	var v string
	err := ns.Do(func() error {
		raw, err := os.ReadFile(filepath.Join("/proc/sys", key))
		v = strings.TrimSpace(string(raw))
		return err
	})
	return v, err
}

// Switch is a bridge in a namespace of its own. Other namespaces join it
// through veth pairs whose switch end (the port) stays in the switch's
// namespace, so neither the bridge nor any port exists in the caller's
// namespace.
type Switch struct {
	// NS holds the bridge and the ports.
	NS Namespace
	// Bridge is the bridge device's name inside NS.
	Bridge string
}

// BridgeName is the bridge device inside a switch namespace.
const BridgeName = "br0"

// NewSwitch creates (or finds) the switch namespace name with its bridge
// up.
func NewSwitch(ctx context.Context, name string) (Switch, error) {
	ns, err := Add(ctx, name)
	if err != nil {
		return Switch{}, err
	}
	s := Switch{NS: ns, Bridge: BridgeName}
	if !s.hasLink(ctx, s.Bridge) {
		if _, err := ipCmd(ctx, "-n", name, "link", "add", s.Bridge, "type", "bridge"); err != nil {
			return Switch{}, err
		}
	}
	if _, err := ipCmd(ctx, "-n", name, "link", "set", s.Bridge, "up"); err != nil {
		return Switch{}, err
	}
	return s, nil
}

// IfName is the interface a namespace joined to a switch sees.
const IfName = "eth0"

// Connect joins ns to the switch: a veth pair with port (at most 15
// characters) on the bridge and IfName inside ns carrying addr (e.g.
// 10.77.0.2/24), both up. A port that already exists is reconfigured, not
// duplicated, so Connect can repair a half-built network.
func (s Switch) Connect(ctx context.Context, ns Namespace, port string, addr netip.Prefix) error {
	if len(port) == 0 || len(port) > 15 {
		return fmt.Errorf("port name %q: want 1 to 15 characters", port)
	}
	if !s.hasLink(ctx, port) {
		if _, err := ipCmd(ctx, "-n", s.NS.Name, "link", "add", port, "type", "veth", "peer", "name", IfName, "netns", ns.Name); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"-n", s.NS.Name, "link", "set", port, "master", s.Bridge},
		{"-n", s.NS.Name, "link", "set", port, "up"},
		{"-n", ns.Name, "addr", "replace", addr.String(), "dev", IfName},
		{"-n", ns.Name, "link", "set", IfName, "up"},
	}
	for _, args := range steps {
		if _, err := ipCmd(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// SetPort takes a port down (the namespace behind it loses its link, as a
// pulled cable would) or up again.
func (s Switch) SetPort(ctx context.Context, port string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := ipCmd(ctx, "-n", s.NS.Name, "link", "set", port, state)
	return err
}

// PortUp reports whether a port is administratively up.
func (s Switch) PortUp(ctx context.Context, port string) (bool, error) {
	out, err := ipCmd(ctx, "-n", s.NS.Name, "-o", "link", "show", port)
	if err != nil {
		return false, err
	}
	// "5: h1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu ..."
	open, close := bytes.IndexByte(out, '<'), bytes.IndexByte(out, '>')
	if open < 0 || close < open {
		return false, fmt.Errorf("ip link show %s: unexpected %q", port, out)
	}
	return slices.Contains(strings.Split(string(out[open+1:close]), ","), "UP"), nil
}

// RemovePort deletes a port (and the interface at its other end). A port
// that does not exist is not an error.
func (s Switch) RemovePort(ctx context.Context, port string) error {
	if !s.hasLink(ctx, port) {
		return nil
	}
	_, err := ipCmd(ctx, "-n", s.NS.Name, "link", "delete", port)
	return err
}

// HasPort reports whether the switch has a port of that name.
func (s Switch) HasPort(ctx context.Context, port string) bool { return s.hasLink(ctx, port) }

func (s Switch) hasLink(ctx context.Context, name string) bool {
	_, err := ipCmd(ctx, "-n", s.NS.Name, "link", "show", name)
	return err == nil
}

// CheckFree fails with ErrSubnetInUse when subnet overlaps an address or a
// route (other than a default route) of the caller's namespace: a private
// subnet must not shadow a network this machine already reaches.
func CheckFree(ctx context.Context, subnet netip.Prefix) error {
	out, err := ipCmd(ctx, "-o", "addr", "show")
	if err != nil {
		return err
	}
	for _, p := range addrPrefixes(out) {
		if p.Overlaps(subnet) {
			return fmt.Errorf("%w: %s overlaps address %s of this machine", ErrSubnetInUse, subnet, p)
		}
	}
	for _, family := range []string{"-4", "-6"} {
		out, err := ipCmd(ctx, family, "route", "show", "table", "all")
		if err != nil {
			return err
		}
		for _, p := range routePrefixes(out) {
			if p.Overlaps(subnet) {
				return fmt.Errorf("%w: %s overlaps route %s of this machine", ErrSubnetInUse, subnet, p)
			}
		}
	}
	return nil
}

// addrPrefixes parses `ip -o addr show`: "2: eth0    inet 192.0.2.2/24 ...".
func addrPrefixes(out []byte) []netip.Prefix {
	var ps []netip.Prefix
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" && f[i] != "inet6" {
				continue
			}
			if p, err := netip.ParsePrefix(f[i+1]); err == nil {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// routePrefixes parses `ip route show table all`: each line's destination
// is its first field, after an optional route type ("local 127.0.0.1 dev
// lo ..."); default routes are skipped.
func routePrefixes(out []byte) []netip.Prefix {
	types := []string{"unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "blackhole", "prohibit", "throw", "nat"}
	var ps []netip.Prefix
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && slices.Contains(types, f[0]) {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		if p, err := netip.ParsePrefix(f[0]); err == nil {
			ps = append(ps, p.Masked())
		} else if a, err := netip.ParseAddr(f[0]); err == nil {
			ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return ps
}

// ipCmd runs `ip args...` and returns its output; a failure carries the
// command and what it printed.
func ipCmd(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
