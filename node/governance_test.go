package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

const govChain = "gov-test"

func govKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func govPub(k ed25519.PrivateKey) string { return hex.EncodeToString(k.Public().(ed25519.PublicKey)) }

func govAddr(k ed25519.PrivateKey) ledger.Address {
	a, _ := ledger.AddressOf(k.Public().(ed25519.PublicKey))
	return a
}

var (
	govKMG   = []ed25519.PrivateKey{govKey(50), govKey(51)}
	govNOG   = []ed25519.PrivateKey{govKey(60), govKey(61), govKey(62)}
	govNodeK = govKey(101)
)

func govGenesis() *ledger.Genesis {
	return &ledger.Genesis{
		ChainID: govChain,
		Time:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Nodes:   []ledger.GenesisNode{{ID: 1, Name: "node-1", PeerAddr: "127.0.0.1:7001", ClientAddr: "127.0.0.1:8001"}},
		KMG:     release.Group{Keys: []string{govPub(govKMG[0]), govPub(govKMG[1])}, Threshold: 2},
		NOG:     release.Group{Keys: []string{govPub(govNOG[0]), govPub(govNOG[1]), govPub(govNOG[2])}, Threshold: 2},
	}
}

func nodeMR(version string) tee.Measurement { return sha256.Sum256([]byte("node " + version)) }

