package e2e

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
)

// startNetOpts starts a devnet of nodes run without agents, with options.
func startNetOpts(t *testing.T, opts devnet.UpOptions) *testNet {
	t.Helper()
	opts.NoAgents = true
	return startNetWith(t, opts)
}

// background runs a load until stop is called, which returns its result.
func (tn *testNet) background(ctx context.Context, cfg loadgen.Config) (stop func() *loadgen.Result) {
	tn.t.Helper()
	halt := make(chan struct{})
	cfg.Stop, cfg.Payments, cfg.Duration = halt, 0, 0
	type outcome struct {
		res *loadgen.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := loadgen.Run(ctx, cfg)
		done <- outcome{res, err}
	}()
	return func() *loadgen.Result {
		tn.t.Helper()
		close(halt)
		o := <-done
		if o.err != nil {
			tn.t.Fatalf("loadgen: %v", o.err)
		}
		if o.res.Rejected != 0 || len(o.res.Unresolved) != 0 {
			tn.t.Fatalf("loadgen: %d acknowledged, %d rejected, %d unresolved; errors %v", o.res.Acknowledged, o.res.Rejected, len(o.res.Unresolved), o.res.Errors)
		}
		tn.t.Logf("loadgen: %d payments acknowledged in %s, %d retries", o.res.Acknowledged, o.res.Elapsed.Round(time.Millisecond), o.res.Retries)
		return o.res
	}
}

// status reads node id's admin status.
func (tn *testNet) status(ctx context.Context, id int) *nodeapi.Status {
	tn.t.Helper()
	st, err := tn.admins[id-1].Status(ctx)
	if err != nil {
		tn.t.Fatalf("status of node %d: %v", id, err)
	}
	return st
}

// leaderID returns the leader as node 1..n see it.
func (tn *testNet) leaderID(ctx context.Context, ids ...int) int {
	tn.t.Helper()
	var leader uint64
	eventually(tn.t, 30*time.Second, "a leader", func() (bool, string) {
		for _, id := range ids {
			st, err := tn.admins[id-1].Status(ctx)
			if err == nil && st.Leader != 0 {
				leader = st.Leader
				return true, ""
			}
		}
		return false, "no node knows a leader"
	})
	return int(leader)
}

// stopNode stops node id (gracefully, then by force).
func (tn *testNet) stopNode(ctx context.Context, id int) {
	tn.t.Helper()
	if err := devnet.StopProcess(ctx, tn.host(id), devnet.NodeBin, 5*time.Second); err != nil {
		tn.t.Fatalf("stop node %d: %v", id, err)
	}
}

// startNode starts node id with env added to its environment (TEEUP_FAULTS).
func (tn *testNet) startNode(id int, env ...string) {
	tn.t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		old, had := os.LookupEnv(k)
		os.Setenv(k, v)
		defer func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		}()
	}
	if err := devnet.StartNode(tn.net, tn.host(id)); err != nil {
		tn.t.Fatalf("start node %d: %v", id, err)
	}
}

// govTx signs a governance transaction of key and submits it through node
// via, waiting for its block.
func (tn *testNet) govTx(ctx context.Context, via int, key ed25519.PrivateKey, kind ledger.TxKind, payload []byte) (*nodeapi.Receipt, error) {
	from := ledger.Address(key.Public().(ed25519.PublicKey))
	acct, err := tn.clients[via-1].Account(ctx, from.String())
	if err != nil {
		return nil, err
	}
	tx, err := ledger.NewGovernanceTx(tn.net.ChainID, kind, payload, acct.Nonce+1, key)
	if err != nil {
		return nil, err
	}
	return tn.clients[via-1].Submit(ctx, tx.Encode())
}

// txNote returns "" for a transaction committed with its effect (result
// code ok), else what went wrong: the code and reason of one committed
// without effect, or the look-up's error.
func (tn *testNet) txNote(ctx context.Context, via int, id string) string {
	st, err := tn.clients[via-1].TxStatus(ctx, id)
	if err != nil {
		return err.Error()
	}
	if st.Status == ledger.StateCommitted && ledger.Code(st.Code) == ledger.CodeOK {
		return ""
	}
	return fmt.Sprintf("%s (code %s): %s", st.Status, st.Code, st.Reason)
}

