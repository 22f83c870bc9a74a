package loadgen

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

const testChain = "loadgen-test"

// baseConfig is a valid config over l: 4 senders, 3 recipients.
func baseConfig(t *testing.T, l *fakeLedger) Config {
	t.Helper()
	senders := l.fund(t, 4, 1_000_000)
	recipients := l.addresses(l.fund(t, 3, 0))
	return Config{
		Nodes: l.nodes(3), ChainID: testChain, Accounts: senders, Recipients: recipients,
		Payments: 200, Amount: 7, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRunAcknowledgesEveryPaymentAndVerifies(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	var onAck atomic.Int64
	cfg.OnAck = func(Ack) { onAck.Add(1) }
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 200 || res.Acknowledged != 200 || res.Rejected != 0 || len(res.Unresolved) != 0 {
		t.Fatalf("sent %d acked %d rejected %d unresolved %d, want 200/200/0/0", res.Sent, res.Acknowledged, res.Rejected, len(res.Unresolved))
	}
	if got := onAck.Load(); got != 200 {
		t.Errorf("OnAck called %d times, want 200", got)
	}
	if len(res.Latencies) != len(res.Acked) {
		t.Errorf("%d latencies for %d acks", len(res.Latencies), len(res.Acked))
	}
	var total uint64
	for _, d := range res.PerAccountDebit {
		total += d
	}
	if total != 200*7 {
		t.Errorf("per-account debits sum to %d, want %d", total, 200*7)
	}
	// Each sender's acknowledged nonces are 1..k without gaps.
	nonces := map[ledger.Address][]uint64{}
	for _, a := range res.Acked {
		nonces[a.From] = append(nonces[a.From], a.Nonce)
		if a.From == a.To {
			t.Errorf("payment %s pays its sender", a.TxID)
		}
	}
	for from, ns := range nonces {
		for i, n := range ns {
			if n != uint64(i+1) {
				t.Fatalf("sender %s: acknowledged nonces %v, want 1..%d", short(from), ns, len(ns))
			}
		}
	}
	if len(nonces) != 4 {
		t.Errorf("%d senders were used, want 4", len(nonces))
	}
	if err := res.Verify(ctx, l.nodes(1)[0].(*fakeNode)); err != nil {
		t.Fatal(err)
	}
	l.checkNoDoublePayment(t, true)
}

// TestRunRetriesTheSameTransaction injects every kind of transient failure:
// closed for upgrade, a dropped connection before admission, a receipt lost
// after the commit (the dangerous one: a new transaction would pay twice),
// a node-side timeout after the commit, and an unreachable node.
func TestRunRetriesTheSameTransaction(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Nodes = append(cfg.Nodes, &fakeNode{l: l, down: true})
	var closed, lostReceipts atomic.Int64
	l.before = func(call int, tx *ledger.Tx) error {
		switch {
		case call%5 == 0:
			closed.Add(1)
			return &nodeapi.Error{Code: nodeapi.CodeClosedForUpgrade, Message: "closed for upgrade: retry later (flag day)"}
		case call%7 == 0:
			return transportErr
		}
		return nil
	}
	l.after = func(_ context.Context, call int, tx *ledger.Tx) error {
		switch {
		case call%3 == 0:
			lostReceipts.Add(1)
			return transportErr
		case call%11 == 0:
			return &nodeapi.Error{Code: nodeapi.CodeTimeout, Message: "not committed in time; query the transaction status before resubmitting"}
		}
		return nil
	}
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Acknowledged != 200 || res.Rejected != 0 || len(res.Unresolved) != 0 {
		t.Fatalf("acked %d rejected %d unresolved %d, want 200/0/0 (errors %v)", res.Acknowledged, res.Rejected, len(res.Unresolved), res.Errors)
	}
	if res.ClosedForUpgrade != int(closed.Load()) || res.ClosedForUpgrade == 0 {
		t.Errorf("ClosedForUpgrade = %d, the nodes answered it %d times", res.ClosedForUpgrade, closed.Load())
	}
	if lostReceipts.Load() == 0 {
		t.Fatal("no receipt was lost: the test injected nothing")
	}
	if res.Retries < int(closed.Load()+lostReceipts.Load()) {
		t.Errorf("Retries = %d, fewer than the %d injected failures", res.Retries, closed.Load()+lostReceipts.Load())
	}
	for _, key := range []string{nodeapi.CodeClosedForUpgrade, "timeout: not committed in time; query the transaction status before resubmitting"} {
		if res.Errors[key] == 0 {
			t.Errorf("Errors has no %q: %v", key, res.Errors)
		}
	}
	var transport int
	for k, v := range res.Errors {
		if strings.HasPrefix(k, "transport: ") {
			transport += v
		}
	}
	if transport == 0 {
		t.Errorf("no transport error counted: %v", res.Errors)
	}
	if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatal(err)
	}
	l.checkNoDoublePayment(t, true)
}

func TestRunCountsRejectionsAndRereadsTheNonce(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 40
	// Another client spends nonce 1 of the first sender to submit, just
	// before its first payment arrives, so that payment is rejected with a
	// bad nonce. (Not a fixed sender: with 40 payments shared by the
	// workers, one worker may never get to send.)
	var interfered atomic.Bool
	var victimMu sync.Mutex
	var victim ledger.Address
	l.before = func(_ int, tx *ledger.Tx) error {
		if interfered.CompareAndSwap(false, true) {
			victimMu.Lock()
			victim = tx.From
			victimMu.Unlock()
			l.mu.Lock()
			l.accounts[tx.From].Nonce++
			l.accounts[tx.From].Balance -= 100
			l.mu.Unlock()
		}
		return nil
	}
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rejected != 1 || res.Acknowledged != 39 || res.Sent != 40 {
		t.Fatalf("rejected %d acked %d sent %d, want 1/39/40 (errors %v)", res.Rejected, res.Acknowledged, res.Sent, res.Errors)
	}
	if r := res.RejectedTxs[0]; r.Nonce != 1 || r.Code != ledger.CodeBadNonce || r.Reason == "" {
		t.Errorf("rejection %+v, want nonce 1 and code bad_nonce", r)
	}
	if res.Errors["rejected: bad nonce: got #, want #"] != 1 {
		t.Errorf("Errors = %v, want one normalized bad nonce", res.Errors)
	}
	// The worker re-read the nonce: its next payment used nonce 2.
	victimMu.Lock()
	defer victimMu.Unlock()
	for _, a := range res.Acked {
		if a.From == victim && a.Nonce == 1 {
			t.Errorf("sender %s was acknowledged at nonce 1, which the other client used", victim)
		}
	}
	// The other client's payment breaks the accounting, and Verify says so.
	err = res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true})
	if !errors.Is(err, ErrNonceMismatch) {
		t.Fatalf("Verify = %v, want a nonce mismatch naming another client", err)
	}
}

