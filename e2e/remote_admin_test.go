package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
)

// TestRemoteOperatorAccess runs a devnet whose nodes and agents also serve
// their admin APIs over TCP with mutual TLS (host N authorises operator-N)
// and drives them with the teeup CLI as operators on another machine would:
// operator 2 reads host 1's node and agent but every write it tries there
// is refused and changes nothing, operator 1 writes on its own host, a
// stranger reads nothing, a host addressed under another node id is
// refused, and 'teeup flagday plan' reaches every host over the remote
// API with one operator's key — refusing a topology that lists one host
// twice, and an entry that answers as another node.
func TestRemoteOperatorAccess(t *testing.T) {
	tn := startNetWith(t, devnet.UpOptions{Nodes: 2, RemoteAdmin: true, NoDistribute: true})
	remoteOperatorAccess(t, tn)
}

// TestRemoteOperatorAccessIsolated is TestRemoteOperatorAccess on an
// isolated devnet: every host in its own network namespace, the CLI
// outside dialing from the observer namespace, and 'teeup flagday plan'
// run inside the observer namespace, where the hosts are reachable only
// over the network (root only; skipped without namespaces).
func TestRemoteOperatorAccessIsolated(t *testing.T) {
	tn := startNetWith(t, devnet.UpOptions{Nodes: 2, RemoteAdmin: true, NoDistribute: true, Isolate: true, Subnet: netip.MustParsePrefix("10.79.0.0/24")})
	remoteOperatorAccess(t, tn)
}