// checkReceiptsAgainst checks that every acknowledged payment is in the
// block of its height on each of the given nodes: no node acknowledged a
// payment the majority did not commit.
func (tn *testNet) checkReceiptsAgainst(ctx context.Context, res *loadgen.Result, ids ...int) {
	tn.t.Helper()
	for _, id := range ids {
		if err := res.Verify(ctx, tn.clients[id-1]); err != nil {
			tn.t.Fatalf("acknowledged payments against node %d: %v", id, err)
		}
	}
}

func logHas(h *devnet.Host, s string) bool {
	return logContains(filepath.Join(h.LogDir, "node.log"), s)
}

// TestWipedNodeRejoinsByStateTransfer: a node loses its disk while the
// others serve under load. It comes back with a new identity key, which
// members refuse until its operator re-keys it on chain; then it receives
// the ledger by state transfer, catches up, and commits payments sent
// through it, on the same chain.
func TestWipedNodeRejoinsByStateTransfer(t *testing.T) {
	tn := startNetOpts(t, devnet.UpOptions{Nodes: 4, RaftCompactEvery: 64})
	ctx := testCtx(t, 4*time.Minute)
	stop := tn.background(ctx, tn.load(0, 1, 2, 3))
	wiped := tn.host(4)
	oldKey := tn.status(ctx, 4).NodeKey
	tn.waitHeight(ctx, 10)
	tn.kill9(wiped, devnet.NodeBin)
	if err := os.RemoveAll(wiped.DataDir); err != nil {
		t.Fatal(err)
	}
	// The others compact past everything the wiped node ever had.
	eventually(t, 60*time.Second, "the leader to compact its log", func() (bool, string) {
		st, err := tn.admins[tn.leaderID(ctx, 1, 2, 3)-1].Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return st.Sync.FirstIndex > 128, fmt.Sprintf("first index %d", st.Sync.FirstIndex)
	})
	tn.startNode(4)
	var newKey string
	eventually(t, 30*time.Second, "the wiped node to report its new identity key", func() (bool, string) {
		st, err := tn.admins[3].Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		newKey = st.NodeKey
		return newKey != "" && st.Phase != "running", st.Phase
	})
	if newKey == oldKey {
		t.Fatal("the wiped node came back with its old identity key")
	}
	eventually(t, 30*time.Second, "members to refuse the unregistered key", func() (bool, string) {
		return logHas(wiped, "members refuse this node the ledger key"), "not yet"
	})
	key, err := ledger.ParseAddress(newKey)
	if err != nil {
		t.Fatal(err)
	}
	// A NOG member alone is not the quorum; node 4's operator is enough.
	rec, err := tn.govTx(ctx, 1, tn.key("operator-4"), ledger.TxRekeyNode, ledger.EncodeNodeRekey(ledger.NodeRekey{ID: 4, Key: key}))
	if err != nil {
		t.Fatalf("re-key node 4: %v", err)
	}
	if note := tn.txNote(ctx, 1, rec.TxID); note != "" {
		t.Fatalf("re-key committed without effect: %s", note)
	}
	tn.waitCurrent(ctx, 4)
	if !logHas(wiped, "installed the state received from a peer") {
		t.Fatal("the wiped node caught up without a state transfer: the test did not exercise it")
	}
	res := stop()
	top := tn.minHeight(ctx, 1, 2, 3)
	tn.waitHeight(ctx, top, 4)
	tn.checkSameChain(ctx, top)
	tn.checkReceiptsAgainst(ctx, res, 4, 1)
	// A payment sent through the rejoined node commits.
	cfg := tn.load(5, 4)
	tn.runLoad(ctx, cfg)
}

