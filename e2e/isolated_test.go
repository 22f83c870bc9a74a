package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/internal/netns"
	"github.com/teeup/teeup/internal/proc"
)

// isolatedSubnet is the private subnet of the isolated devnet these tests
// start; it exists only inside the test's own namespaces.
const isolatedSubnet = "10.78.0.0/24"

// needNetns skips a test that needs network namespaces unless this process
// has them (root, iproute2). CI runs as root, so it runs these.
func needNetns(t *testing.T) {
	t.Helper()
	if err := netns.Supported(context.Background()); err != nil {
		t.Skipf("needs root and 'ip netns' (CI runs as root): %v", err)
	}
}

// startIsolatedNet runs 'teeup devnet up --isolate' for nodes hosts and
// returns the network with clients that dial from its observer namespace.
// Whatever happens, the test's end stops every process and removes every
// namespace of it, and fails the test if one is left.
func startIsolatedNet(t *testing.T, ctx context.Context, nodes int) *testNet {
	t.Helper()
	needNetns(t)
	dir := devnetDir(t)
	prefix, err := devnet.NamespacePrefix(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if n, err := devnet.Load(dir); err == nil {
			_ = devnet.Down(cctx, n)
		}
		if _, err := devnet.RemoveNetwork(cctx, dir); err != nil {
			t.Errorf("remove the devnet's namespaces: %v", err)
		}
		if left, _ := netns.List(prefix); len(left) != 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	})
	mustCLI(t, ctx, "devnet", "up", "--isolate", "--subnet", isolatedSubnet, "--nodes", fmt.Sprint(nodes), "--dir", dir, "--bin", bins.dir)
	n, err := devnet.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNet{t: t, net: n}
	t.Cleanup(tn.stop)
	tn.dial()
	return tn
}

// ipNetnsList returns the namespaces `ip netns list` shows that begin with
// prefix.
func ipNetnsList(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	slices.Sort(names)
	return names
}

// TestIsolatedDevnetPartitionAndHeal: 'teeup devnet up --isolate' starts
// 4 hosts, each in its own network namespace (agent, node and distribution
// all inside it); payments commit through every host's client API, dialled
// from the observer namespace; 'teeup devnet partition' of the leader's
// host leaves the other three committing while the partitioned node sees
// no peer and falls behind; 'teeup devnet heal' lets it catch up from the
// raft log to identical blocks and serve again; 'teeup devnet down'
// leaves no namespace ('ip netns list') and no process behind.
func TestIsolatedDevnetPartitionAndHeal(t *testing.T) {
	needNetns(t)
	ctx := testCtx(t, 3*time.Minute)
	tn := startIsolatedNet(t, ctx, 4)
	n := tn.net
	iso := n.Isolation
	if iso == nil || iso.Subnet.String() != isolatedSubnet {
		t.Fatalf("devnet isolation %+v, want subnet %s", iso, isolatedSubnet)
	}
	want := []string{iso.Prefix + "h1", iso.Prefix + "h2", iso.Prefix + "h3", iso.Prefix + "h4", iso.Prefix + "obs", iso.Prefix + "sw"}
	if got := ipNetnsList(t, iso.Prefix); !slices.Equal(got, want) {
		t.Fatalf("ip netns list: %v, want %v", got, want)
	}
	if err := netns.CheckFree(ctx, iso.Subnet); err != nil {
		t.Fatalf("the private subnet shows in the test's namespace: %v", err)
	}

	// Every program of every host runs in that host's namespace only.
	var pids []int
	for i := range n.Hosts {
		h := &n.Hosts[i]
		eventually(t, 30*time.Second, fmt.Sprintf("host %d runs agent, distribution and node", h.ID), func() (bool, string) {
			got, ok := hostPrograms(h)
			return ok, fmt.Sprint(got)
		})
		progs, _ := hostPrograms(h)
		for prog, pid := range progs {
			pids = append(pids, pid)
			for j := range n.Hosts {
				in, err := netns.Namespace{Name: n.Hosts[j].Namespace}.Contains(pid)
				if err != nil || in != (i == j) {
					t.Fatalf("%s of host %d (pid %d) in namespace of host %d: %v, %v", prog, h.ID, pid, n.Hosts[j].ID, in, err)
				}
			}
		}
	}

	// Payments through every host's client API, from the observer.
	for id := 1; id <= 4; id++ {
		tn.runLoad(ctx, tn.load(15, id))
	}

	// Partition the leader's host.
	st, err := tn.admins[0].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := int(st.Leader)
	if p == 0 {
		t.Fatal("no leader")
	}
	var rest []int
	for id := 1; id <= 4; id++ {
		if id != p {
			rest = append(rest, id)
		}
	}
	t.Logf("partitioning host %d (the leader)", p)
	mustCLI(t, ctx, "devnet", "partition", fmt.Sprint(p), "--dir", n.Dir)
	raw := mustCLI(t, ctx, "devnet", "status", "--dir", n.Dir, "--json")
	var rows []devnet.HostStatus
	if err := json.Unmarshal([]byte(raw), &rows); err != nil {
		t.Fatalf("devnet status --json: %v\n%s", err, raw)
	}
	for _, r := range rows {
		if wantLink := map[bool]string{true: "partitioned", false: "up"}[int(r.ID) == p]; r.Link != wantLink {
			t.Errorf("devnet status: host %d link %q, want %q", r.ID, r.Link, wantLink)
		}
	}

	// The other three keep committing.
	tn.runLoad(ctx, tn.load(60, rest...))
	majority := tn.minHeight(ctx, rest...)

	// The partitioned node sees no peer and has not followed.
	eventually(t, 30*time.Second, fmt.Sprintf("partitioned node %d sees no peers", p), func() (bool, string) {
		st, err := tn.admins[p-1].Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		var connected []uint64
		for _, peer := range st.Peers {
			if peer.Connected {
				connected = append(connected, peer.ID)
			}
		}
		return len(connected) == 0 && len(st.Peers) == 3, fmt.Sprintf("connected to %v of %d peers", connected, len(st.Peers))
	})
	if h := tn.minHeight(ctx, p); h >= majority {
		t.Fatalf("partitioned node %d at height %d, the others at %d", p, h, majority)
	}

	// Heal: it catches up to identical blocks and serves again.
	mustCLI(t, ctx, "devnet", "heal", fmt.Sprint(p), "--dir", n.Dir)
	tn.waitHeight(ctx, majority, p)
	tn.runLoad(ctx, tn.load(10, p))
	tn.checkSameChain(ctx, tn.minHeight(ctx))

	// Down removes every namespace and stops every program.
	mustCLI(t, ctx, "devnet", "down", "--dir", n.Dir)
	if got := ipNetnsList(t, iso.Prefix); len(got) != 0 {
		t.Fatalf("ip netns list after devnet down: %v", got)
	}
	for _, pid := range pids {
		if exe, alive := proc.Executable(pid); alive && strings.HasPrefix(exe, n.Dir) {
			t.Errorf("pid %d (%s) still runs after devnet down", pid, exe)
		}
	}
	for i := range n.Hosts {
		if got := devnet.HostRunning(&n.Hosts[i]); len(got) != 0 {
			t.Errorf("host %d runs %v after devnet down", n.Hosts[i].ID, got)
		}
	}
}
