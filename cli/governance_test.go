package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

const govTestChain = "gov-cli"

// fakeNode serves the admin API paths the governance commands use, backed
// by a real ledger: a submitted transaction is admitted, then committed in
// a block, once batch transactions wait in the pool (at once if batch ≤ 1).
type fakeNode struct {
	mu      sync.Mutex
	changed *sync.Cond // on mu: broadcast after every admission and block
	s       *ledger.Store
	index   uint64
	clock   time.Time
	nodeKey ed25519.PrivateKey
	batch   int
	// lateReplies makes the next submissions commit but answer as a node
	// whose wait for the block timed out (504, CodeTimeout).
	lateReplies int
	// stall makes the next submission admitted but never committed,
	// answered with a timeout.
	stall bool
}

// answerLate makes the next n submissions time out after committing.
func (f *fakeNode) answerLate(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lateReplies = n
}

// stallNext makes the next submission wait in the pool forever.
func (f *fakeNode) stallNext() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stall = true
}

// waitPool blocks until n transactions wait in the pool.
func (f *fakeNode) waitPool(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.s.PoolSize() < n {
		f.changed.Wait()
	}
}

func (f *fakeNode) setBatch(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batch = n
}

func (f *fakeNode) apply(cmd *ledger.Command) (ledger.Result, error) {
	f.index++
	return f.s.Apply(f.index, cmd)
}

func (f *fakeNode) handler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(w http.ResponseWriter, status int, code, msg string) {
		reply(w, status, nodeapi.Error{Code: code, Message: msg})
	}
	mux.HandleFunc("GET "+nodeapi.PathAccounts+"/{addr}", func(w http.ResponseWriter, r *http.Request) {
		addr, err := ledger.ParseAddress(r.PathValue("addr"))
		if err != nil {
			fail(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error())
			return
		}
		a, err := f.s.Account(addr)
		if err != nil {
			fail(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error())
			return
		}
		reply(w, http.StatusOK, nodeapi.Account{Address: addr.String(), Balance: a.Balance, Nonce: a.Nonce + a.Pending})
	})
	mux.HandleFunc("POST "+nodeapi.PathAdminTx, func(w http.ResponseWriter, r *http.Request) {
		var req nodeapi.SubmitRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error())
			return
		}
		raw, err := hex.DecodeString(req.Tx)
		if err != nil {
			fail(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error())
			return
		}
		tx, err := ledger.DecodeTx(raw)
		if err != nil {
			fail(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error())
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		res, err := f.apply(&ledger.Command{Kind: ledger.CmdSubmitTx, Tx: tx})
		if err != nil {
			fail(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error())
			return
		}
		if !res.Accepted {
			reply(w, http.StatusUnprocessableEntity, nodeapi.Error{Code: nodeapi.CodeRejected, Message: "rejected: " + res.Reason, TxID: tx.ID().String(), TxCode: string(res.Code)})
			return
		}
		f.changed.Broadcast()
		timedOut := func() {
			fail(w, http.StatusGatewayTimeout, nodeapi.CodeTimeout, "not committed in time; query the transaction status before resubmitting")
		}
		if f.stall {
			f.stall = false
			timedOut()
			return
		}
		if f.s.PoolSize() < f.batch {
			// Another submitter's request builds the block.
			for st, _, _ := f.s.TxStatus(tx.ID()); st.State == ledger.StatePending; st, _, _ = f.s.TxStatus(tx.ID()) {
				f.changed.Wait()
			}
			st, _, _ := f.s.TxStatus(tx.ID())
			reply(w, http.StatusOK, nodeapi.Receipt{TxID: tx.ID().String(), Status: st.State, Height: st.Height, Code: string(st.Code)})
			return
		}
		f.clock = f.clock.Add(time.Second)
		blk, err := f.s.BuildBlock(1, f.nodeKey, f.clock, 0)
		if err == nil {
			res, err = f.apply(&ledger.Command{Kind: ledger.CmdBlock, Block: blk})
		}
		if err != nil || !res.Accepted {
			fail(w, http.StatusInternalServerError, nodeapi.CodeInternal, fmt.Sprintf("block: %v %s", err, res.Reason))
			return
		}
		f.changed.Broadcast()
		if f.lateReplies > 0 {
			f.lateReplies--
			timedOut()
			return
		}
		st, _, _ := f.s.TxStatus(tx.ID())
		reply(w, http.StatusOK, nodeapi.Receipt{TxID: tx.ID().String(), Status: ledger.StateCommitted, Height: res.Height, Code: string(st.Code)})
	})
	mux.HandleFunc("GET "+nodeapi.PathTx+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := ledger.ParseHash(r.PathValue("id"))
		if err != nil {
			fail(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error())
			return
		}
		st, ok, err := f.s.TxStatus(id)
		if err != nil || !ok {
			fail(w, http.StatusNotFound, nodeapi.CodeNotFound, "unknown transaction")
			return
		}
		reply(w, http.StatusOK, nodeapi.TxStatus{TxID: id.String(), Status: st.State, Height: st.Height, Code: string(st.Code), Reason: st.Reason})
	})
	mux.HandleFunc("GET "+nodeapi.PathReleases, func(w http.ResponseWriter, r *http.Request) {
		v, err := f.s.Governance()
		if err != nil {
			fail(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error())
			return
		}
		reply(w, http.StatusOK, fakeGovernanceJSON(v))
	})
	return mux
}

