package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// TestPaymentsCommitIdenticalBlocksOnEveryNode: a 4-node network commits a
// few hundred concurrent payments; every node holds byte-identical blocks
// at every height and the same balances, and no acknowledged payment is
// missing on any node.
func TestPaymentsCommitIdenticalBlocksOnEveryNode(t *testing.T) {
	tn := startNet(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	res := tn.runLoad(ctx, tn.load(300))
	if res.Acknowledged != 300 {
		t.Fatalf("%d payments acknowledged, want 300", res.Acknowledged)
	}
	var top uint64
	for _, a := range res.Acked {
		top = max(top, a.Height)
	}
	for i, c := range tn.clients {
		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := res.Verify(vctx, c); err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		cancel()
	}
	tn.waitHeight(ctx, top)
	tn.checkSameChain(ctx, tn.minHeight(ctx))

	// Every genesis account has the same state on every node (no payment
	// is in flight any more), and no money was created or destroyed.
	accounts := tn.genesisAccounts()
	ref := tn.balances(ctx, 1, accounts)
	var supply uint64
	for _, a := range ref {
		supply += a.Balance
	}
	if want := uint64(len(accounts)) * devnet.InitialBalance; supply != want {
		t.Errorf("total balance %d, want %d", supply, want)
	}
	for id := 2; id <= 4; id++ {
		got := tn.balances(ctx, id, accounts)
		for _, a := range accounts {
			if got[a] != ref[a] {
				t.Errorf("account %s: node %d has %+v, node 1 has %+v", a.String()[:12], id, got[a], ref[a])
			}
		}
	}
}

// TestFullRestartKeepsKeysAndState stops every process of the network and
// starts it again: each node unseals its keys (no new identity), keeps its
// height, head hash and balances, and the network goes on committing.
func TestFullRestartKeepsKeysAndState(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: restarts a whole network")
	}
	tn := startNet(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	tn.runLoad(ctx, tn.load(80))

	// Halt the network so that every node stands at the same height
	// before it stops: then "same state after the restart" is exact.
	halt := tn.minHeight(ctx) + 2
	if _, err := tn.admins[0].Halt(ctx, halt); err != nil {
		t.Fatalf("halt at %d: %v", halt, err)
	}
	tn.waitHeight(ctx, halt)
	before, err := tn.heads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id, h := range before {
		if h.Height != halt || h.Hash != before[1].Hash {
			t.Fatalf("before the restart node %d is at %d %s, want %d %s", id, h.Height, h.Hash, halt, before[1].Hash)
		}
	}
	accounts := tn.genesisAccounts()
	balances := tn.balances(ctx, 1, accounts)

	if err := devnet.Down(ctx, tn.net); err != nil {
		t.Fatalf("devnet down: %v", err)
	}
	for i := range tn.net.Hosts {
		h := &tn.net.Hosts[i]
		for _, prog := range []string{devnet.NodeBin, devnet.DistributeBin} {
			if pid, alive := devnet.ProcessAlive(h, prog); alive {
				t.Fatalf("%s of %s still runs (pid %d) after devnet down", prog, h.Name, pid)
			}
		}
	}
	for i := range tn.net.Hosts {
		if err := devnet.StartHost(tn.net, &tn.net.Hosts[i], true); err != nil {
			t.Fatalf("restart %s: %v", tn.net.Hosts[i].Name, err)
		}
	}
	if err := devnet.WaitHealthy(ctx, tn.net, 90*time.Second); err != nil {
		t.Fatal(err)
	}

	after, err := tn.heads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id, h := range after {
		if *h != *before[id] {
			t.Errorf("node %d: head %d %s after the restart, was %d %s", id, h.Height, h.Hash, before[id].Height, before[id].Hash)
		}
		logPath := filepath.Join(tn.host(id).LogDir, "node.log")
		if n := countOccurrences(logPath, `"msg":"keys unsealed"`); n != 1 {
			t.Errorf("node %d logged 'keys unsealed' %d times, want once (the restart)", id, n)
		}
		if n := countOccurrences(logPath, `"msg":"new node keys sealed"`); n != 1 {
			t.Errorf("node %d made new keys %d times, want once (the first start)", id, n)
		}
	}
	for id := 1; id <= 4; id++ {
		got := tn.balances(ctx, id, accounts)
		for _, a := range accounts {
			if got[a] != balances[a] {
				t.Errorf("node %d account %s: %+v after the restart, was %+v", id, a.String()[:12], got[a], balances[a])
			}
		}
	}
	st, err := tn.admins[0].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Halted || st.HaltHeight != halt {
		t.Errorf("after the restart: halted %v at %d, want the halt at %d kept", st.Halted, st.HaltHeight, halt)
	}

	// Clear the halt: the network commits again, on the same chain.
	if _, err := tn.admins[1].Halt(ctx, 0); err != nil {
		t.Fatalf("clear halt: %v", err)
	}
	res := tn.runLoad(ctx, tn.load(40))
	for _, a := range res.Acked {
		if a.Height <= halt {
			t.Fatalf("payment committed at height %d, at or below the halt height %d", a.Height, halt)
		}
	}
	if err := res.Verify(ctx, tn.clients[2]); err != nil {
		t.Fatal(err)
	}
	top := tn.minHeight(ctx)
	tn.checkSameChain(ctx, top)
	// The payments before the restart are still there.
	for id := 1; id <= 4; id++ {
		b, err := tn.admins[id-1].Block(ctx, halt)
		if err != nil || b.Hash != before[1].Hash {
			t.Fatalf("node %d block %d: %v %v, want hash %s", id, halt, b, err, before[1].Hash)
		}
	}
}

// statusOf returns a node's admin status or fails the test.
func (tn *testNet) statusOf(ctx context.Context, id int) *nodeapi.Status {
	tn.t.Helper()
	st, err := tn.admins[id-1].Status(ctx)
	if err != nil {
		tn.t.Fatalf("node %d status: %v", id, err)
	}
	return st
}

// nextNonce returns the nonce an account's next transaction must carry.
func (tn *testNet) nextNonce(ctx context.Context, a ledger.Address) uint64 {
	tn.t.Helper()
	acct, err := tn.admins[0].Account(ctx, a.String())
	if err != nil {
		tn.t.Fatalf("account %s: %v", a, err)
	}
	return acct.Nonce + 1
}

// describe formats a head map for messages.
func describe(hs map[int]*nodeapi.Head) string {
	s := ""
	for id := 1; id <= len(hs); id++ {
		if h, ok := hs[id]; ok {
			s += fmt.Sprintf(" node %d: %d %s", id, h.Height, h.Hash[:12])
		}
	}
	return s
}