// TestRestoredOldCopyNeverForks: a node restored from a copy of its own
// data directory taken before at least two log compactions catches up by
// state transfer; at no point, also while it leads, does any node
// acknowledge a payment the majority did not commit.
func TestRestoredOldCopyNeverForks(t *testing.T) {
	tn := startNetOpts(t, devnet.UpOptions{Nodes: 4, RaftCompactEvery: 32})
	ctx := testCtx(t, 4*time.Minute)
	stop := tn.background(ctx, tn.load(0))
	tn.waitHeight(ctx, 5)
	restored := tn.host(4)
	tn.stopNode(ctx, 4)
	backup := filepath.Join(t.TempDir(), "data-backup")
	if err := copyTree(restored.DataDir, backup); err != nil {
		t.Fatal(err)
	}
	backupApplied := uint64(0)
	tn.startNode(4)
	tn.waitCurrent(ctx, 4)
	backupApplied = tn.status(ctx, 4).AppliedIndex
	// Two compactions past the backup.
	eventually(t, 90*time.Second, "two compactions past the backup", func() (bool, string) {
		st, err := tn.admins[tn.leaderID(ctx, 1, 2, 3)-1].Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return st.Sync.FirstIndex > backupApplied+2*32, fmt.Sprintf("first index %d, backup at %d", st.Sync.FirstIndex, backupApplied)
	})
	tn.kill9(restored, devnet.NodeBin)
	if err := os.RemoveAll(restored.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(backup, restored.DataDir); err != nil {
		t.Fatal(err)
	}
	restartedAt := tn.minHeight(ctx, 1, 2, 3)
	tn.startNode(4)
	// While it catches up it keeps ingress closed.
	eventually(t, 30*time.Second, "the restored node to report it is catching up", func() (bool, string) {
		st, err := tn.admins[3].Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		if st.Sync.State == nodeapi.SyncCurrent {
			return true, "" // already caught up
		}
		return st.Sync.CatchingUp, st.Sync.Reason
	})
	tn.waitCurrent(ctx, 4)
	currentAt := tn.minHeight(ctx, 1, 2, 3)
	// Until it was current it proposed nothing.
	for h := restartedAt; h <= currentAt; h++ {
		if b, err := tn.admins[0].Block(ctx, h); err == nil && b.Proposer == 4 {
			t.Fatalf("block %d was proposed by node 4 while it was catching up", h)
		}
	}
	// Make it the leader under load (a transfer can time out while the
	// log moves on: try a few times).
	for attempt := 0; attempt < 5 && tn.leaderID(ctx, 1, 2, 3, 4) != 4; attempt++ {
		leader := tn.leaderID(ctx, 1, 2, 3, 4)
		if _, err := tn.admins[leader-1].TransferLeadership(ctx, 4); err != nil {
			t.Logf("hand leadership to the restored node (attempt %d): %v", attempt+1, err)
		}
	}
	if l := tn.leaderID(ctx, 1, 2, 3, 4); l != 4 {
		t.Fatalf("the restored node never took over leadership (leader %d)", l)
	}
	before := tn.minHeight(ctx)
	tn.waitHeight(ctx, before+10)
	if l := tn.leaderID(ctx, 1); l != 4 {
		t.Logf("leadership moved on to node %d", l)
	}
	res := stop()
	top := tn.minHeight(ctx)
	tn.checkSameChain(ctx, top)
	tn.checkReceiptsAgainst(ctx, res, 1, 2, 3)
	if !logHas(restored, "installed the state received from a peer") {
		t.Fatal("the restored node caught up without a state transfer: the test did not exercise it")
	}
}

// TestStateTransferSurvivesKill9 kills the receiving node (kill -9, at
// injected crash points) at steps of a state transfer and of its install,
// and the sender in the middle of the stream; every time the receiver ends
// up current on the same chain.
func TestStateTransferSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: several state transfers")
	}
	tn := startNetOpts(t, devnet.UpOptions{Nodes: 4, RaftCompactEvery: 32})
	ctx := testCtx(t, 6*time.Minute)
	stop := tn.background(ctx, tn.load(0, 1, 2, 3))
	tn.waitHeight(ctx, 5)
	behind := tn.host(4)
	for _, point := range []string{
		"statetransfer.after-receive",
		"statetransfer.after-marker",
		"statetransfer.install.retire",
		"statetransfer.install.promote",
		"sender:statetransfer.sending",
	} {
		applied4 := tn.status(ctx, 4).AppliedIndex
		tn.stopNode(ctx, 4)
		eventually(t, 60*time.Second, "the others to compact past node 4", func() (bool, string) {
			st, err := tn.admins[tn.leaderID(ctx, 1, 2, 3)-1].Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			return st.Sync.FirstIndex > applied4+1, fmt.Sprintf("first index %d, node 4 applied %d", st.Sync.FirstIndex, applied4)
		})
		onceDir := t.TempDir()
		if victim, ok := strings.CutPrefix(point, "sender:"); ok {
			// Restart a node with the fault and make it the leader: it
			// sends node 4 the snapshot and crashes half way; it restarts
			// without the fault and another node sends the snapshot.
			sender := tn.leaderID(ctx, 1, 2, 3)
			tn.stopNode(ctx, sender)
			tn.startNode(sender, fault.EnvVar+"=crash:"+victim, fault.OnceDirEnvVar+"="+onceDir)
			tn.waitCurrent(ctx, sender)
			if l := tn.leaderID(ctx, 1, 2, 3); l != sender {
				if _, err := tn.admins[l-1].TransferLeadership(ctx, uint64(sender)); err != nil {
					t.Fatalf("hand leadership to node %d: %v", sender, err)
				}
			}
			tn.startNode(4)
			eventually(t, 60*time.Second, "the sender to crash mid-stream", func() (bool, string) {
				_, alive := devnet.ProcessAlive(tn.host(sender), devnet.NodeBin)
				return !alive, "still running"
			})
			tn.startNode(sender)
			tn.waitCurrent(ctx, sender)
		} else {
			tn.startNode(4, fault.EnvVar+"=crash:"+point, fault.OnceDirEnvVar+"="+onceDir)
			eventually(t, 60*time.Second, "node 4 to crash at "+point, func() (bool, string) {
				_, alive := devnet.ProcessAlive(behind, devnet.NodeBin)
				return !alive, "still running"
			})
			tn.startNode(4)
		}
		tn.waitCurrent(ctx, 4)
		top := tn.minHeight(ctx, 1, 2, 3)
		tn.waitHeight(ctx, top, 4)
		tn.checkSameChain(ctx, top)
		t.Logf("%s: node 4 current at height %d", point, top)
	}
	res := stop()
	tn.checkReceiptsAgainst(ctx, res, 4)
}