// fakeGovernanceJSON converts the fields the CLI reads (the node's own
// conversion is tested in package node).
func fakeGovernanceJSON(v *ledger.GovernanceView) *nodeapi.Governance {
	addrs := func(as []ledger.Address) []string {
		out := make([]string, len(as))
		for i, a := range as {
			out[i] = a.String()
		}
		return out
	}
	g := &nodeapi.Governance{ChainID: govTestChain, Height: v.Height, Quorum: v.Quorum, Operators: v.Operators, RunningRelease: v.Running}
	for _, r := range v.Releases {
		g.Releases = append(g.Releases, nodeapi.ReleaseInfo{Version: r.Version, ManifestHash: r.ManifestHash.String(),
			NodeMREnclave: r.NodeMREnclave(), ProposedAt: r.ProposedAt, Approvers: addrs(r.Approvers), ApprovedAt: r.ApprovedAt, Release: r.Raw})
		if r.Approved() {
			g.Approved = append(g.Approved, nodeapi.Approval{Version: r.Version, Height: r.ApprovedAt})
		}
	}
	if s := v.Schedule; s != nil {
		g.Schedule = &nodeapi.ScheduleInfo{Version: s.Version, NodeMREnclave: s.NodeMREnclave, ActivationHeight: s.ActivationHeight,
			ScheduledAt: s.ScheduledAt, Approvers: addrs(s.Approvers), Reached: s.Reached(v.Height)}
		for _, a := range v.AbortVotes {
			g.PendingAborts = append(g.PendingAborts, nodeapi.AbortVote{Member: a.Member.String(), Reason: a.Reason})
		}
	}
	for _, s := range v.ScheduleVotes {
		g.PendingSchedules = append(g.PendingSchedules, nodeapi.ScheduleVote{Member: s.Member.String(), Version: s.Version, ActivationHeight: s.ActivationHeight})
	}
	for _, r := range v.RollbackVotes {
		g.PendingRollbacks = append(g.PendingRollbacks, nodeapi.RollbackVote{Member: r.Member.String(), From: r.From, To: r.To})
	}
	for _, a := range v.Aborts {
		g.Aborts = append(g.Aborts, nodeapi.AbortInfo{Version: a.Version, ActivationHeight: a.ActivationHeight, Height: a.Height, Reason: a.Reason, Approvers: addrs(a.Approvers)})
	}
	for _, r := range v.Rollbacks {
		g.Rollbacks = append(g.Rollbacks, nodeapi.RollbackInfo{From: r.From, To: r.To, Height: r.Height, Approvers: addrs(r.Approvers)})
	}
	return g
}

// govFixture is a fake node on an admin socket inside a minimal devnet
// directory holding the KMG and NOG keys and two signed release files.
type govFixture struct {
	dir, socket string
	node        *fakeNode
	releases    map[string]string // version → signed release file
}

