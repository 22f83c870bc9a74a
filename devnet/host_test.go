package devnet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/netns"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/tee/sim"
)

// fakeProgramEnv makes this test binary, started under a program's name
// (teeup-node, teeup-agent, teeup-distribute), stand in for that program:
// it waits for SIGTERM and exits.
const fakeProgramEnv = "TEEUP_DEVNET_TEST_FAKE_PROGRAM"

func TestMain(m *testing.M) {
	if os.Getenv(fakeProgramEnv) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		<-ctx.Done()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testSubnet is the private subnet of the isolated tests' devnets; it
// exists only inside their own namespaces.
var testSubnet = netip.MustParsePrefix("10.232.0.0/24")

// testNetwork returns a devnet description in a temporary directory with a
// CA, a genesis file, operator-1..3, nog-1 and user-1 keys, and release
// 1.0.0 whose programs are this test binary (see fakeProgramEnv), without
// agents; isolated if asked.
func testNetwork(t *testing.T, isolated bool) (*Network, *sim.CA) {
	t.Helper()
	dir := t.TempDir()
	n := &Network{Dir: dir, ChainID: "test", Release: Release{Version: "1.0.0", Dir: filepath.Join(dir, "releases", "1.0.0")}}
	if isolated {
		needRoot(t)
		iso, err := newIsolation(context.Background(), dir, testSubnet, 2)
		if err != nil {
			t.Fatal(err)
		}
		n.Isolation = iso
		t.Cleanup(func() {
			if _, err := RemoveNetwork(context.Background(), dir); err != nil {
				t.Error(err)
			}
			if left, _ := netns.List(iso.Prefix); len(left) != 0 {
				t.Errorf("namespaces left behind: %v", left)
			}
		})
	}
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"operator-1", "operator-2", "operator-3", "nog-1", "user-1"} {
		if _, err := keyfile.Generate(n.KeyPath(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(n.Release.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, prog := range []string{NodeBin, AgentBin, DistributeBin} {
		dst := filepath.Join(n.Release.Dir, prog)
		if err := os.Link(self, dst); err != nil {
			if err := fsutil.CopyFile(self, dst, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, body := range map[string]string{
		filepath.Join(n.Release.Dir, "release.json"): `{"manifest":{}}`,
		filepath.Join(n.Release.Dir, NodeBin+".sig"): "sig",
		n.GenesisPath(): `{"chain_id":"test"}`,
		filepath.Join(n.Release.Dir, "notes", "ignored"): "a directory is not part of a host's release copy",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return n, ca
}

// addHost lays out and configures host id as Up does.
func addHost(t *testing.T, n *Network, ca *sim.CA, id uint64) *Host {
	t.Helper()
	addrs, err := n.NewHostAddrs(id)
	if err != nil {
		t.Fatal(err)
	}
	h, err := LayoutHost(n, ca, id, addrs)
	if err != nil {
		t.Fatal(err)
	}
	n.Hosts = append(n.Hosts, h)
	hp := &n.Hosts[len(n.Hosts)-1]
	if err := ConfigureHost(n, hp); err != nil {
		t.Fatal(err)
	}
	return hp
}

func needRoot(t *testing.T) {
	t.Helper()
	if err := netns.Supported(context.Background()); err != nil {
		t.Skipf("needs root and 'ip netns': %v", err)
	}
}

// configPaths returns every path-valued field of a JSON configuration.
func configPaths(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			if filepath.IsAbs(x) {
				out = append(out, x)
			}
		}
	}
	walk(v)
	return out
}

func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// TestIsolatedHostConfigNamesOnlyItsOwnDirectory: on an isolated devnet
// every host's node and agent configurations name nothing outside the
// host's directory (own genesis, own release copy whose files are the
// release's files, own copy of its operator's test account key), the host
// directory is 0700, and the one operator key in it is its own operator's:
// the operator holding only its own keys.
func TestIsolatedHostConfigNamesOnlyItsOwnDirectory(t *testing.T) {
	n, ca := testNetwork(t, false)
	// The layout needs no root: only starting does.
	prefix, err := NamespacePrefix(n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	n.Isolation = &Isolation{Prefix: prefix, Subnet: testSubnet, Switch: prefix + "sw", Observer: prefix + "obs", ObserverAddr: testSubnet.Addr().Next()}
	// Lay out every host first, then configure them, as Up does (the
	// cross payment goes to the next host's operator).
	for id := uint64(1); id <= 3; id++ {
		addrs, err := n.NewHostAddrs(id)
		if err != nil {
			t.Fatal(err)
		}
		h, err := LayoutHost(n, ca, id, addrs)
		if err != nil {
			t.Fatal(err)
		}
		n.Hosts = append(n.Hosts, h)
	}
	for i := range n.Hosts {
		if err := ConfigureHost(n, &n.Hosts[i]); err != nil {
			t.Fatal(err)
		}
	}
	h := &n.Hosts[1]
	if h.PeerAddr != "10.232.0.3:7101" || h.ClientAddr != "10.232.0.3:7201" {
		t.Fatalf("host 2 addresses %s, %s; want 10.232.0.3:7101, :7201", h.PeerAddr, h.ClientAddr)
	}
	if h.Namespace != prefix+"h2" || h.SwitchPort != "h2" {
		t.Fatalf("host 2 namespace %q port %q", h.Namespace, h.SwitchPort)
	}
	for i := range n.Hosts {
		h := &n.Hosts[i]
		for _, cfg := range []string{h.NodeConfig, h.AgentConfig} {
			paths := configPaths(t, cfg)
			if len(paths) < 3 {
				t.Fatalf("%s names only %v", cfg, paths)
			}
			for _, p := range paths {
				if !within(h.Dir, p) {
					t.Errorf("host %d: %s names %s, outside the host directory %s", h.ID, filepath.Base(cfg), p, h.Dir)
				}
			}
		}
		fi, err := os.Stat(h.Dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("host %d directory mode %v, %v; want 0700", h.ID, fi.Mode().Perm(), err)
		}
		for _, prog := range []string{NodeBin, AgentBin, DistributeBin, NodeBin + ".sig", "release.json"} {
			a, err1 := os.Stat(filepath.Join(n.Release.Dir, prog))
			b, err2 := os.Stat(filepath.Join(h.ReleaseDir, prog))
			if err1 != nil || err2 != nil || !os.SameFile(a, b) && a.Size() != b.Size() {
				t.Errorf("host %d release copy of %s: %v %v", h.ID, prog, err1, err2)
			}
		}
		if want := filepath.Join(h.Dir, "release", "1.0.0", NodeBin); n.programPath(h, NodeBin) != want {
			t.Errorf("host %d starts the node from %s, want %s", h.ID, n.programPath(h, NodeBin), want)
		}
		checkHostTestKey(t, n, h)
		// The operator side's keys (enclave signer, KMG, NOG, other
		// operators' and user accounts) stay in DIR/keys; the host has its
		// platform's and its own operator's test account key.
		own := fmt.Sprintf("operator-%d.key", h.ID)
		_ = filepath.WalkDir(h.Dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || p == n.HostTestKey(h) {
				return nil
			}
			for _, role := range []string{"signer", "kmg-", "nog-", "operator-", "user-"} {
				if strings.HasPrefix(d.Name(), role) {
					t.Errorf("host %d: operator key %s in the host directory (only %s belongs there)", h.ID, p, own)
				}
			}
			return nil
		})
	}
}

// checkHostTestKey checks host h's coordinator-free flag-day section: its
// test key is the host's own copy (0600) of operator-N's key, and the
// cross payment goes to the next host's operator.
func checkHostTestKey(t *testing.T, n *Network, h *Host) {
	t.Helper()
	cfg, err := agent.LoadConfig(h.AgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	fd := cfg.FlagDay
	if fd.Coordinated || fd.TestKey != n.HostTestKey(h) || !within(h.Dir, fd.TestKey) {
		t.Fatalf("host %d flag_day %+v: want coordinator-free with test_key %s", h.ID, fd, n.HostTestKey(h))
	}
	got, err := keyfile.ReadPrivate(fd.TestKey)
	if err != nil {
		t.Fatal(err)
	}
	want, err := keyfile.ReadPrivate(n.KeyPath(fmt.Sprintf("operator-%d", h.ID)))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) {
		t.Errorf("host %d's test key is not operator-%d's", h.ID, h.ID)
	}
	if fi, err := os.Stat(fd.TestKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host %d test key mode %v %v, want 0600", h.ID, fi.Mode().Perm(), err)
	}
	next := h.ID%uint64(len(n.Hosts)) + 1
	pub, err := keyfile.ReadPublic(n.KeyPath(fmt.Sprintf("operator-%d", next)) + keyfile.PublicSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if fd.CrossTo != hex.EncodeToString(pub) {
		t.Errorf("host %d cross_to %s, want operator-%d's %x", h.ID, fd.CrossTo, next, pub)
	}
}

// TestCoordinatedHostHoldsNoOperatorKey: on a devnet started with
// Coordinated, the agents leave the flag day to the coordinator: no test
// key, no deadlines, nothing of the operators' in the host directory.
func TestCoordinatedHostHoldsNoOperatorKey(t *testing.T) {
	n, ca := testNetwork(t, false)
	n.Coordinated = true
	h := addHost(t, n, ca, 1)
	cfg, err := agent.LoadConfig(h.AgentConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.FlagDay, agent.FlagDayConfig{Coordinated: true}) || cfg.ServeTimeout != 0 {
		t.Fatalf("coordinated host flag_day %+v serve_timeout %v", cfg.FlagDay, time.Duration(cfg.ServeTimeout))
	}
	if _, err := os.Stat(n.HostTestKey(h)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("coordinated host has a test key copy: %v", err)
	}
}

// TestLoopbackHostConfigSharesTheNetworkFiles: without isolation hosts
// read the network's genesis and release, on loopback addresses.
func TestLoopbackHostConfigSharesTheNetworkFiles(t *testing.T) {
	n, ca := testNetwork(t, false)
	h := addHost(t, n, ca, 1)
	if h.ReleaseDir != "" || h.Namespace != "" {
		t.Fatalf("loopback host has release dir %q namespace %q", h.ReleaseDir, h.Namespace)
	}
	if !strings.HasPrefix(h.PeerAddr, "127.0.0.1:") || !strings.HasPrefix(h.ClientAddr, "127.0.0.1:") || h.PeerAddr == h.ClientAddr {
		t.Fatalf("addresses %s %s", h.PeerAddr, h.ClientAddr)
	}
	raw, err := os.ReadFile(h.NodeConfig)
	if err != nil || !strings.Contains(string(raw), n.GenesisPath()) {
		t.Fatalf("node config %s (%v) does not name the network genesis", raw, err)
	}
	raw, err = os.ReadFile(h.AgentConfig)
	if err != nil || !strings.Contains(string(raw), filepath.Join(n.Release.Dir, NodeBin)) {
		t.Fatalf("agent config %s (%v) does not name the network release", raw, err)
	}
	if _, err := LayoutHost(n, ca, 1, HostAddrs{}); err == nil {
		t.Fatal("LayoutHost laid out host 1 twice")
	}
}

// awaitRunning waits until prog runs on h, or fails after a bound.
func awaitRunning(t *testing.T, h *Host, prog string, want bool) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		pid, ok := ProcessAlive(h, prog)
		if ok == want {
			return pid
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s on host %d: running=%v never reached", prog, h.ID, want)
	return 0
}

// TestStopStartHost: StopHost stops every program of one host and leaves
// the other host's alone; StartHost starts them again; starting a running
// host is refused with the pid.
func TestStopStartHost(t *testing.T) {
	t.Setenv(fakeProgramEnv, "1")
	n, ca := testNetwork(t, false)
	h1, h2 := addHost(t, n, ca, 1), addHost(t, n, ca, 2)
	t.Cleanup(func() { _ = Down(context.Background(), n) })
	for _, h := range []*Host{h1, h2} {
		if err := StartHost(n, h, true); err != nil {
			t.Fatal(err)
		}
	}
	pids := map[string]int{}
	for _, prog := range []string{NodeBin, DistributeBin} {
		pids[prog] = awaitRunning(t, h1, prog, true)
		awaitRunning(t, h2, prog, true)
	}
	if got := HostRunning(h1); !reflect.DeepEqual(got, pids) {
		t.Fatalf("HostRunning = %v, want %v", got, pids)
	}
	if err := StartNode(n, h1); err == nil || !strings.Contains(err.Error(), fmt.Sprint(pids[NodeBin])) {
		t.Fatalf("StartNode of a running node = %v", err)
	}

	ctx := context.Background()
	if err := StopHost(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if got := HostRunning(h1); len(got) != 0 {
		t.Fatalf("after StopHost host 1 runs %v", got)
	}
	if got := HostRunning(h2); len(got) != 2 {
		t.Fatalf("StopHost of host 1 touched host 2: it runs %v", got)
	}
	if err := StopHost(ctx, h1); err != nil {
		t.Fatalf("StopHost of a stopped host: %v", err)
	}
	if err := StartHost(n, h1, true); err != nil {
		t.Fatal(err)
	}
	for _, prog := range []string{NodeBin, DistributeBin} {
		if pid := awaitRunning(t, h1, prog, true); pid == pids[prog] {
			t.Fatalf("%s runs with its old pid %d", prog, pid)
		}
	}
}

// TestWipeHostDeletesOnlyNodeData: WipeHost stops the host and empties its
// node data directory (ledger, sealed keys, ingress state, reporting
// each), leaving the platform, the agent's directory and configuration
// and everything else of the host byte for byte.
func TestWipeHostDeletesOnlyNodeData(t *testing.T) {
	t.Setenv(fakeProgramEnv, "1")
	n, ca := testNetwork(t, false)
	h := addHost(t, n, ca, 1)
	t.Cleanup(func() { _ = Down(context.Background(), n) })
	files := map[string]string{
		filepath.Join(h.DataDir, "ledger", "000001.sst"):     strings.Repeat("l", 1000),
		filepath.Join(h.DataDir, "ledger", "MANIFEST"):       "m",
		filepath.Join(h.DataDir, "keys", "abcd.sealed"):      strings.Repeat("k", 100),
		filepath.Join(h.DataDir, "ingress.json"):             `{"open":true}`,
		filepath.Join(h.AgentDir, "journal.json"):            "journal",
		filepath.Join(h.AgentDir, "snapshots", "s1", "data"): "snapshot",
		filepath.Join(h.DistDir, "blocks", "1.blk"):          "block",
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keep := map[string][]byte{}
	_ = filepath.WalkDir(h.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !within(h.DataDir, p) {
			keep[p], _ = os.ReadFile(p)
		}
		return nil
	})
	if err := StartHost(n, h, true); err != nil {
		t.Fatal(err)
	}
	awaitRunning(t, h, NodeBin, true)

	w, err := WipeHost(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if got := HostRunning(h); len(got) != 0 {
		t.Fatalf("after WipeHost the host runs %v", got)
	}
	entries, err := os.ReadDir(h.DataDir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("data dir after wipe: %v, %v; want it empty", entries, err)
	}
	got := map[string]WipedEntry{}
	for _, e := range w.Deleted {
		got[filepath.Base(e.Path)] = e
	}
	for name, want := range map[string]struct {
		bytes int64
		what  string
	}{"ledger": {1001, "ledger"}, "keys": {100, "sealed application keys"}, "ingress.json": {13, "ingress state"}} {
		e, ok := got[name]
		if !ok || e.Bytes != want.bytes || !strings.HasPrefix(e.What, want.what) {
			t.Errorf("deleted %s: %+v (ok=%v), want %d bytes, %q", name, e, ok, want.bytes, want.what)
		}
	}
	if len(w.Deleted) != 3 {
		t.Errorf("deleted %d entries, want 3: %+v", len(w.Deleted), w.Deleted)
	}
	for p, body := range keep {
		now, err := os.ReadFile(p)
		if err != nil || string(now) != string(body) {
			t.Errorf("wipe changed %s (%v)", p, err)
		}
	}
	for _, p := range []string{h.PlatformDir, h.AgentDir, h.AgentConfig, h.NodeConfig} {
		found := false
		for _, k := range w.Kept {
			found = found || k == p
		}
		if !found {
			t.Errorf("report does not say %s was kept: %v", p, w.Kept)
		}
	}
	// A second wipe finds nothing to delete.
	if w, err := WipeHost(context.Background(), h); err != nil || len(w.Deleted) != 0 {
		t.Fatalf("second wipe: %+v, %v", w, err)
	}
}

func TestNamespacePrefix(t *testing.T) {
	a, err := NamespacePrefix("/tmp/devnet-a")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := NamespacePrefix("/tmp/devnet-a/"); b != a {
		t.Errorf("prefix depends on a trailing slash: %s vs %s", a, b)
	}
	if c, _ := NamespacePrefix("/tmp/devnet-b"); c == a {
		t.Errorf("two directories share prefix %s", a)
	}
	if len(a) != len("teeup-")+8+1 || !strings.HasPrefix(a, "teeup-") {
		t.Errorf("prefix %q", a)
	}
	wd, _ := os.Getwd()
	rel, _ := NamespacePrefix(".")
	abs, _ := NamespacePrefix(wd)
	if rel != abs {
		t.Errorf("relative and absolute directory differ: %s %s", rel, abs)
	}
	if err := netns.ValidName(a + "obs"); err != nil {
		t.Error(err)
	}
}

func TestIsolationHostIP(t *testing.T) {
	for _, tc := range []struct {
		subnet string
		id     uint64
		want   string // "" = no address
	}{
		{"10.77.0.0/24", 1, "10.77.0.2"},
		{"10.77.0.0/24", 7, "10.77.0.8"},
		{"10.77.0.0/24", 253, "10.77.0.254"},
		{"10.77.0.0/24", 254, ""}, // broadcast
		{"10.77.0.0/24", 0, ""},
		{"10.77.5.16/28", 13, "10.77.5.30"},
		{"10.77.5.16/28", 14, ""},
	} {
		p := netip.MustParsePrefix(tc.subnet)
		iso := &Isolation{Subnet: p, ObserverAddr: p.Addr().Next()}
		got, err := iso.HostIP(tc.id)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s host %d: %s, want no address", tc.subnet, tc.id, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%s host %d: %s, %v; want %s", tc.subnet, tc.id, got, err, tc.want)
		}
	}
}

// TestNewIsolationRefuses: an isolated devnet needs root, an IPv4 subnet
// large enough, one this machine does not use, and no namespaces of an
// earlier devnet in the same directory.
func TestNewIsolationRefuses(t *testing.T) {
	ctx := context.Background()
	if err := netns.Supported(ctx); err != nil {
		if _, ierr := newIsolation(ctx, t.TempDir(), testSubnet, 4); !errors.Is(ierr, err) {
			t.Fatalf("without namespace support: %v, want %v", ierr, err)
		}
		t.Skipf("the rest needs root and 'ip netns': %v", err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		subnet string
		nodes  int
		want   string
	}{
		{"127.0.0.0/24", 4, "in use"},
		{"fd00::/64", 4, "IPv4"},
		{"10.232.0.0/29", 4, "/28"},
		{"10.232.0.0/28", 14, "no address for host 14"},
	} {
		_, err := newIsolation(ctx, dir, netip.MustParsePrefix(tc.subnet), tc.nodes)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("subnet %s, %d nodes: %v, want %q", tc.subnet, tc.nodes, err, tc.want)
		}
	}
	if _, err := newIsolation(ctx, dir, netip.MustParsePrefix("127.0.0.0/24"), 4); !errors.Is(err, netns.ErrSubnetInUse) {
		t.Errorf("used subnet: %v, want ErrSubnetInUse", err)
	}
	prefix, _ := NamespacePrefix(dir)
	if _, err := netns.Add(ctx, prefix+"sw"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = RemoveNetwork(ctx, dir) })
	if _, err := newIsolation(ctx, dir, testSubnet, 4); err == nil || !strings.Contains(err.Error(), "devnet down") {
		t.Errorf("with an earlier devnet's namespace left: %v", err)
	}
}

// TestIsolatedHostLifecycle (root): ConnectHost builds the host's
// namespace on the switch; StartHost runs the host's programs inside it;
// Partition and Heal take its link down and up (and ConnectHost keeps a
// partition); Down stops the programs and removes every namespace; a
// process left inside a namespace without a pid file (a crash) is stopped
// by RemoveNetwork, which needs only the directory.
func TestIsolatedHostLifecycle(t *testing.T) {
	t.Setenv(fakeProgramEnv, "1")
	n, ca := testNetwork(t, true)
	h1, h2 := addHost(t, n, ca, 1), addHost(t, n, ca, 2)
	ctx := context.Background()
	if err := StartHost(n, h1, true); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("StartHost before ConnectHost: %v", err)
	}
	for _, h := range []*Host{h1, h2} {
		if err := ConnectHost(ctx, n, h); err != nil {
			t.Fatal(err)
		}
		if err := StartHost(n, h, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*Host{h1, h2} {
		ns := netns.Namespace{Name: h.Namespace}
		for _, prog := range []string{NodeBin, DistributeBin} {
			pid := awaitRunning(t, h, prog, true)
			if in, err := ns.Contains(pid); err != nil || !in {
				t.Fatalf("%s of host %d (pid %d) is not in %s: %v", prog, h.ID, pid, ns.Name, err)
			}
		}
		if v, err := ns.Sysctl("net/ipv4/tcp_retries2"); err != nil || v != tcpRetries {
			t.Errorf("tcp_retries2 in %s = %q, %v", ns.Name, v, err)
		}
	}
	if err := netns.CheckFree(ctx, testSubnet); err != nil {
		t.Fatalf("the private subnet shows in the test's namespace: %v", err)
	}

	// The observer reaches a listener in host 2's namespace; a partition
	// cuts it off (the connection cannot be made within a second), heal
	// restores it.
	ln, err := netns.Namespace{Name: h2.Namespace}.Listen("tcp", netip.AddrPortFrom(mustHostIP(t, n, 2), 7999).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial, err := n.DialContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reach := func(timeout time.Duration) error {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := dial(dctx, "tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := reach(5 * time.Second); err != nil {
		t.Fatalf("observer → host 2: %v", err)
	}
	if err := Partition(ctx, n, h2); err != nil {
		t.Fatal(err)
	}
	if up, err := LinkUp(ctx, n, h2); err != nil || up {
		t.Fatalf("host 2 link up=%v, %v after Partition", up, err)
	}
	if err := reach(time.Second); err == nil {
		t.Fatal("the observer reached a partitioned host")
	}
	if err := ConnectHost(ctx, n, h2); err != nil {
		t.Fatal(err)
	}
	if up, _ := LinkUp(ctx, n, h2); up {
		t.Fatal("ConnectHost healed a partitioned host")
	}
	if err := Heal(ctx, n, h2); err != nil {
		t.Fatal(err)
	}
	var last error
	for i := 0; i < 20; i++ {
		if last = reach(time.Second); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("observer → host 2 after Heal: %v", last)
	}

	// A stray process in host 1's namespace, known to no pid file.
	ns1 := netns.Namespace{Name: h1.Namespace}
	var stray *os.Process
	if err := ns1.Do(func() error {
		var err error
		stray, err = os.StartProcess(n.programPath(h1, NodeBin), []string{NodeBin}, &os.ProcAttr{Env: os.Environ()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan struct{})
	go func() { _, _ = stray.Wait(); close(strayDone) }()

	if err := Down(ctx, n); err != nil {
		t.Fatal(err)
	}
	select {
	case <-strayDone:
	case <-time.After(30 * time.Second):
		t.Fatal("Down left a process running in a host namespace")
	}
	for _, h := range []*Host{h1, h2} {
		if got := HostRunning(h); len(got) != 0 {
			t.Errorf("host %d runs %v after Down", h.ID, got)
		}
	}
	if left, _ := netns.List(n.Isolation.Prefix); len(left) != 0 {
		t.Fatalf("namespaces after Down: %v", left)
	}
	if _, err := n.DialContext(ctx); err == nil {
		t.Fatal("DialContext without the observer namespace succeeded")
	}

	// After a crash nobody may know the devnet's description: the
	// namespaces are found from the directory's name alone.
	if err := ConnectHost(ctx, n, h1); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveNetwork(ctx, n.Dir)
	if err != nil || len(removed) != 3 {
		t.Fatalf("RemoveNetwork = %v, %v; want switch, observer and host 1", removed, err)
	}
}

func mustHostIP(t *testing.T, n *Network, id uint64) netip.Addr {
	t.Helper()
	ip, err := n.Isolation.HostIP(id)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}