// copyTree copies a directory tree (files 0600, dirs 0700).
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case info.IsDir():
			return os.MkdirAll(target, 0o700)
		case info.Mode().IsRegular():
			raw, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, raw, 0o600)
		default:
			return nil // sockets
		}
	})
}

// TestMembershipByGovernance: a fifth node joins by governance under load
// and catches up by state transfer; a member is removed and refused; a
// node whose key was replaced on chain is refused with its old key; and a
// NOG member rotated out has its votes refused.
func TestMembershipByGovernance(t *testing.T) {
	tn := startNetOpts(t, devnet.UpOptions{Nodes: 4, RaftCompactEvery: 64})
	ctx := testCtx(t, 5*time.Minute)
	// The load goes through nodes that stay members with their keys.
	stop := tn.background(ctx, tn.load(0, 1, 4))
	tn.waitHeight(ctx, 10)

	added, err := devnet.AddNode(ctx, tn.net, devnet.AddNodeOptions{Vote: true, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatalf("add node 5: %v", err)
	}
	c5, err := tn.net.DialNode(ctx, added.Host)
	if err != nil {
		t.Fatal(err)
	}
	tn.clients = append(tn.clients, c5)
	tn.admins = append(tn.admins, nodeapi.NewAdminClient(added.Host.AdminSocket))

	nog := func(i int) ed25519.PrivateKey { return tn.key(fmt.Sprintf("nog-%d", i)) }
	vote := func(key ed25519.PrivateKey, kind ledger.TxKind, payload []byte) {
		t.Helper()
		rec, err := tn.govTx(ctx, 1, key, kind, payload)
		if err != nil {
			t.Fatalf("%s vote: %v", kind, err)
		}
		if note := tn.txNote(ctx, 1, rec.TxID); note != "" {
			t.Fatalf("%s vote committed without effect: %s", kind, note)
		}
	}
	// Remove node 2: it is refused and serves nothing.
	rm := ledger.EncodeNodeRemoval(ledger.NodeRemoval{ID: 2})
	vote(nog(1), ledger.TxRemoveNode, rm)
	vote(nog(2), ledger.TxRemoveNode, rm)
	eventually(t, 30*time.Second, "node 2 to know it was removed", func() (bool, string) {
		st, err := tn.admins[1].Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return st.Sync.State == nodeapi.SyncRemoved, st.Sync.Reason
	})
	eventually(t, 30*time.Second, "members to refuse node 2", func() (bool, string) {
		for _, id := range []int{1, 3, 4, 5} {
			// Refused by the node's membership check (removed, or no
			// longer a member) or, once the transport dropped it from its
			// peers, by the transport itself: either way a typed code.
			log := filepath.Join(tn.host(id).LogDir, "node.log")
			for _, code := range []string{"removed", "not_member", "not_peer"} {
				if logContains(log, `"refused peer","node":`+fmt.Sprint(id), `"id":2`, `"code":"`+code+`"`) {
					return true, ""
				}
			}
		}
		return false, "no refusal logged"
	})

	// Re-key node 3 to a key it does not hold: it is refused with its old one.
	freshPub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := ledger.Address(freshPub) // a key node 3 does not hold
	rec, err := tn.govTx(ctx, 1, tn.key("operator-3"), ledger.TxRekeyNode, ledger.EncodeNodeRekey(ledger.NodeRekey{ID: 3, Key: fresh}))
	if err != nil {
		t.Fatalf("re-key node 3: %v", err)
	}
	if note := tn.txNote(ctx, 1, rec.TxID); note != "" {
		t.Fatalf("re-key committed without effect: %s", note)
	}
	eventually(t, 30*time.Second, "members to refuse node 3's revoked key", func() (bool, string) {
		for _, id := range []int{1, 4, 5} {
			if logContains(filepath.Join(tn.host(id).LogDir, "node.log"), `"id":3`, `"code":"key_mismatch"`) {
				return true, ""
			}
		}
		return false, "no refusal logged"
	})

	// Rotate the NOG: nog-1 out, and its votes refused afterwards.
	change := ledger.EncodeGroupChange(ledger.GroupChange{Group: ledger.GroupNOG,
		Keys: addresses([]ed25519.PrivateKey{nog(2), nog(3)}), Threshold: 2})
	vote(nog(1), ledger.TxChangeGroup, change)
	vote(nog(2), ledger.TxChangeGroup, change)
	_, err = tn.govTx(ctx, 1, nog(1), ledger.TxRemoveNode, ledger.EncodeNodeRemoval(ledger.NodeRemoval{ID: 4}))
	if !nodeapi.IsCode(err, nodeapi.CodeRejected) || nodeapi.TxCode(err) != string(ledger.CodeNotMember) {
		t.Fatalf("a rotated-out NOG member's vote: %v", err)
	}

	res := stop()
	live := []int{1, 4, 5}
	tn.waitCurrent(ctx, 5)
	tn.checkReceiptsAgainst(ctx, res, 1, 5)
	tn.runLoad(ctx, tn.load(5, 5)) // a payment through the new node commits
	top := tn.minHeight(ctx, live...)
	tn.checkSameChain(ctx, top, live...)
	g, err := tn.admins[0].Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("members after the changes: %d, changes %d", len(g.Members), len(g.MembershipChanges))
}