// TestVerifyRejectsTamperedState runs cleanly, then changes the ledger in
// each way that means a lost or altered payment; Verify must refuse each.
func TestVerifyRejectsTamperedState(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(l *fakeLedger, res *Result)
		want   string
	}{
		{"acked tx lost", func(l *fakeLedger, res *Result) {
			delete(l.txs, res.Acked[3].TxID)
		}, "unknown transaction"},
		{"acked tx pending", func(l *fakeLedger, res *Result) {
			id := res.Acked[3].TxID
			l.txs[id] = nodeapi.TxStatus{TxID: id.String(), Status: ledger.StatePending}
		}, "is LOST: node says pending"},
		{"acked tx at another height", func(l *fakeLedger, res *Result) {
			id := res.Acked[3].TxID
			st := l.txs[id]
			st.Height++
			l.txs[id] = st
		}, "is LOST: node says committed at height"},
		{"sender balance off", func(l *fakeLedger, res *Result) {
			l.accounts[res.Acked[0].From].Balance++
		}, "balance"},
		{"recipient balance off", func(l *fakeLedger, res *Result) {
			l.accounts[res.Acked[0].To].Balance--
		}, "balance"},
		{"sender nonce off", func(l *fakeLedger, res *Result) {
			l.accounts[res.Acked[0].From].Nonce--
		}, "nonce"},
		{"ack missing from the result", func(l *fakeLedger, res *Result) {
			res.Acked = res.Acked[1:]
		}, "balance"},
		{"node behind the acks", func(l *fakeLedger, res *Result) {
			res.Acked[0].Height = l.height + 100
		}, "wait for the node to reach height"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLedger(testChain)
			cfg := baseConfig(t, l)
			cfg.Payments = 30
			res, err := Run(testContext(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Verify(testContext(t), &fakeNode{l: l}); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			l.mu.Lock()
			tt.tamper(l, res)
			l.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err = res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestVerifyCountsUnresolvedCommits: a payment whose receipt never came
// back before the drain timeout, but which the ledger committed, is
// unresolved in the Result and must be counted by Verify.
func TestVerifyCountsUnresolvedCommits(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 0
	cfg.Duration = 200 * time.Millisecond
	cfg.DrainTimeout = 100 * time.Millisecond
	cfg.Rate = 100
	// From the 10th call on, every submission commits and then never
	// answers: the workers in flight end unresolved.
	l.after = func(ctx context.Context, call int, _ *ledger.Tx) error {
		if call < 10 {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unresolved) == 0 {
		t.Fatalf("no unresolved payment (acked %d, errors %v)", res.Acknowledged, res.Errors)
	}
	if res.Acknowledged != 9 {
		t.Errorf("acked %d, want 9", res.Acknowledged)
	}
	if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatalf("Verify must count committed unresolved payments: %v", err)
	}
	// Without them the accounting does not add up: the check is real.
	partial := *res
	partial.Unresolved = nil
	if err := partial.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err == nil {
		t.Fatal("Verify ignored committed payments missing from the result")
	}
}

func TestRunPacesNewPayments(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 0
	cfg.Duration = 300 * time.Millisecond
	cfg.Rate = 40
	res, err := Run(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Slots are 25ms apart: at most 300/25 + 1 start before Duration ends.
	if max := int(math.Ceil(cfg.Rate*cfg.Duration.Seconds())) + 1; res.Sent > max || res.Sent == 0 {
		t.Fatalf("sent %d payments in %s at %v/s, want 1..%d", res.Sent, cfg.Duration, cfg.Rate, max)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 0
	cfg.Duration = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	var acks atomic.Int64
	cfg.OnAck = func(Ack) {
		if acks.Add(1) == 50 {
			cancel()
		}
	}
	res, err := Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if res == nil || res.Acknowledged < 50 {
		t.Fatalf("result %+v, want at least 50 acknowledged", res)
	}
	vctx := testContext(t)
	if err := res.Verify(vctx, &fakeNode{l: l}); err != nil {
		t.Fatal(err)
	}
}

// TestRunStopsGracefully: a run with no other limit ends once Stop is
// closed, starting no new payment, and the payments in flight at that
// moment, refused for a while, are still acknowledged within DrainTimeout.
func TestRunStopsGracefully(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 0
	stop := make(chan struct{})
	cfg.Stop = stop
	cfg.DrainTimeout = 20 * time.Second
	var (
		mu        sync.Mutex
		stopped   bool
		refusals  int
		seen      = map[string]bool{} // sender/nonce of every payment started
		lateStart []string
	)
	l.before = func(call int, tx *ledger.Tx) error {
		mu.Lock()
		defer mu.Unlock()
		key := fmt.Sprintf("%s/%d", tx.From, tx.Nonce)
		if stopped && !seen[key] {
			lateStart = append(lateStart, key)
		}
		seen[key] = true
		if call == 40 {
			stopped = true
			close(stop)
		}
		if stopped && refusals < 20 {
			refusals++
			return &nodeapi.Error{Code: nodeapi.CodeClosedForUpgrade, Message: "closed for upgrade: retry later (flag day)"}
		}
		return nil
	}
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unresolved) != 0 || res.Rejected != 0 || res.Acknowledged == 0 {
		t.Fatalf("acked %d rejected %d unresolved %d, want every payment in flight at Stop acknowledged", res.Acknowledged, res.Rejected, len(res.Unresolved))
	}
	mu.Lock()
	defer mu.Unlock()
	// A worker already past its start check when Stop closed sends that
	// one payment; none sends another.
	if len(lateStart) > len(cfg.Accounts) {
		t.Fatalf("%d payments first sent after Stop was closed, more than one per worker (%d): %v", len(lateStart), len(cfg.Accounts), lateStart)
	}
	if refusals == 0 || res.ClosedForUpgrade == 0 {
		t.Fatal("no payment in flight was refused after Stop: the test injected nothing")
	}
	if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatal(err)
	}
}

// TestRunStopLeavesUnresolvedAfterDrainTimeout: a payment still refused
// DrainTimeout after Stop is left unresolved, and Run returns without error.
func TestRunStopLeavesUnresolvedAfterDrainTimeout(t *testing.T) {
	l, _, res := runStoppedWithUnresolved(t)
	if err := res.Verify(testContext(t), &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatal(err)
	}
}

// runStoppedWithUnresolved runs a load that is stopped after 30 payments
// while every payment is refused "closed for upgrade" from then on, so the
// refused ones are left unresolved once DrainTimeout has passed.
func runStoppedWithUnresolved(t *testing.T) (*fakeLedger, Config, *Result) {
	t.Helper()
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 0
	stop := make(chan struct{})
	cfg.Stop = stop
	cfg.DrainTimeout = 50 * time.Millisecond
	var once sync.Once
	var stopped atomic.Bool
	l.before = func(call int, tx *ledger.Tx) error {
		if call >= 30 {
			once.Do(func() { stopped.Store(true); close(stop) })
		}
		if stopped.Load() {
			return &nodeapi.Error{Code: nodeapi.CodeClosedForUpgrade, Message: "closed for upgrade: retry later (flag day)"}
		}
		return nil
	}
	res, err := Run(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unresolved) == 0 {
		t.Fatalf("acked %d unresolved 0, want the refused payments unresolved", res.Acknowledged)
	}
	return l, cfg, res
}

// TestVerifyCountsAPaymentCommittedAfterItWasUnknown: a payment left
// unresolved is unknown to the node Verify reads when first asked (it
// waits in the leader's mempool, not yet on chain) and commits in one of
// the next blocks. Verify counts it: taking "unknown" as never committed
// would report the sender's and recipient's balances as wrong.
func TestVerifyCountsAPaymentCommittedAfterItWasUnknown(t *testing.T) {
	l, cfg, res := runStoppedWithUnresolved(t)
	ctx := testContext(t)
	late := res.Unresolved[0]
	var lateTx *ledger.Tx
	for _, k := range cfg.Accounts {
		if addressOf(k) == late.From {
			lateTx = ledger.NewPayment(testChain, k, late.To, late.Amount, late.Nonce)
		}
	}
	if lateTx == nil || lateTx.ID() != late.TxID {
		t.Fatalf("cannot re-sign the unresolved payment %+v", late)
	}
	var committedLate bool
	node := &fakeNode{l: l, emptyBlocks: true}
	node.onHead = func(read int) {
		// Verify's first reads find the payment unknown; it commits while
		// Verify waits for the next blocks.
		if _, ok := l.txs[late.TxID]; !ok && read >= 2 && !committedLate {
			if _, err := l.admitAndCommit(lateTx); err != nil {
				t.Errorf("commit the late payment: %v", err)
			}
			committedLate = true
		}
	}
	if err := res.Verify(ctx, node); err != nil {
		t.Fatal(err)
	}
	if !committedLate {
		t.Fatal("the late payment was never committed: the test did not exercise the grace")
	}
}

// TestRunStartsFromAnotherNodeWhenOneIsClosed: the most advanced node
// refuses client queries (ingress closed); the start state is read from
// the next one, and payments sent to the closed node are retried elsewhere.
func TestRunStartsFromAnotherNodeWhenOneIsClosed(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 40
	closed, open := &fakeNode{l: l, closed: true}, &fakeNode{l: l, lag: 1}
	cfg.Nodes = []Node{closed, open}
	l.height = 10
	ctx := testContext(t)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.StartHeight != 9 {
		t.Errorf("start height %d, want 9 (the open node's)", res.StartHeight)
	}
	if res.Acknowledged != 40 || res.ClosedForUpgrade == 0 || res.ClosedForUpgrade != res.Retries {
		t.Fatalf("acked %d, closed for upgrade %d, retries %d: want 40 acks, every retry caused by the closed node", res.Acknowledged, res.ClosedForUpgrade, res.Retries)
	}
	if err := res.Verify(ctx, &fakeNode{l: l, emptyBlocks: true}); err != nil {
		t.Fatal(err)
	}
	l.checkNoDoublePayment(t, true)
}

// TestRunReadsTheStartStateFromTheMostAdvancedNode: a lagging node may not
// have applied the last payments yet; the start state comes from the node
// with the highest head.
func TestRunReadsTheStartStateFromTheMostAdvancedNode(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Payments = 4
	l.height = 10
	behind, ahead := &fakeNode{l: l, lag: 3}, &fakeNode{l: l}
	cfg.Nodes = []Node{behind, ahead}
	res, err := Run(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.StartHeight != 10 || behind.accountReads != 0 || ahead.accountReads == 0 {
		t.Fatalf("start height %d, account reads: lagging node %d, advanced node %d; want 10, 0, >0",
			res.StartHeight, behind.accountReads, ahead.accountReads)
	}
}

func TestRunWithAnUnreachableNodeOnly(t *testing.T) {
	l := newFakeLedger(testChain)
	cfg := baseConfig(t, l)
	cfg.Nodes = []Node{&fakeNode{l: l, down: true}}
	_, err := Run(testContext(t), cfg)
	if !errors.Is(err, ErrNoNodeAnswered) {
		t.Fatalf("Run = %v, want 'no node answered'", err)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	l := newFakeLedger(testChain)
	good := baseConfig(t, l)
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string
	}{
		{"no nodes", func(c *Config) { c.Nodes = nil }, "no nodes"},
		{"nil node", func(c *Config) { c.Nodes = []Node{nil} }, "node 0 is nil"},
		{"no chain id", func(c *Config) { c.ChainID = "" }, "chain id is required"},
		{"no accounts", func(c *Config) { c.Accounts = nil }, "no sender accounts"},
		{"short key", func(c *Config) { c.Accounts = []ed25519.PrivateKey{make([]byte, 32)} }, "private key has 32 bytes"},
		{"account twice", func(c *Config) { c.Accounts = append(c.Accounts, c.Accounts[0]) }, "listed twice"},
		{"no recipients", func(c *Config) { c.Recipients = nil }, "no recipients"},
		{"zero recipient", func(c *Config) { c.Recipients = []ledger.Address{{}} }, "zero address"},
		{"negative concurrency", func(c *Config) { c.Concurrency = -1 }, "negative"},
		{"too much concurrency", func(c *Config) { c.Concurrency = 5 }, "exceeds the 4 sender accounts"},
		{"negative in flight", func(c *Config) { c.InFlight = -2 }, "in flight -2"},
		{"negative rate", func(c *Config) { c.Rate = -1 }, "rate"},
		{"NaN rate", func(c *Config) { c.Rate = math.NaN() }, "rate"},
		{"infinite rate", func(c *Config) { c.Rate = math.Inf(1) }, "rate"},
		{"negative duration", func(c *Config) { c.Duration = -time.Second }, "duration"},
		{"negative payments", func(c *Config) { c.Payments = -1 }, "payments -1"},
		{"no limit", func(c *Config) { c.Payments, c.Duration = 0, 0 }, "set a duration, a number of payments or a stop channel"},
		{"zero amount", func(c *Config) { c.Amount = 0 }, "amount must be positive"},
		{"negative submit timeout", func(c *Config) { c.SubmitTimeout = -1 }, "submit timeout"},
		{"backoff inverted", func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, "max backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			cfg.Accounts = append([]ed25519.PrivateKey(nil), good.Accounts...)
			tt.modify(&cfg)
			l.mu.Lock()
			calls := l.calls
			l.mu.Unlock()
			res, err := Run(testContext(t), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
			if res != nil {
				t.Errorf("Run returned a result with a config error")
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.calls != calls {
				t.Errorf("a bad config submitted %d payments", l.calls-calls)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		lat  []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(5), 0, 5 * time.Millisecond},
		{ms(5), 100, 5 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), 50, 5 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), 0, 1 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), 100, 9 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), 90, 9 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), 20, 1 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), 21, 3 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), 250, 9 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), -3, 1 * time.Millisecond},
		{ms(9, 1, 5, 3, 7), math.NaN(), 0},
	}
	for _, tt := range tests {
		r := &Result{Latencies: tt.lat}
		if got := r.Percentile(tt.p); got != tt.want {
			t.Errorf("Percentile(%v) of %v = %s, want %s", tt.p, tt.lat, got, tt.want)
		}
	}
	r := &Result{Latencies: ms(3, 1, 2)}
	_ = r.Percentile(50)
	if r.Latencies[0] != 3*time.Millisecond {
		t.Error("Percentile reordered Latencies, which must stay aligned with Acked")
	}
}