func remoteOperatorAccess(t *testing.T, tn *testNet) {
	ctx := testCtx(t, 4*time.Minute)
	h1, h2 := tn.host(1), tn.host(2)
	if h1.AdminAddr == "" || h1.AgentAddr == "" {
		t.Fatalf("host 1 has no remote admin addresses: %+v", h1)
	}
	teeup := func(args ...string) (int, string) {
		t.Helper()
		code, out, err := teeupCLI(ctx, nil, args...)
		if err != nil {
			t.Fatalf("teeup %s: %v", strings.Join(args, " "), err)
		}
		return code, out
	}
	// as runs a teeup command against host id's remote API at addr as the
	// holder of key.
	as := func(key string, id int, addr string, args ...string) (int, string) {
		t.Helper()
		return teeup(append(args, "--devnet", tn.net.Dir, "--node-id", fmt.Sprint(id), "--host", addr, "--operator-key", key)...)
	}
	mustOK := func(what string, code int, out string) {
		t.Helper()
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", what, code, out)
		}
	}
	mustRefuse := func(what string, code int, out string, wants ...string) {
		t.Helper()
		if code == 0 {
			t.Fatalf("%s succeeded, want a refusal:\n%s", what, out)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: refusal does not say %q:\n%s", what, w, out)
			}
		}
		t.Logf("%s: %s", what, strings.TrimSpace(out))
	}
	ingressOf := func(id int) nodeapi.IngressState {
		t.Helper()
		return tn.status(ctx, id).Ingress
	}

	// Operator 2 reads host 1's node status over TCP.
	code, out := as("operator-2", 1, h1.AdminAddr, "status", "--json")
	mustOK("operator 2 reads host 1's status", code, out)
	var st nodeapi.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.NodeID != 1 || st.Height == 0 {
		t.Fatalf("status of host 1 as read by operator 2: %v\n%s", err, out)
	}
	// ... and its attestation matrix row (a read).
	code, out = as("operator-2", 1, h1.AdminAddr, "admin", "attest-peers")
	mustOK("operator 2 probes host 1's peers", code, out)

	// Operator 2's writes to host 1 are refused and change nothing.
	code, out = as("operator-2", 1, h1.AdminAddr, "admin", "ingress", "close", "--reason", "not yours")
	mustRefuse("operator 2 closes host 1's ingress", code, out, "not authorised", "may read but not write")
	if ing := ingressOf(1); ing != nodeapi.IngressOpen {
		t.Fatalf("host 1's ingress is %s after a refused write", ing)
	}
	code, out = as("operator-2", 1, h1.AdminAddr, "pay", "--admin", "--from", "operator-2", "--to", "user-1", "--amount", "1")
	mustRefuse("operator 2 pays through host 1's admin API", code, out, "not authorised")

	// Operator 1 writes on its own host.
	code, out = as("operator-1", 1, h1.AdminAddr, "admin", "ingress", "close", "--reason", "e2e remote maintenance")
	mustOK("operator 1 closes host 1's ingress", code, out)
	if ing := ingressOf(1); ing != nodeapi.IngressClosed {
		t.Fatalf("host 1's ingress is %s after operator 1 closed it", ing)
	}
	code, out = as("operator-1", 1, h1.AdminAddr, "pay", "--admin", "--from", "operator-1", "--to", "user-1", "--amount", "1")
	mustOK("operator 1 pays through host 1's admin API while ingress is closed", code, out)
	if !strings.Contains(out, "committed tx") {
		t.Fatalf("remote admin payment: %s", out)
	}
	code, out = as("operator-1", 1, h1.AdminAddr, "admin", "ingress", "open")
	mustOK("operator 1 reopens host 1's ingress", code, out)
	if ing := ingressOf(1); ing != nodeapi.IngressOpen {
		t.Fatalf("host 1's ingress is %s after operator 1 reopened it", ing)
	}

	// A stranger's key reads nothing; a host addressed as another node is
	// refused before anything is sent.
	code, out = as("user-1", 1, h1.AdminAddr, "status")
	mustRefuse("a stranger reads host 1", code, out, "not authorised", "neither an operator")
	code, out = as("operator-1", 2, h1.AdminAddr, "status")
	mustRefuse("host 1 addressed as node 2", code, out, "another node")
	// The agent's API is not the node's: a node client refuses it.
	code, out = as("operator-1", 1, h1.AgentAddr, "status")
	mustRefuse("host 1's agent API addressed as its node", code, out, "not an attested enclave of an expected measurement")

	// The agent: operator 2 reads host 1's agent, cannot act there;
	// operator 1 can.
	code, out = as("operator-2", 1, h1.AgentAddr, "upgrade", "status", "--json")
	mustOK("operator 2 reads host 1's agent", code, out)
	if !strings.Contains(out, `"node_id": 1`) {
		t.Fatalf("agent status: %s", out)
	}
	manifest := layout.Release(tn.net.Release.Dir).Manifest()
	code, out = as("operator-2", 1, h1.AgentAddr, "upgrade", "stage", manifest)
	mustRefuse("operator 2 stages a release on host 1's agent", code, out, "not authorised")
	code, out = as("operator-2", 1, h1.AgentAddr, "upgrade", "rollback", "--reason", "not yours")
	mustRefuse("operator 2 rolls host 1's agent back", code, out, "not authorised")
	code, out = as("operator-1", 1, h1.AgentAddr, "upgrade", "stage", manifest)
	mustOK("operator 1 stages the release on its agent", code, out)
	code, out = as("operator-1", 2, h1.AgentAddr, "upgrade", "status")
	mustRefuse("host 1's agent addressed as host 2's", code, out, "another node")

	// flagday plan over the remote API with operator 1's key alone.
	topo := flagday.Topology{
		ChainID:         tn.net.ChainID,
		OperatorKeys:    []string{tn.net.KeyPath("operator-1"), tn.net.KeyPath("operator-2")},
		OperatorKey:     tn.net.KeyPath("operator-1"),
		Root:            tn.net.RootCert(),
		NodeMREnclaves:  tn.net.AcceptedMeasurements(),
		AgentMREnclaves: []string{tn.net.Release.AgentMREnclave.String()},
		Hosts: []flagday.Host{
			{ID: 1, AdminAddr: h1.AdminAddr, AgentAddr: h1.AgentAddr},
			{ID: 2, AdminAddr: h2.AdminAddr, AgentAddr: h2.AgentAddr},
		},
	}
	writeTopo := func(name string, top flagday.Topology) string {
		t.Helper()
		raw, err := json.MarshalIndent(top, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The observer runs where the hosts are reachable only over the
	// network: on an isolated devnet, inside its observer namespace.
	observer := func(args ...string) (int, string) {
		t.Helper()
		if iso := tn.net.Isolation; iso != nil {
			args = append([]string{"ip", "netns", "exec", iso.Observer, filepath.Join(bins.dir, "teeup")}, args...)
			out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return ee.ExitCode(), string(out)
			}
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
			return 0, string(out)
		}
		return teeup(args...)
	}
	code, out = observer("flagday", "plan", "--version", "9.9.9", "--topology", writeTopo("remote.json", topo))
	mustOK("flagday plan over the remote API", code, out)
	if strings.Contains(out, "UNREACHABLE") || !strings.Contains(out, "not proposed") {
		t.Fatalf("plan:\n%s", out)
	}
	twice := topo
	twice.Hosts = []flagday.Host{topo.Hosts[0], {ID: 2, AdminAddr: h1.AdminAddr, AgentAddr: h2.AgentAddr}}
	code, out = observer("flagday", "plan", "--version", "9.9.9", "--topology", writeTopo("twice.json", twice))
	mustRefuse("a topology listing host 1 twice", code, out, "the same host twice")
	if !strings.HasPrefix(h1.AdminAddr, "127.0.0.1:") {
		return // an isolated host's address has no other spelling to try
	}
	// Another spelling of host 1's address passes the static check; host 1
	// then proves it is node 1, not node 2.
	alias := topo
	alias.Hosts = []flagday.Host{topo.Hosts[0], {ID: 2, AdminAddr: strings.Replace(h1.AdminAddr, "127.0.0.1", "localhost", 1), AgentAddr: h2.AgentAddr}}
	code, out = observer("flagday", "plan", "--version", "9.9.9", "--topology", writeTopo("alias.json", alias))
	mustRefuse("a topology entry that answers as another node", code, out, "host 2 UNREACHABLE", "another node", "unreachable")
}