func newGovFixture(t *testing.T, edits ...func(*ledger.Genesis)) *govFixture {
	t.Helper()
	// A short directory: unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "govcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fx := &govFixture{dir: dir, socket: filepath.Join(dir, "admin.sock"), releases: map[string]string{}}
	keys := map[string]ed25519.PrivateKey{}
	for _, name := range []string{"kmg-1", "kmg-2", "nog-1", "nog-2", "nog-3", "user-1"} {
		p := filepath.Join(dir, "keys", name+".key")
		if _, err := keyfile.Generate(p); err != nil {
			t.Fatal(err)
		}
		k, err := keyfile.ReadPrivate(p)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = k
	}
	pub := func(name string) string { return hex.EncodeToString(keys[name].Public().(ed25519.PublicKey)) }
	g := &ledger.Genesis{
		ChainID: govTestChain,
		Time:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Nodes:   []ledger.GenesisNode{{ID: 1, Name: "node-1", PeerAddr: "127.0.0.1:7001", ClientAddr: "127.0.0.1:8001"}},
		KMG:     release.Group{Keys: []string{pub("kmg-1"), pub("kmg-2")}, Threshold: 2},
		NOG:     release.Group{Keys: []string{pub("nog-1"), pub("nog-2"), pub("nog-3")}, Threshold: 2},
	}
	for _, e := range edits {
		e(g)
	}
	s, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Genesis: g, LedgerKey: ledger.LedgerKey{3}, SelfMeasurement: tee.Measurement{1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	node := &fakeNode{s: s, clock: g.Time, nodeKey: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))}
	node.changed = sync.NewCond(&node.mu)
	fx.node = node
	nodeAddr, _ := ledger.AddressOf(node.nodeKey.Public().(ed25519.PublicKey))
	if res, err := node.apply(&ledger.Command{Kind: ledger.CmdRegisterNode, Node: &ledger.NodeRecord{ID: 1, Key: nodeAddr}}); err != nil || !res.Accepted {
		t.Fatalf("register: %v %s", err, res.Reason)
	}
	ln, err := net.Listen("unix", fx.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: node.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	// The devnet description commands read with --devnet.
	dn := fmt.Sprintf(`{"chain_id":%q,"hosts":[{"id":1,"admin_socket":%q}]}`, govTestChain, fx.socket)
	if err := os.WriteFile(filepath.Join(dir, "devnet.json"), []byte(dn), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"2.0.0", "3.0.0"} {
		fx.releases[v] = fx.writeRelease(t, v, "", keys["kmg-1"], keys["kmg-2"])
	}
	return fx
}

