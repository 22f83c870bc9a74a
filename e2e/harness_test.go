package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
)

// bins is where TestMain built the binaries. TestMain writes it once,
// before any test runs; tests only read it.
var bins struct {
	// dir holds teeup-node, teeup-agent, teeup-distribute and teeup.
	dir string
	// impostor is a teeup-node built with another version string, so its
	// MRENCLAVE (the SHA-256 of the binary) differs.
	impostor string
}

// impostorVersion is stamped into the impostor node binary.
const impostorVersion = "impostor"

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "teeup-e2e-bin")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	bins.dir = dir
	bins.impostor = filepath.Join(dir, "impostor", devnet.NodeBin)
	return m.Run()
}

// testBuildTags are the build tags of every binary the tests run: fault
// injection (TEEUP_FAULTS) is compiled in only under "faults".
const testBuildTags = "faults"

// buildBinaries builds every teeup program into dir, and an impostor
// teeup-node into dir/impostor, with fault injection compiled in.
func buildBinaries(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	builds := [][]string{
		{"build", "-trimpath", "-tags", testBuildTags, "-o", dir + string(filepath.Separator), "./cmd/..."},
		{"build", "-trimpath", "-tags", testBuildTags, "-ldflags", "-X github.com/teeup/teeup/internal/buildinfo.Version=" + impostorVersion,
			"-o", filepath.Join(dir, "impostor", devnet.NodeBin), "./cmd/teeup-node"},
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(mod), nil
}

// maxSocketPath bounds the longest unix socket path a devnet creates
// (DIR/hosts/node-N/data/handover.sock): the kernel limit is 108 bytes.
const maxSocketPath = 100

// devnetDir returns a fresh directory for a devnet: t.TempDir() when the
// sockets inside fit, otherwise a shorter one under the system temp dir.
func devnetDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	longest := layout.Node(filepath.Join(dir, "hosts", "node-7", "data")).HandoverSocket()
	if len(longest) <= maxSocketPath {
		return dir
	}
	short, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	return short
}

// testNet is a running devnet with clients for every node.
type testNet struct {
	t       *testing.T
	net     *devnet.Network
	clients []*nodeapi.Client      // by host index
	admins  []*nodeapi.AdminClient // by host index
}

// startNet starts a devnet of n nodes (without agents) that is stopped when
// the test ends; on failure the nodes' last log lines are printed.
func startNet(t *testing.T, nodes int) *testNet {
	t.Helper()
	return startNetWith(t, devnet.UpOptions{Nodes: nodes, NoAgents: true})
}

