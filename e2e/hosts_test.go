package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/hostinit"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/proc"
	"github.com/teeup/teeup/nodeapi"
)

// TestSeparateHostsNetwork follows the README's "Deploy on separate hosts"
// with the real binaries, as four organisations would on four machines
// (here four directories on loopback, each holding only its own private
// keys): a CA holder certifies each host's platform by request, each host
// makes its bundle, an assembler builds the genesis, a vendor signs the
// enclave binaries, two Key Management Group members sign the release,
// every host installs genesis and release and starts its agent from the
// agent.json 'teeup host init' wrote. The network must come up (every node
// registered, one leader, committing) and carry a payment between two
// operators' test accounts, made by the CLI with --chain-id. Every host
// serves its node's and agent's admin APIs remotely (--admin-listen,
// --agent-listen): organisation 2 reads host 1's node and agent with its
// own operator key but may not write there; organisation 1 may.
func TestSeparateHostsNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 4-host network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	base, err := os.MkdirTemp("", "e2eh") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	cli := func(args ...string) string {
		t.Helper()
		code, out, err := teeupCLI(ctx, nil, args...)
		if err != nil || code != 0 {
			t.Fatalf("teeup %s: exit %d, %v\n%s", strings.Join(args, " "), code, err, out)
		}
		return out
	}
	copyTo := func(src, dst string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := fsutil.CopyFile(src, dst, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ports := freePorts(t, 16)

	caDir := filepath.Join(base, "ca-holder", "ca")
	cli("platform", "ca-init", caDir)
	assembler := filepath.Join(base, "assembler")
	const hostCount = 4
	orgs := make([]string, hostCount)
	hosts := make([]string, hostCount)
	for i := range hosts {
		id := strconv.Itoa(i + 1)
		orgs[i] = filepath.Join(base, "org"+id)
		hosts[i] = filepath.Join(orgs[i], "t")
		copyTo(filepath.Join(caDir, "root.crt"), filepath.Join(orgs[i], "root.crt"))
		cli("host", "init", hosts[i], "--node-id", id, "--name", "org-"+id,
			"--peer-addr", ports[2*i], "--client-addr", ports[2*i+1],
			"--admin-listen", ports[8+2*i], "--agent-listen", ports[9+2*i],
			"--root", filepath.Join(orgs[i], "root.crt"), "--request", filepath.Join(orgs[i], "p.csr"), "--kmg")
		csr := filepath.Join(base, "ca-holder", id+".csr")
		copyTo(filepath.Join(orgs[i], "p.csr"), csr)
		cli("platform", "certify", "--ca", caDir, csr, "-o", filepath.Join(base, "ca-holder", id+".crt"))
		copyTo(filepath.Join(base, "ca-holder", id+".crt"), filepath.Join(orgs[i], "p.crt"))
		cli("platform", "install-cert", filepath.Join(hosts[i], "platform"), filepath.Join(orgs[i], "p.crt"))
		cli("host", "bundle", hosts[i])
		copyTo(filepath.Join(hosts[i], "bundle.json"), filepath.Join(assembler, id+".json"))
	}
	draft := filepath.Join(assembler, "draft.json")
	cli("genesis", "init", "--draft", draft, "--chain-id", "orgnet", "--kmg-threshold", "2", "--nog-threshold", "3", "--block-interval", "200ms")
	var bundles []string
	for i := hostCount; i >= 1; i-- {
		bundles = append(bundles, filepath.Join(assembler, strconv.Itoa(i)+".json"))
	}
	cli(append([]string{"genesis", "add", "--draft", draft}, bundles...)...)
	out := cli("genesis", "finalize", "--draft", draft, "--out", filepath.Join(assembler, "genesis.json"))
	hash := regexp.MustCompile(`genesis hash ([0-9a-f]{64})`).FindStringSubmatch(out)
	if hash == nil {
		t.Fatalf("finalize printed no hash:\n%s", out)
	}

	// The vendor signs the enclave binaries; two KMG members sign the release.
	rel := filepath.Join(base, "vendor", "release")
	for _, b := range []string{hostinit.NodeBinary, hostinit.AgentBinary, hostinit.DistributeBinary} {
		copyTo(filepath.Join(bins.dir, b), filepath.Join(rel, b))
	}
	signer := filepath.Join(base, "vendor", "signer.key")
	cli("keys", "gen", "--out", signer)
	for _, b := range []string{hostinit.NodeBinary, hostinit.AgentBinary} {
		cli("enclave", "sign", "--key", signer, "--product-id", "1", "--svn", "1", filepath.Join(rel, b))
	}
	verOut, err := exec.Command(filepath.Join(rel, hostinit.NodeBinary), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := strings.Fields(string(verOut))[len(strings.Fields(string(verOut)))-1]
	manifest := filepath.Join(rel, hostinit.ReleaseManifest)
	cli("release", "create", "--network", "orgnet", "--version", version,
		"--node", filepath.Join(rel, hostinit.NodeBinary), "--agent", filepath.Join(rel, hostinit.AgentBinary),
		"--distribute", filepath.Join(rel, hostinit.DistributeBinary), "--out", manifest)
	for _, org := range []string{hosts[0], hosts[2]} {
		cli("release", "sign", "--key", filepath.Join(org, "keys", "kmg.key"), manifest)
	}
	mrenclave := strings.TrimSpace(cli("enclave", "measure", filepath.Join(rel, hostinit.NodeBinary)))

	// Every host installs the genesis (checked against its own bundle) and
	// the release, then starts its agent.
	for i, h := range hosts {
		copyTo(filepath.Join(assembler, "genesis.json"), filepath.Join(h, "genesis.json"))
		out := cli("genesis", "verify", filepath.Join(h, "genesis.json"), "--bundle", filepath.Join(h, "bundle.json"), "--json")
		var v struct{ Hash string }
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Hash != hash[1] {
			t.Fatalf("host %d: genesis hash %q, want %s (%v)", i+1, v.Hash, hash[1], err)
		}
		entries, err := os.ReadDir(rel)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			copyTo(filepath.Join(rel, e.Name()), filepath.Join(h, "release", e.Name()))
		}
	}
	for _, h := range hosts {
		h := h
		agentBin := filepath.Join(h, "release", hostinit.AgentBinary)
		pidFile := filepath.Join(h, "agent.pid")
		t.Cleanup(func() {
			if t.Failed() {
				for _, log := range []string{"agent.log", "node.log"} {
					t.Logf("---- %s %s ----\n%s", h, log, tail(filepath.Join(h, "logs", log), 20))
				}
			}
			sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
			defer scancel()
			// The agent first: it would restart what it supervises.
			_ = proc.StopFromFile(sctx, pidFile, agentBin, 10*time.Second)
			_ = proc.StopFromFile(sctx, filepath.Join(h, "agent", "distribute.pid"), hostinit.DistributeBinary, 10*time.Second)
			_ = proc.StopFromFile(sctx, filepath.Join(h, "agent", "node.pid"), hostinit.NodeBinary, 10*time.Second)
		})
		if _, err := proc.StartDetached(agentBin, []string{"run", "--config", filepath.Join(h, "agent.json")}, nil, filepath.Join(h, "logs", "agent.log"), pidFile); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range hosts {
		awaitServing(ctx, t, i+1, filepath.Join(h, "data", "admin.sock"))
	}

	// A payment between two operators' test accounts, through node 2's
	// client API, checked on node 4.
	to := strings.TrimSpace(cli("keys", "show", filepath.Join(hosts[1], "keys", "account.key.pub")))
	conn := func(i int) []string {
		return []string{"--node", ports[2*i+1], "--root", filepath.Join(orgs[i], "root.crt"), "--mrenclave", mrenclave, "--chain-id", "orgnet"}
	}
	cli(append([]string{"pay", "--from", filepath.Join(hosts[0], "keys", "account.key"), "--to", to, "--amount", "7"}, conn(1)...)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := cli(append([]string{"balance", to}, conn(3)...)...)
		if strings.Contains(out, "balance 1000000007 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 4 does not show the payment: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Remote operator access: organisation i+1 reaches host 1 over TCP
	// with its own operator key (the one 'host init' made and the genesis
	// records as its node's operator).
	agentMR := strings.TrimSpace(cli("enclave", "measure", filepath.Join(rel, hostinit.AgentBinary)))
	remote := func(i int, addr, mr string, args ...string) (int, string) {
		t.Helper()
		code, out, err := teeupCLI(ctx, nil, append(args, "--host", addr, "--node-id", "1", "--chain-id", "orgnet",
			"--operator-key", filepath.Join(hosts[i], "keys", "operator.key"), "--root", filepath.Join(orgs[i], "root.crt"), mr)...)
		if err != nil {
			t.Fatal(err)
		}
		return code, out
	}
	nodeMR, agentMRFlag := "--mrenclave="+mrenclave, "--agent-mrenclave="+agentMR
	if code, out := remote(1, ports[8], nodeMR, "status"); code != 0 || !strings.Contains(out, "1 of chain orgnet") {
		t.Fatalf("organisation 2 reads host 1's status: exit %d\n%s", code, out)
	}
	if code, out := remote(1, ports[9], agentMRFlag, "upgrade", "status"); code != 0 || !strings.Contains(out, "on host 1") {
		t.Fatalf("organisation 2 reads host 1's agent: exit %d\n%s", code, out)
	}
	if code, out := remote(1, ports[8], nodeMR, "admin", "ingress", "close"); code == 0 || !strings.Contains(out, "may read but not write") {
		t.Fatalf("organisation 2 closes host 1's ingress: exit %d\n%s", code, out)
	}
	if code, out := remote(0, ports[8], nodeMR, "admin", "ingress", "close", "--reason", "org 1 maintenance"); code != 0 || !strings.Contains(out, "ingress closed") {
		t.Fatalf("organisation 1 closes its own ingress: exit %d\n%s", code, out)
	}
	if code, out := remote(0, ports[8], nodeMR, "admin", "ingress", "open"); code != 0 || !strings.Contains(out, "ingress open") {
		t.Fatalf("organisation 1 reopens its own ingress: exit %d\n%s", code, out)
	}
}

// awaitServing waits until the node behind an admin socket knows a leader
// and has committed past genesis.
func awaitServing(ctx context.Context, t *testing.T, id int, socket string) {
	t.Helper()
	c := nodeapi.NewAdminClient(socket)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		st, err := c.Status(ctx)
		if err == nil && st.Leader != 0 && st.Height > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node %d not serving: %v (status %+v)", id, err, st)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct free loopback addresses; each stays bound
// until all are found, so the kernel cannot give one twice.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out
}
