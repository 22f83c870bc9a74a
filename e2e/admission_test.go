package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/node"
	"github.com/teeup/teeup/nodeapi"
)

// ledgerBytes sums the sizes of host id's ledger files (Pebble's tables,
// write-ahead log and manifest: the raft log lives there too).
func (tn *testNet) ledgerBytes(id int) int64 {
	tn.t.Helper()
	var total int64
	err := filepath.WalkDir(filepath.Join(tn.host(id).DataDir, "ledger"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // compacted away meanwhile
			}
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		tn.t.Fatalf("node %d ledger: %v", id, err)
	}
	return total
}

// TestRejectedPaymentsLeaveNoTrace sends 5,000 payments from an unfunded
// key, round-robin to every node, while the chain is halted (no block is
// made, so any raft entry would be one of them): each is rejected with
// insufficient_funds by the leader's admission, and no node's applied raft
// index or ledger files change. The rejection is answered from memory by
// the node that received it; the others never heard of it.
func TestRejectedPaymentsLeaveNoTrace(t *testing.T) {
	tn := startNet(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	tn.waitCurrent(ctx)
	head := tn.minHeight(ctx)
	if _, err := tn.admins[0].Halt(ctx, head+1); err != nil {
		t.Fatal(err)
	}
	tn.waitHeight(ctx, head+1)
	type mark struct {
		applied uint64
		bytes   int64
	}
	marks := func() map[int]mark {
		m := map[int]mark{}
		for id := 1; id <= 4; id++ {
			m[id] = mark{applied: tn.statusOf(ctx, id).AppliedIndex, bytes: tn.ledgerBytes(id)}
		}
		return m
	}
	// Settle: every node applied the halt and its last block, and the
	// ledger files are still for a while.
	var before map[int]mark
	eventually(t, 30*time.Second, "every node settled at the halt height", func() (bool, string) {
		a := marks()
		time.Sleep(time.Second)
		b := marks()
		before = b
		for id := range a {
			if a[id] != b[id] || b[id].applied != b[1].applied {
				return false, "still moving"
			}
		}
		return true, ""
	})

	_, unfunded, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	to := addresses(tn.users(1))[0]
	const total = 5000
	txs := make([]*ledger.Tx, total)
	for i := range txs {
		txs[i] = ledger.NewPayment(tn.net.ChainID, unfunded, to, uint64(i+1), 1)
	}
	var wg sync.WaitGroup
	errs := make(chan error, total)
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				_, err := tn.clients[i%4].Submit(ctx, txs[i].Encode())
				if nodeapi.TxCode(err) != string(ledger.CodeInsufficientFunds) {
					errs <- err
				}
			}
		}()
	}
	for i := range txs {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("an unfunded payment was answered %v, want a rejection with insufficient_funds", err)
	}

	after := marks()
	for id := 1; id <= 4; id++ {
		if after[id] != before[id] {
			t.Errorf("node %d: applied index %d → %d, ledger files %d → %d bytes", id, before[id].applied, after[id].applied, before[id].bytes, after[id].bytes)
		}
	}
	// Node 1 received txs[0]: it remembers the rejection; node 2 did not.
	st, err := tn.txStatus(ctx, 1, txs[0].ID())
	if err != nil || st.Status != ledger.StateRejected || st.Code != string(ledger.CodeInsufficientFunds) {
		t.Fatalf("node 1: status of a rejected payment %+v %v", st, err)
	}
	if _, err := tn.txStatus(ctx, 2, txs[0].ID()); !nodeapi.IsCode(err, nodeapi.CodeNotFound) {
		t.Fatalf("node 2 knows a payment it never received and no block holds: %v", err)
	}
}

// TestBlockWithAnInvalidPaymentIsRefusedByEveryNode: a leader (fault
// injection, as a faulty or malicious one could) proposes a block whose
// first payment carries a signature that does not verify. Every node, the
// leader included, refuses that block as a whole; the chain goes on, every
// acknowledged payment is committed (the original of the corrupted one
// among them, in a later block) and the nodes hold the same chain.
func TestBlockWithAnInvalidPaymentIsRefusedByEveryNode(t *testing.T) {
	t.Setenv(fault.EnvVar, "fail:"+node.InjectBadSignature)
	t.Setenv(fault.OnceDirEnvVar, t.TempDir()) // one block, network-wide
	tn := startNet(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	tn.waitCurrent(ctx)
	res := tn.runLoad(ctx, tn.load(200))
	if err := res.Verify(ctx, tn.clients[0]); err != nil {
		t.Fatalf("acknowledged payments: %v", err)
	}
	injected := false
	for id := 1; id <= 4; id++ {
		log := filepath.Join(tn.host(id).LogDir, "node.log")
		if logContains(log, "FAULT INJECTION: proposing a payment whose signature does not verify") {
			injected = true
		}
		eventually(t, 10*time.Second, fmt.Sprintf("node %d refused the block", id), func() (bool, string) {
			return logContains(log, `"msg":"block refused"`, `"code":"bad_block"`, string(ledger.CodeBadSignature)), "no refusal logged"
		})
	}
	if !injected {
		t.Fatal("no leader proposed the corrupted payment: the fault point never fired")
	}
	tn.checkSameChain(ctx, tn.minHeight(ctx))
}
