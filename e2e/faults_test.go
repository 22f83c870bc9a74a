package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/distribute"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/tee/sim"
)

// kill9 kills a host's program with SIGKILL and waits until it is gone.
func (tn *testNet) kill9(h *devnet.Host, prog string) int {
	tn.t.Helper()
	pid, alive := devnet.ProcessAlive(h, prog)
	if !alive {
		tn.t.Fatalf("%s of %s does not run", prog, h.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		tn.t.Fatalf("kill -9 %s of %s (pid %d): %v", prog, h.Name, pid, err)
	}
	eventually(tn.t, 10*time.Second, fmt.Sprintf("%s of %s gone after kill -9", prog, h.Name), func() (bool, string) {
		_, alive := devnet.ProcessAlive(h, prog)
		return !alive, "still alive"
	})
	return pid
}

// copyExecutable copies src to dst with mode 0755, creating dst's
// directory.
func copyExecutable(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return fsutil.CopyFile(src, dst, 0o755)
}

// TestImpostorEnclaveIsRefused replaces node 4 with a validly signed node
// binary whose MRENCLAVE differs: the good nodes refuse its connections
// (and log both measurements), it never obtains the ledger key nor any
// block, and the three good nodes go on committing payments.
func TestImpostorEnclaveIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: starts a network and an impostor")
	}
	tn := startNet(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	h4 := tn.host(4)
	for _, prog := range []string{devnet.DistributeBin, devnet.NodeBin} {
		if err := devnet.StopProcess(ctx, h4, prog, 10*time.Second); err != nil {
			t.Fatalf("stop %s of node 4: %v", prog, err)
		}
	}
	entries, err := os.ReadDir(h4.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(h4.DataDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}

	// The impostor is signed by the network's enclave signer: a valid,
	// production enclave, only its measurement differs.
	impDir := filepath.Join(tn.net.Dir, "impostor")
	impBin := filepath.Join(impDir, devnet.NodeBin)
	if err := copyExecutable(bins.impostor, impBin); err != nil {
		t.Fatal(err)
	}
	signer, err := keyfile.ReadPrivate(tn.net.KeyPath("signer"))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := sim.SignBinary(impBin, devnet.EnclaveProduct, devnet.EnclaveSVN, signer)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := tn.net.Release.NodeMREnclave, ss.UniqueID
	if good == bad {
		t.Fatalf("the impostor has the release's MRENCLAVE %s: the test would prove nothing", good)
	}
	const refusedInbound = `"msg":"refused peer connection"`
	refusedBefore := map[int]int{}
	for id := 1; id <= 3; id++ {
		refusedBefore[id] = countOccurrences(filepath.Join(tn.host(id).LogDir, "node.log"), refusedInbound)
	}
	impostorNet := *tn.net
	impostorNet.Release.Dir = impDir
	// node-4's log file goes on; what the impostor logs starts here.
	impLog := filepath.Join(h4.LogDir, "node.log")
	impFrom := logSize(impLog)
	impostorStart := time.Now()
	if err := devnet.StartNode(&impostorNet, h4); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the impostor started as a signed production enclave", func() (bool, string) {
		return logContainsAfter(impLog, impFrom, `"msg":"enclave started"`, bad.String(), `"debug":false`, impostorVersion), tail(impLog, 3)
	})
	eventually(t, 30*time.Second, "the impostor asks its peers for the ledger key", func() (bool, string) {
		return logContainsAfter(impLog, impFrom, "waiting for an attested peer to provide the ledger key"), tail(impLog, 3)
	})
	// Each good node refuses the impostor's connections. The nodes that
	// dial the impostor (the leader: followers only send to the leader)
	// refuse to peer with it naming the presented and the expected
	// measurement. In mutual attested TLS the impostor, as a client,
	// rejects a good node's certificate before sending its own, so an
	// inbound refusal cannot name the impostor's measurement.
	for id := 1; id <= 3; id++ {
		logPath := filepath.Join(tn.host(id).LogDir, "node.log")
		eventually(t, 30*time.Second, fmt.Sprintf("node %d refuses the impostor's connections", id), func() (bool, string) {
			n := countOccurrences(logPath, refusedInbound)
			return n > refusedBefore[id], fmt.Sprintf("%d refusals, %d before the impostor", n, refusedBefore[id])
		})
	}
	eventually(t, 30*time.Second, "a good node refuses the impostor naming both measurements", func() (bool, string) {
		for id := 1; id <= 3; id++ {
			if logContains(filepath.Join(tn.host(id).LogDir, "node.log"), `"msg":"refused`, "presented MRENCLAVE "+bad.String(), good.String()) {
				return true, ""
			}
		}
		return false, "no refusal naming " + bad.Short() + " and " + good.Short()
	})

	// The good nodes keep committing payments.
	res := tn.runLoad(ctx, tn.load(60, 1, 2, 3))
	if err := res.Verify(ctx, tn.clients[0]); err != nil {
		t.Fatal(err)
	}
	tn.checkSameChain(ctx, tn.minHeight(ctx, 1, 2, 3), 1, 2, 3)

	// The impostor still runs, still without a ledger key, a ledger or the
	// client API; its admin socket answers only that it waits for the key.
	if _, alive := devnet.ProcessAlive(h4, devnet.NodeBin); !alive {
		t.Fatalf("the impostor exited instead of waiting:\n%s", tail(impLog, 10))
	}
	for _, p := range []string{layout.Node(h4.DataDir).SealedKeys(bad), layout.Node(h4.DataDir).Ledger()} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the impostor has %s (%v)", p, err)
		}
	}
	if st := tn.statusOf(ctx, 4); st.Phase == nodeapi.PhaseRunning || st.Height != 0 {
		t.Errorf("the impostor runs: phase %q, height %d", st.Phase, st.Height)
	}
	for _, msg := range []string{"received the network ledger key", "creating the network ledger key", `"msg":"ledger open"`} {
		if logContainsAfter(impLog, impFrom, msg) {
			t.Errorf("the impostor logged %q", msg)
		}
	}
	// No good node ever accepted a connection from or to the impostor: the
	// identity and last-seen time they hold for peer 4 are the real node's.
	// (Peer.Connected is not checked: a follower never dials peer 4 again
	// and keeps reporting the real node's old connection.)
	for id := 1; id <= 3; id++ {
		for _, p := range tn.statusOf(ctx, id).Peers {
			if p.ID == 4 && (p.MREnclave == bad || p.LastSeen.After(impostorStart)) {
				t.Errorf("node %d accepted the impostor as peer 4: %+v (impostor started %s)", id, p, impostorStart)
			}
		}
	}
}