// startNetWith starts a devnet laid out by opts (its directory and binaries
// chosen here) that is stopped when the test ends — with opts.Isolate its
// namespaces removed too; on failure the nodes' last log lines are printed.
func startNetWith(t *testing.T, opts devnet.UpOptions) *testNet {
	t.Helper()
	if opts.Isolate {
		needNetns(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts.Dir, opts.BinDir = devnetDir(t), bins.dir
	n, err := devnet.Up(ctx, opts)
	if n != nil {
		tn := &testNet{t: t, net: n}
		t.Cleanup(tn.stop)
		if err != nil {
			t.Fatalf("devnet up: %v", err)
		}
		tn.dial()
		return tn
	}
	t.Fatalf("devnet up: %v", err)
	return nil
}

// dial makes a client and an admin client for every node (the clients
// dial from the observer namespace on an isolated devnet).
func (tn *testNet) dial() {
	tn.t.Helper()
	for i := range tn.net.Hosts {
		h := &tn.net.Hosts[i]
		c, err := tn.net.DialNode(context.Background(), h)
		if err != nil {
			tn.t.Fatalf("dial node %d: %v", h.ID, err)
		}
		tn.clients = append(tn.clients, c)
		tn.admins = append(tn.admins, nodeapi.NewAdminClient(h.AdminSocket))
	}
}

// stop stops every process; after a failure it prints the logs' tails.
func (tn *testNet) stop() {
	if tn.t.Failed() {
		for _, h := range tn.net.Hosts {
			for _, name := range []string{"node.log", "distribute.log"} {
				tn.t.Logf("---- %s %s (last lines) ----\n%s", h.Name, name, tail(filepath.Join(h.LogDir, name), 25))
			}
		}
	}
	for i := range tn.clients {
		tn.clients[i].Close()
		tn.admins[i].Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := devnet.Down(ctx, tn.net); err != nil {
		tn.t.Errorf("devnet down: %v", err)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// host returns host id (1-based).
func (tn *testNet) host(id int) *devnet.Host { return &tn.net.Hosts[id-1] }

// nodes returns the client API of the given hosts (1-based), or of every
// host, as loadgen nodes.
func (tn *testNet) nodes(ids ...int) []loadgen.Node {
	if len(ids) == 0 {
		for i := range tn.clients {
			ids = append(ids, i+1)
		}
	}
	out := make([]loadgen.Node, 0, len(ids))
	for _, id := range ids {
		out = append(out, tn.clients[id-1])
	}
	return out
}

// key reads a devnet key by name ("user-3").
func (tn *testNet) key(name string) ed25519.PrivateKey {
	tn.t.Helper()
	k, err := keyfile.ReadPrivate(tn.net.KeyPath(name))
	if err != nil {
		tn.t.Fatal(err)
	}
	return k
}

// users returns the keys of user-1..user-n.
func (tn *testNet) users(n int) []ed25519.PrivateKey {
	out := make([]ed25519.PrivateKey, n)
	for i := range out {
		out[i] = tn.key(fmt.Sprintf("user-%d", i+1))
	}
	return out
}

// addresses returns the addresses of keys.
func addresses(keys []ed25519.PrivateKey) []ledger.Address {
	out := make([]ledger.Address, len(keys))
	for i, k := range keys {
		copy(out[i][:], k.Public().(ed25519.PublicKey))
	}
	return out
}

// load returns a loadgen config paying amount 3 among user-1..user-8 over
// the given nodes (default: all).
func (tn *testNet) load(payments int, ids ...int) loadgen.Config {
	users := tn.users(devnet.UserCount)
	return loadgen.Config{
		Nodes: tn.nodes(ids...), ChainID: tn.net.ChainID, Accounts: users, Recipients: addresses(users),
		Payments: payments, Amount: 3, MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second,
	}
}

// runLoad runs cfg and fails the test unless every payment was
// acknowledged.
func (tn *testNet) runLoad(ctx context.Context, cfg loadgen.Config) *loadgen.Result {
	tn.t.Helper()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		tn.t.Fatalf("loadgen: %v", err)
	}
	if res.Rejected != 0 || len(res.Unresolved) != 0 {
		tn.t.Fatalf("loadgen: %d acknowledged, %d rejected, %d unresolved; errors %v", res.Acknowledged, res.Rejected, len(res.Unresolved), res.Errors)
	}
	tn.t.Logf("loadgen: %d payments acknowledged in %s (%.0f/s), p50 %s p99 %s, %d retries",
		res.Acknowledged, res.Elapsed.Round(time.Millisecond), res.Throughput(), res.Percentile(50), res.Percentile(99), res.Retries)
	return res
}

// eventually polls cond every 100ms until it holds or timeout passes; cond
// returns whether it holds and, if not, what it saw.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s (last: %s)", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// heads returns every reachable node's head, by host index.
func (tn *testNet) heads(ctx context.Context, ids ...int) (map[int]*nodeapi.Head, error) {
	if len(ids) == 0 {
		for i := range tn.admins {
			ids = append(ids, i+1)
		}
	}
	out := map[int]*nodeapi.Head{}
	for _, id := range ids {
		h, err := tn.admins[id-1].Head(ctx)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", id, err)
		}
		out[id] = h
	}
	return out, nil
}

// waitHeight waits until every given node (default: all) has committed
// height h.
func (tn *testNet) waitHeight(ctx context.Context, h uint64, ids ...int) {
	tn.t.Helper()
	eventually(tn.t, 60*time.Second, fmt.Sprintf("every node at height ≥ %d", h), func() (bool, string) {
		hs, err := tn.heads(ctx, ids...)
		if err != nil {
			return false, err.Error()
		}
		for id, head := range hs {
			if head.Height < h {
				return false, fmt.Sprintf("node %d at %d", id, head.Height)
			}
		}
		return true, ""
	})
}

// waitCurrent waits until the given nodes (1-based) report that they are
// current with the network (not catching up), and so serve clients.
func (tn *testNet) waitCurrent(ctx context.Context, ids ...int) {
	tn.t.Helper()
	for _, id := range ids {
		eventually(tn.t, 90*time.Second, fmt.Sprintf("node %d to be current", id), func() (bool, string) {
			st, err := tn.admins[id-1].Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			return st.Sync.State == nodeapi.SyncCurrent, st.Sync.Reason
		})
	}
}

// minHeight returns the lowest head among the given nodes (default: all).
func (tn *testNet) minHeight(ctx context.Context, ids ...int) uint64 {
	tn.t.Helper()
	hs, err := tn.heads(ctx, ids...)
	if err != nil {
		tn.t.Fatal(err)
	}
	low := ^uint64(0)
	for _, h := range hs {
		low = min(low, h.Height)
	}
	return low
}

// checkSameChain fetches blocks 0..upTo from every given node (default:
// all) through the admin API and fails unless all nodes hold the same
// bytes at every height, each block's hash is the one its node reports,
// and each block links to the previous one.
func (tn *testNet) checkSameChain(ctx context.Context, upTo uint64, ids ...int) {
	tn.t.Helper()
	if len(ids) == 0 {
		for i := range tn.admins {
			ids = append(ids, i+1)
		}
	}
	var prev ledger.Hash
	for h := uint64(0); h <= upTo; h++ {
		var ref []byte
		var refHash string
		for _, id := range ids {
			b, err := tn.admins[id-1].Block(ctx, h)
			if err != nil {
				tn.t.Fatalf("node %d block %d: %v", id, h, err)
			}
			raw, err := nodeapiRaw(b)
			if err != nil {
				tn.t.Fatalf("node %d block %d: %v", id, h, err)
			}
			blk, err := ledger.DecodeBlock(raw)
			if err != nil {
				tn.t.Fatalf("node %d block %d: decode: %v", id, h, err)
			}
			if got := blk.Hash().String(); got != b.Hash || blk.Header.Height != h {
				tn.t.Fatalf("node %d block %d: bytes hash to %s at height %d, node reports %s", id, h, got, blk.Header.Height, b.Hash)
			}
			if h > 0 && blk.Header.PrevHash != prev {
				tn.t.Fatalf("node %d block %d: prev hash %s, block %d has hash %s", id, h, blk.Header.PrevHash, h-1, prev)
			}
			if ref == nil {
				ref, refHash = raw, b.Hash
				continue
			}
			if !bytes.Equal(raw, ref) {
				tn.t.Fatalf("block %d differs: node %d has hash %s, node %d has %s", h, ids[0], refHash, id, b.Hash)
			}
		}
		prev, _ = ledger.ParseHash(refHash)
	}
}

// nodeapiRaw decodes a block's raw encoding.
func nodeapiRaw(b *nodeapi.Block) ([]byte, error) {
	if b.Raw == "" {
		return nil, fmt.Errorf("no raw encoding")
	}
	raw, err := hex.DecodeString(b.Raw)
	if err != nil {
		return nil, fmt.Errorf("raw encoding: %w", err)
	}
	return raw, nil
}

// genesisAccounts returns the addresses of every genesis account.
func (tn *testNet) genesisAccounts() []ledger.Address {
	tn.t.Helper()
	g, err := ledger.LoadGenesis(tn.net.GenesisPath())
	if err != nil {
		tn.t.Fatal(err)
	}
	out := make([]ledger.Address, 0, len(g.Accounts))
	for _, a := range g.Accounts {
		out = append(out, a.Address)
	}
	return out
}

// balances reads accounts from one node's admin API.
func (tn *testNet) balances(ctx context.Context, id int, addrs []ledger.Address) map[ledger.Address]nodeapi.Account {
	tn.t.Helper()
	out := make(map[ledger.Address]nodeapi.Account, len(addrs))
	for _, a := range addrs {
		acct, err := tn.admins[id-1].Account(ctx, a.String())
		if err != nil {
			tn.t.Fatalf("node %d account %s: %v", id, a, err)
		}
		out[a] = *acct
	}
	return out
}

// logContains reports whether a log file has a line containing every one
// of parts.
func logContains(path string, parts ...string) bool { return logContainsAfter(path, 0, parts...) }

// logContainsAfter reports whether a log file, from byte offset on, has a
// line containing every one of parts.
func logContainsAfter(path string, offset int64, parts ...string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		all := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// logSize returns a log file's current size (0 if it does not exist).
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// countOccurrences counts how many times s occurs in a log file.
func countOccurrences(path, s string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(raw, []byte(s))
}

// testCtx returns a context for a test's network calls.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