// writeRelease writes a release file of version signed by signers.
func (fx *govFixture) writeRelease(t *testing.T, version, notes string, signers ...ed25519.PrivateKey) string {
	t.Helper()
	comp := func(role string) release.Component {
		m := tee.Measurement{byte(len(role)), version[0]}
		return release.Component{MREnclave: m, SHA256: m.String(), SignerID: tee.Measurement{9}, ProductID: 1, SVN: 1, URL: "file:///opt/" + role}
	}
	sr, err := release.New(release.Manifest{NetworkID: govTestChain, Version: version, Node: comp("node"), Agent: comp("agent"), Notes: notes, CreatedAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range signers {
		if err := release.Sign(sr, k); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(fx.dir, fmt.Sprintf("release-%s-%d.json", version, len(notes)))
	if err := sr.Save(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// run runs 'teeup release ARGS... --devnet DIR --admin'.
func (fx *govFixture) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runRelease(t, append(args, "--devnet", fx.dir, "--admin")...)
}

func (fx *govFixture) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := fx.run(t, args...)
	if err != nil {
		t.Fatalf("teeup release %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (fx *govFixture) governance(t *testing.T) *nodeapi.Governance {
	t.Helper()
	out := fx.mustRun(t, "list", "--json")
	var g nodeapi.Governance
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	return &g
}

func wantContains(t *testing.T, out string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Fatalf("output lacks %q:\n%s", p, out)
		}
	}
}

func TestReleaseGovernanceCommands(t *testing.T) {
	fx := newGovFixture(t)

	out := fx.mustRun(t, "propose", fx.releases["2.0.0"], "--key", "nog-1")
	wantContains(t, out, "proposed release 2.0.0", "1 of quorum 2 approvals: not approved yet")

	// The manifest hash is taken from the chain.
	out = fx.mustRun(t, "approve", "2.0.0", "--key", "nog-2")
	wantContains(t, out, "approved release 2.0.0", "2 of quorum 2 approvals: APPROVED at height 2")

	// A third approval from the checked file.
	out = fx.mustRun(t, "approve", "2.0.0", "--key", "nog-3", "--manifest", fx.releases["2.0.0"])
	wantContains(t, out, "3 of quorum 2 approvals: APPROVED at height 2")

	g := fx.governance(t)
	if len(g.Releases) != 1 || len(g.Approved) != 1 || g.Approved[0].Version != "2.0.0" || len(g.Releases[0].Approvers) != 3 {
		t.Fatalf("governance after approvals %+v", g)
	}

	h := g.Height + ledger.MinScheduleLead + 5
	hs := fmt.Sprint(h)
	out = fx.mustRun(t, "schedule", "2.0.0", "--height", hs, "--key", "nog-1")
	wantContains(t, out, "vote to schedule release 2.0.0 at height "+hs+" recorded", "1 of quorum 2 votes")
	out = fx.mustRun(t, "schedule", "2.0.0", "--height", hs, "--key", "nog-3")
	wantContains(t, out, "upgrade to release 2.0.0 SCHEDULED at height "+hs, "2 of quorum 2 votes")

	out = fx.mustRun(t, "list")
	wantContains(t, out, "chain gov-cli", "quorum 2 of 3", "2.0.0", "3/2", "schedule: release 2.0.0 at height "+hs+" (pending)")

	out = fx.mustRun(t, "abort", "2.0.0", "--reason", "node 3 does not attest", "--key", "nog-2")
	wantContains(t, out, "vote to abort the upgrade to 2.0.0 recorded", "1 of quorum 2 votes")
	out = fx.mustRun(t, "abort", "2.0.0", "--reason", "agreed", "--key", "nog-1")
	wantContains(t, out, "upgrade to 2.0.0 (activation height "+hs+") ABORTED", "node 3 does not attest")

	fx.mustRun(t, "propose", fx.releases["3.0.0"], "--key", "nog-2")
	fx.mustRun(t, "approve", "3.0.0", "--key", "nog-3")
	out = fx.mustRun(t, "approve-rollback", "--from", "3.0.0", "--to", "2.0.0", "--key", "nog-1")
	wantContains(t, out, "vote for the rollback from 3.0.0 to 2.0.0 recorded", "1 of quorum 2 votes")
	out = fx.mustRun(t, "approve-rollback", "--from", "3.0.0", "--to", "2.0.0", "--key", "nog-2", "--json")
	var res governanceTx
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Receipt == nil || res.Governance == nil || !res.Governance.RollbackAllowed("3.0.0", "2.0.0") {
		t.Fatalf("approve-rollback --json: %v\n%s", err, out)
	}

	out = fx.mustRun(t, "list")
	wantContains(t, out, "schedule: none", "aborted: release 2.0.0", "rollback allowed: 3.0.0 -> 2.0.0")
}

func TestReleaseGovernanceRejections(t *testing.T) {
	fx := newGovFixture(t)
	fx.mustRun(t, "propose", fx.releases["2.0.0"], "--key", "nog-1")
	other := fx.writeRelease(t, "2.0.0", "another manifest of the same version")
	third := fx.writeRelease(t, "2.1.0", "")
	cases := []struct {
		name string
		args []string
		want string      // a refusal by the CLI itself: its message
		code ledger.Code // a rejection by the ledger: its code
	}{
		{"propose without a key", []string{"propose", fx.releases["3.0.0"]}, "--key NOG_KEY is required", ""},
		{"propose a missing file", []string{"propose", filepath.Join(fx.dir, "nope.json"), "--key", "nog-1"}, "load release", ""},
		{"propose by a non-member", []string{"propose", fx.releases["3.0.0"], "--key", "user-1"}, "", ledger.CodeNotMember},
		{"propose an unsigned release", []string{"propose", third, "--key", "nog-1"}, "", ledger.CodeBadRelease},
		{"propose twice", []string{"propose", fx.releases["2.0.0"], "--key", "nog-2"}, "", ledger.CodeDuplicate},
		{"propose with a missing key file", []string{"propose", fx.releases["3.0.0"], "--key", "nog-9"}, "nog-9", ""},
		{"approve twice", []string{"approve", "2.0.0", "--key", "nog-1"}, "", ledger.CodeDuplicate},
		{"approve another manifest", []string{"approve", "2.0.0", "--key", "nog-2", "--manifest", other}, "", ledger.CodeBadRelease},
		{"approve with the manifest of another version", []string{"approve", "3.0.0", "--key", "nog-2", "--manifest", other}, "is release 2.0.0, not 3.0.0", ""},
		{"approve an unproposed version", []string{"approve", "9.0.0", "--key", "nog-2"}, "release 9.0.0 is not proposed on chain", ""},
		{"approve a bad version", []string{"approve", "v2", "--key", "nog-2"}, "without the leading v", ""},
		{"schedule without a height", []string{"schedule", "2.0.0", "--key", "nog-1"}, "--height H is required", ""},
		{"schedule an unapproved release", []string{"schedule", "2.0.0", "--height", "100", "--key", "nog-1"}, "", ledger.CodeNotApproved},
		{"abort without a reason", []string{"abort", "2.0.0", "--key", "nog-1"}, "--reason TEXT is required", ""},
		{"abort with nothing scheduled", []string{"abort", "2.0.0", "--reason", "x", "--key", "nog-1"}, "", ledger.CodeConflict},
		{"rollback without versions", []string{"approve-rollback", "--from", "2.0.0", "--key", "nog-1"}, "--from V1 and --to V0 are required", ""},
		{"rollback upwards", []string{"approve-rollback", "--from", "2.0.0", "--to", "3.0.0", "--key", "nog-1"}, "2.0.0 is not newer than 3.0.0", ""},
		{"rollback between unapproved releases", []string{"approve-rollback", "--from", "3.0.0", "--to", "2.0.0", "--key", "nog-1"}, "", ledger.CodeNotApproved},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fx.governance(t)
			_, err := fx.run(t, c.args...)
			switch {
			case c.code != "":
				if !nodeapi.IsCode(err, nodeapi.CodeRejected) || nodeapi.TxCode(err) != string(c.code) {
					t.Fatalf("got %v (tx code %q), want a rejection with code %q", err, nodeapi.TxCode(err), c.code)
				}
			case err == nil || !strings.Contains(err.Error(), c.want):
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			after := fx.governance(t)
			b, _ := json.Marshal(before.Releases)
			a, _ := json.Marshal(after.Releases)
			if string(a) != string(b) || after.Height != before.Height {
				t.Fatal("a refused command changed the chain")
			}
		})
	}
	// Without a node to talk to, a clear error.
	_, err := runRelease(t, "list", "--chain-id", govTestChain)
	if err == nil || !strings.Contains(err.Error(), "say which node to talk to") {
		t.Fatalf("list without a node: %v", err)
	}
}

// TestReleaseCommandWithoutEffect: two approvals by one member admitted
// before either is committed; the second is committed without effect, and
// the command says so with exit code 1.
func TestReleaseCommandWithoutEffect(t *testing.T) {
	fx := newGovFixture(t)
	fx.mustRun(t, "propose", fx.releases["2.0.0"], "--key", "nog-1")
	fx.node.setBatch(2)
	first := make(chan error, 1)
	go func() {
		_, err := fx.run(t, "approve", "2.0.0", "--key", "nog-2")
		first <- err
	}()
	fx.node.waitPool(1)
	_, err := fx.run(t, "approve", "2.0.0", "--key", "nog-2")
	if err1 := <-first; err1 != nil {
		t.Fatalf("first approval: %v", err1)
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !errors.Is(err, nodeapi.ErrNoEffect) {
		t.Fatalf("second approval: %v", err)
	}
	if g := fx.governance(t); len(g.Releases[0].Approvers) != 2 || !g.Releases[0].Approved() {
		t.Fatalf("approvers %v", g.Releases[0].Approvers)
	}
}

// TestVoteCommittedAfterTimeout: a vote whose block came after the node's
// wait for it timed out is looked up and reported as the success it is
// (exit 0); a vote that really is not committed fails with
// nodeapi.ErrNotCommitted (exit 1) once --wait has passed.
func TestVoteCommittedAfterTimeout(t *testing.T) {
	fx := newGovFixture(t)
	fx.mustRun(t, "propose", fx.releases["2.0.0"], "--key", "nog-1")
	fx.node.answerLate(1)
	out := fx.mustRun(t, "approve", "2.0.0", "--key", "nog-2")
	wantContains(t, out, "approved release 2.0.0", "2 of quorum 2 approvals: APPROVED at height 2")
	if g := fx.governance(t); !g.Releases[0].Approved() {
		t.Fatal("the approval is not on chain")
	}

	fx.node.stallNext()
	_, err := fx.run(t, "propose", fx.releases["3.0.0"], "--key", "nog-1", "--wait", "500ms")
	if !errors.Is(err, nodeapi.ErrNotCommitted) || exitCode(err) != 1 {
		t.Fatalf("a vote left pending: %v (exit %d), want ErrNotCommitted and exit 1", err, exitCode(err))
	}
	if _, ok := fx.governance(t).Release("3.0.0"); ok {
		t.Fatal("the stalled proposal is on chain")
	}
}

// TestEveryVoteConfirmedAfterTimeout: every governance command whose
// submission is answered with a timeout after its transaction was
// committed looks it up and succeeds (exit 0), and the chain holds its
// effect.
func TestEveryVoteConfirmedAfterTimeout(t *testing.T) {
	fx := newGovFixture(t)
	fx.node.answerLate(1000)
	fx.mustRun(t, "propose", fx.releases["2.0.0"], "--key", "nog-1")
	fx.mustRun(t, "approve", "2.0.0", "--key", "nog-2")
	hs := fmt.Sprint(fx.governance(t).Height + ledger.MinScheduleLead + 5)
	fx.mustRun(t, "schedule", "2.0.0", "--height", hs, "--key", "nog-1")
	out := fx.mustRun(t, "schedule", "2.0.0", "--height", hs, "--key", "nog-3")
	wantContains(t, out, "SCHEDULED at height "+hs)
	fx.mustRun(t, "abort", "2.0.0", "--reason", "late answers", "--key", "nog-2")
	out = fx.mustRun(t, "abort", "2.0.0", "--reason", "late answers", "--key", "nog-1")
	wantContains(t, out, "ABORTED")
	fx.mustRun(t, "propose", fx.releases["3.0.0"], "--key", "nog-2")
	fx.mustRun(t, "approve", "3.0.0", "--key", "nog-3")
	fx.mustRun(t, "approve-rollback", "--from", "3.0.0", "--to", "2.0.0", "--key", "nog-1")
	fx.mustRun(t, "approve-rollback", "--from", "3.0.0", "--to", "2.0.0", "--key", "nog-2")
	g := fx.governance(t)
	if len(g.Approved) != 2 || len(g.Aborts) != 1 || g.Schedule != nil || !g.RollbackAllowed("3.0.0", "2.0.0") {
		t.Fatalf("after late answers: %d approved, %d aborts, schedule %+v, rollbacks %+v", len(g.Approved), len(g.Aborts), g.Schedule, g.Rollbacks)
	}
}

// TestReleaseDowngradeRefused: on a chain whose genesis names the running
// release, proposing it again is rejected by the ledger with code
// downgrade (exit 1), and 'release list' shows the running release.
func TestReleaseDowngradeRefused(t *testing.T) {
	fx := newGovFixture(t, func(g *ledger.Genesis) { g.Release = "2.0.0" })
	_, err := fx.run(t, "propose", fx.releases["2.0.0"], "--key", "nog-1")
	if !nodeapi.IsCode(err, nodeapi.CodeRejected) || nodeapi.TxCode(err) != string(ledger.CodeDowngrade) || exitCode(err) != 1 {
		t.Fatalf("propose the running release: %v (tx code %q, exit %d)", err, nodeapi.TxCode(err), exitCode(err))
	}
	fx.mustRun(t, "propose", fx.releases["3.0.0"], "--key", "nog-1")
	if g := fx.governance(t); g.RunningRelease != "2.0.0" || len(g.Releases) != 1 {
		t.Fatalf("running release %q, %d releases; want 2.0.0 and only 3.0.0 proposed", g.RunningRelease, len(g.Releases))
	}
	wantContains(t, fx.mustRun(t, "list"), "running release 2.0.0")
}

// TestPayRejectionNamesItsCode: 'teeup pay' refused by the ledger exits 1
// and names the ledger's result code.
func TestPayRejectionNamesItsCode(t *testing.T) {
	fx := newGovFixture(t)
	cmd := newPayCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--from", "user-1", "--to", "nog-1", "--amount", "5", "--devnet", fx.dir, "--admin"})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	if nodeapi.TxCode(err) != string(ledger.CodeInsufficientFunds) || exitCode(err) != 1 || !strings.Contains(err.Error(), "(code insufficient_funds)") {
		t.Fatalf("pay from an empty account: %v (tx code %q, exit %d)", err, nodeapi.TxCode(err), exitCode(err))
	}
}