// TestKillNineLosesNoAcknowledgedPayment kills the leader with SIGKILL
// while payments flow: every acknowledged payment is committed on the
// survivors, the network keeps committing, and the killed node restarts
// and catches up to identical blocks.
func TestKillNineLosesNoAcknowledgedPayment(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts a node under load")
	}
	tn := startNet(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	var leader uint64
	eventually(t, 30*time.Second, "a leader", func() (bool, string) {
		leader = tn.statusOf(ctx, 1).Leader
		return leader != 0, "none"
	})
	victim := tn.host(int(leader))
	survivors := []int{}
	for id := 1; id <= 4; id++ {
		if id != int(leader) {
			survivors = append(survivors, id)
		}
	}

	cfg := tn.load(0)
	cfg.Duration = 8 * time.Second
	started := make(chan struct{})
	var acks atomic.Int64
	cfg.OnAck = func(loadgen.Ack) {
		if acks.Add(1) == 40 {
			close(started)
		}
	}
	type outcome struct {
		res *loadgen.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := loadgen.Run(ctx, cfg)
		done <- outcome{res, err}
	}()
	select {
	case <-started:
	case o := <-done:
		t.Fatalf("load ended before 40 payments: %+v %v", o.res, o.err)
	}
	tn.kill9(victim, devnet.NodeBin)
	killedAt := tn.minHeight(ctx, survivors...)
	t.Logf("killed the leader, node %d, at height %d after %d acknowledged payments", victim.ID, killedAt, acks.Load())

	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	res := o.res
	if res.Rejected != 0 || len(res.Unresolved) != 0 {
		t.Fatalf("%d rejected, %d unresolved (errors %v)", res.Rejected, len(res.Unresolved), res.Errors)
	}
	if res.Retries == 0 {
		t.Errorf("no payment was retried although node %d died under load (errors %v)", victim.ID, res.Errors)
	}
	after := 0
	for _, a := range res.Acked {
		if a.Height > killedAt {
			after++
		}
	}
	if after == 0 {
		t.Fatalf("no payment committed after the kill (at height %d)", killedAt)
	}
	t.Logf("%d payments acknowledged, %d after the kill, %d retries", res.Acknowledged, after, res.Retries)
	if err := res.Verify(ctx, tn.clients[survivors[0]-1]); err != nil {
		t.Fatal(err)
	}

	// The killed node restarts from its sealed keys and catches up.
	if err := devnet.StartNode(tn.net, victim); err != nil {
		t.Fatal(err)
	}
	top := tn.minHeight(ctx, survivors...)
	tn.waitHeight(ctx, top, int(victim.ID))
	tn.waitCurrent(ctx, int(victim.ID))
	tn.checkSameChain(ctx, top)
	if err := res.Verify(ctx, tn.clients[victim.ID-1]); err != nil {
		t.Fatalf("through the restarted node: %v", err)
	}
	if n := countOccurrences(filepath.Join(victim.LogDir, "node.log"), `"msg":"keys unsealed"`); n != 1 {
		t.Errorf("the restarted node logged 'keys unsealed' %d times, want 1", n)
	}
}