func TestThroughput(t *testing.T) {
	r := &Result{Acknowledged: 300, Elapsed: 2 * time.Second}
	if got := r.Throughput(); got != 150 {
		t.Errorf("Throughput = %v, want 150", got)
	}
	if got := (&Result{Acknowledged: 3}).Throughput(); got != 0 {
		t.Errorf("Throughput with no elapsed time = %v, want 0", got)
	}
}

func TestFundAccounts(t *testing.T) {
	l := newFakeLedger(testChain)
	funders := l.fund(t, 3, 1_000)
	ctx := testContext(t)
	keys, err := FundAccounts(ctx, l.nodes(2), testChain, funders, 10, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 10 {
		t.Fatalf("%d keys, want 10", len(keys))
	}
	for i, k := range keys {
		acct, err := (&fakeNode{l: l}).Account(ctx, addressOf(k).String())
		if err != nil {
			t.Fatal(err)
		}
		if acct.Balance != 50 || acct.Nonce != 0 {
			t.Errorf("account %d: %+v, want balance 50 nonce 0", i, acct)
		}
	}
}

func TestFundAccountsRejected(t *testing.T) {
	tests := []struct {
		name    string
		balance uint64
		n       int
		want    string
	}{
		{"no accounts", 1_000, 0, "positive number of accounts"},
		{"funders too poor", 10, 4, "insufficient funds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLedger(testChain)
			funders := l.fund(t, 2, tt.balance)
			keys, err := FundAccounts(testContext(t), l.nodes(1), testChain, funders, tt.n, 50)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("FundAccounts = %v, want an error containing %q", err, tt.want)
			}
			if keys != nil {
				t.Error("keys returned with an error")
			}
		})
	}
}

// BenchmarkRun measures the load generator's own cost per payment (signing,
// accounting, scheduling) against an in-memory ledger that commits at once:
// what a real network's measurement includes besides the network itself.
func BenchmarkRun(b *testing.B) {
	l := newFakeLedger(testChain)
	senders := l.fund(b, 8, math.MaxUint32)
	cfg := Config{
		Nodes: l.nodes(4), ChainID: testChain, Accounts: senders, Recipients: l.addresses(senders),
		Payments: b.N, Amount: 1,
	}
	b.ReportAllocs()
	b.ResetTimer()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if res.Acknowledged != b.N {
		b.Fatalf("acknowledged %d of %d", res.Acknowledged, b.N)
	}
}

// BenchmarkPercentile measures a percentile over a long run's latencies.
func BenchmarkPercentile(b *testing.B) {
	r := &Result{Latencies: make([]time.Duration, 100_000)}
	for i := range r.Latencies {
		r.Latencies[i] = time.Duration((i * 7919) % 100_000)
	}
	b.ResetTimer()
	for b.Loop() {
		_ = r.Percentile(99)
	}
}