func govRelease(t *testing.T, version string) *release.SignedRelease {
	t.Helper()
	comp := func(role string) release.Component {
		m := tee.Measurement(sha256.Sum256([]byte(role + " " + version)))
		return release.Component{MREnclave: m, SHA256: m.String(), SignerID: tee.Measurement{1}, ProductID: 1, SVN: 1, URL: "https://example.com/" + role}
	}
	sr, err := release.New(release.Manifest{NetworkID: govChain, Version: version, Node: comp("node"), Agent: comp("agent"), CreatedAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range govKMG {
		if err := release.Sign(sr, k); err != nil {
			t.Fatal(err)
		}
	}
	return sr
}

// govLedger drives a ledger store as consensus would.
type govLedger struct {
	t     *testing.T
	s     *ledger.Store
	index uint64
	clock time.Time
}

func openGovLedger(t *testing.T, self tee.Measurement) *govLedger {
	t.Helper()
	key := ledger.LedgerKey{7}
	s, err := ledger.Open(t.TempDir(), ledger.Options{Genesis: govGenesis(), LedgerKey: key, SelfMeasurement: self})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l := &govLedger{t: t, s: s, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l.apply(&ledger.Command{Kind: ledger.CmdRegisterNode, Node: &ledger.NodeRecord{ID: 1, Key: govAddr(govNodeK)}})
	return l
}

func (l *govLedger) apply(cmd *ledger.Command) ledger.Result {
	l.t.Helper()
	l.index++
	res, err := l.s.Apply(l.index, cmd)
	if err != nil {
		l.t.Fatal(err)
	}
	if !res.Accepted {
		l.t.Fatalf("%s rejected: %s", cmd.Kind, res.Reason)
	}
	return res
}

func (l *govLedger) gov(key ed25519.PrivateKey, kind ledger.TxKind, payload []byte) {
	l.t.Helper()
	a, err := l.s.Account(govAddr(key))
	if err != nil {
		l.t.Fatal(err)
	}
	tx, err := ledger.NewGovernanceTx(govChain, kind, payload, a.Nonce+a.Pending+1, key)
	if err != nil {
		l.t.Fatal(err)
	}
	l.apply(&ledger.Command{Kind: ledger.CmdSubmitTx, Tx: tx})
}

func (l *govLedger) block() {
	l.t.Helper()
	l.clock = l.clock.Add(time.Second)
	blk, err := l.s.BuildBlock(1, govNodeK, l.clock, 0)
	if err != nil {
		l.t.Fatal(err)
	}
	l.apply(&ledger.Command{Kind: ledger.CmdBlock, Block: blk})
}

func (l *govLedger) head() uint64 {
	h, _ := l.s.Head()
	return h
}

// approveAndSchedule proposes, approves and schedules version at
// head + MinScheduleLead, and returns the activation height.
func (l *govLedger) approveAndSchedule(sr *release.SignedRelease) uint64 {
	l.t.Helper()
	raw, err := json.Marshal(sr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.gov(govNOG[0], ledger.TxProposeRelease, raw)
	l.block()
	hash, err := ledger.ManifestHash(sr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.gov(govNOG[1], ledger.TxApproveRelease, ledger.EncodeReleaseApproval(ledger.ReleaseApproval{Version: sr.Manifest.Version, ManifestHash: hash}))
	l.block()
	h := l.head() + ledger.MinScheduleLead
	for _, k := range govNOG[:2] {
		l.gov(k, ledger.TxScheduleUpgrade, ledger.EncodeUpgradeSchedule(ledger.UpgradeSchedule{Version: sr.Manifest.Version, ActivationHeight: h}))
	}
	l.block()
	return h
}

// testNode is a Node with just what the governance functions use.
func testNode(t *testing.T, l *govLedger, self tee.Measurement) *Node {
	t.Helper()
	ing, err := loadIngress(filepath.Join(t.TempDir(), "ingress.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &Node{
		cfg:      Config{IngressCloseBlocks: 3},
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		genesis:  govGenesis(),
		identity: tee.Identity{UniqueID: self},
		store:    l.s,
		ingress:  ing,
	}
}

func TestUpgradeHaltAndIngressOnAnOldNode(t *testing.T) {
	l := openGovLedger(t, nodeMR("1.0.0"))
	n := testNode(t, l, nodeMR("1.0.0"))
	if h, ok := n.upgradeHaltHeight(); ok || h != 0 {
		t.Fatalf("halt height %d %v without a schedule", h, ok)
	}
	if n.upgradeState() != nil {
		t.Fatal("upgrade state without a schedule")
	}
	n.checkUpgradeIngress()
	if !n.ingress.isOpen() {
		t.Fatal("ingress closed without a schedule")
	}

	h := l.approveAndSchedule(govRelease(t, "2.0.0"))
	if got, ok := n.upgradeHaltHeight(); !ok || got != h {
		t.Fatalf("halt height %d %v, want %d", got, ok, h)
	}
	if n.haltedAt(h-1) || !n.haltedAt(h) {
		t.Fatalf("haltedAt(%d)=%v haltedAt(%d)=%v", h-1, n.haltedAt(h-1), h, n.haltedAt(h))
	}
	want := nodeapi.UpgradeState{Version: "2.0.0", ActivationHeight: h, MREnclave: nodeMR("2.0.0"), IngressCloses: h - 3}
	if st := n.upgradeState(); st == nil || *st != want {
		t.Fatalf("upgrade state %+v, want %+v", st, want)
	}
	for l.head() < h-3 {
		n.checkUpgradeIngress()
		if !n.ingress.isOpen() {
			t.Fatalf("ingress closed at height %d, before %d", l.head(), h-3)
		}
		l.block()
	}
	n.checkUpgradeIngress()
	if n.ingress.isOpen() {
		t.Fatalf("ingress open at height %d", l.head())
	}
	if r := n.ingress.reason(); r != fmt.Sprintf("scheduled upgrade to 2.0.0 at height %d", h) {
		t.Fatalf("reason %q", r)
	}
}

func TestNewNodeContinuesAndKeepsIngress(t *testing.T) {
	l := openGovLedger(t, nodeMR("2.0.0"))
	n := testNode(t, l, nodeMR("2.0.0"))
	h := l.approveAndSchedule(govRelease(t, "2.0.0"))
	for l.head() < h+1 {
		l.block()
		n.checkUpgradeIngress()
	}
	if _, ok := n.upgradeHaltHeight(); ok || n.haltedAt(h+1) {
		t.Fatal("the node of the scheduled MRENCLAVE halts")
	}
	if !n.ingress.isOpen() {
		t.Fatal("the node of the scheduled MRENCLAVE closed ingress")
	}
	if st := n.upgradeState(); st == nil || !st.ThisNodeRuns || st.Version != "2.0.0" {
		t.Fatalf("upgrade state %+v", st)
	}
}

func TestReleasesAPI(t *testing.T) {
	l := openGovLedger(t, nodeMR("1.0.0"))
	n := testNode(t, l, nodeMR("1.0.0"))
	sr := govRelease(t, "2.0.0")
	h := l.approveAndSchedule(sr)
	l.gov(govNOG[2], ledger.TxAbortUpgrade, ledger.EncodeUpgradeAbort(ledger.UpgradeAbort{Version: "2.0.0", Reason: "wait"}))

	// The admin API over its unix socket, through the Go client.
	dir, err := os.MkdirTemp("", "gov")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.adminMux()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ac := nodeapi.NewAdminClient(sock)
	defer ac.Close()
	g, err := ac.Releases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := ledger.ManifestHash(sr)
	if g.ChainID != govChain || g.Quorum != 2 || g.Operators != 3 || g.Height != l.head() || len(g.Releases) != 1 || len(g.Approved) != 1 {
		t.Fatalf("governance %+v", g)
	}
	r := g.Releases[0]
	if r.Version != "2.0.0" || r.ManifestHash != hash.String() || r.NodeMREnclave != nodeMR("2.0.0") || r.ProposedAt != 1 ||
		r.ApprovedAt != 2 || !r.Approved() || len(r.Approvers) != 2 || r.Approvers[0] != govAddr(govNOG[0]).String() || g.Approved[0] != (nodeapi.Approval{Version: "2.0.0", Height: 2}) {
		t.Fatalf("release %+v, approved %+v", r, g.Approved)
	}
	back, err := release.Parse(r.Release)
	if err != nil {
		t.Fatalf("the served release does not parse: %v", err)
	}
	if err := back.Verify(govGenesis().KMG); err != nil {
		t.Fatalf("the served release does not verify: %v", err)
	}
	if s := g.Schedule; s == nil || s.Version != "2.0.0" || s.ActivationHeight != h || s.NodeMREnclave != nodeMR("2.0.0") || s.Reached || len(s.Approvers) != 2 {
		t.Fatalf("schedule %+v", g.Schedule)
	}
	if len(g.PendingAborts) != 1 || g.PendingAborts[0].Reason != "wait" || g.PendingAborts[0].Member != govAddr(govNOG[2]).String() {
		t.Fatalf("pending aborts %+v", g.PendingAborts)
	}
	if got := g.ApprovedReleases(); len(got) != 1 || got[0].Version != "2.0.0" {
		t.Fatalf("ApprovedReleases %+v", got)
	}

	// The client API serves it too, even with ingress closed.
	if err := n.ingress.set(false, "flag day"); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(n.clientMux())
	defer hs.Close()
	resp, err := http.Get(hs.URL + nodeapi.PathReleases)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cg nodeapi.Governance
	if err := json.NewDecoder(resp.Body).Decode(&cg); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("client API: HTTP %d, %v", resp.StatusCode, err)
	}
	if len(cg.Releases) != 1 || cg.Schedule == nil {
		t.Fatalf("client API governance %+v", cg)
	}
	// Payments are still gated, so the route above really bypassed the gate.
	resp2, err := http.Get(hs.URL + nodeapi.PathAccounts + "/" + govAddr(govNOG[0]).String())
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("account read with ingress closed: HTTP %d", resp2.StatusCode)
	}
	if !strings.Contains(n.ingress.reason(), "flag day") {
		t.Fatal("ingress reason lost")
	}
}

// TestFirstFor: a once-per-schedule step runs on the first call for a
// schedule only, and again for another schedule.
func TestFirstFor(t *testing.T) {
	var done atomic.Pointer[string]
	for i, tc := range []struct {
		key  string
		want bool
	}{{"2.0.0@90", true}, {"2.0.0@90", false}, {"2.0.0@120", true}, {"2.0.0@120", false}, {"3.0.0@200", true}} {
		if got := firstFor(&done, tc.key); got != tc.want {
			t.Fatalf("call %d (%s) = %v, want %v", i, tc.key, got, tc.want)
		}
	}
}