// distState reads a distribution state file; a missing file is height 0.
func distState(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := distribute.LoadState(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatalf("distribution state: %v", err)
	}
	return st.NextBlock
}

// TestDistributionSurvivesKillNine kills teeup-distribute with SIGKILL
// while it publishes a backlog of blocks, several times: in the end the
// destination holds every block 0..next_block-1 exactly once, each with
// the node's exact bytes.
func TestDistributionSurvivesKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills the distribution process under load")
	}
	tn := startNet(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	h := tn.host(1)

	cfg := tn.load(0)
	cfg.Duration = 2 * time.Minute
	cfg.Rate = 30
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		_, _ = loadgen.Run(loadCtx, cfg) // only here to make blocks
	}()
	defer func() { stopLoad(); <-loadDone }()

	midPublish := 0
	for round := 0; round < 3; round++ {
		// Kill it, let a backlog build up, restart it, and kill it again
		// as soon as it has published part of the backlog.
		tn.kill9(h, devnet.DistributeBin)
		head := tn.minHeight(ctx, 1)
		tn.waitHeight(ctx, head+8, 1)
		from := distState(t, h.DistState)
		if err := devnet.StartDistribute(tn.net, h); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for distState(t, h.DistState) == from {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: distribution did not advance from %d:\n%s", round, from, tail(filepath.Join(h.LogDir, "distribute.log"), 10))
			}
			time.Sleep(time.Millisecond)
		}
		tn.kill9(h, devnet.DistributeBin)
		next := distState(t, h.DistState)
		headNow := tn.minHeight(ctx, 1)
		t.Logf("round %d: killed at next_block %d (was %d), head %d", round, next, from, headNow)
		if next <= headNow {
			midPublish++
		}
		if err := devnet.StartDistribute(tn.net, h); err != nil {
			t.Fatal(err)
		}
	}
	if midPublish == 0 {
		t.Fatal("the distribution process was never killed while blocks remained to publish")
	}
	stopLoad()
	<-loadDone

	// Freeze the chain; distribution catches up and stops at the head.
	halt := tn.minHeight(ctx) + 2
	if _, err := tn.admins[0].Halt(ctx, halt); err != nil {
		t.Fatal(err)
	}
	tn.waitHeight(ctx, halt)
	eventually(t, 60*time.Second, fmt.Sprintf("distribution published up to %d", halt), func() (bool, string) {
		next := distState(t, h.DistState)
		return next == halt+1, fmt.Sprintf("next_block %d", next)
	})

	blockDir := filepath.Join(h.DistDir, "blocks")
	entries, err := os.ReadDir(blockDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]string{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			t.Logf("temporary file left by a kill: %s", name)
			continue
		}
		digits, _ := strings.CutSuffix(name, ".blk")
		height, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || distribute.ObjectName(height) != "blocks/"+name {
			t.Fatalf("unexpected file %s in %s", name, blockDir)
		}
		if prev, dup := seen[height]; dup {
			t.Fatalf("height %d published twice: %s and %s", height, prev, name)
		}
		seen[height] = name
	}
	if len(seen) != int(halt)+1 {
		t.Errorf("%d blocks published, want %d (0..%d)", len(seen), halt+1, halt)
	}
	for height := uint64(0); height <= halt; height++ {
		name, ok := seen[height]
		if !ok {
			t.Errorf("block %d missing", height)
			continue
		}
		got, err := os.ReadFile(filepath.Join(blockDir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := tn.admins[0].RawBlock(ctx, height)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("block %d: published bytes differ from the node's", height)
		}
	}
}
