package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// snapshotTimeout bounds each read of the start state.
const snapshotTimeout = 10 * time.Second

// Run sends payments as cfg says and returns their exact accounting. It
// stops starting payments when cfg.Duration has passed, cfg.Payments were
// started or cfg.Stop is closed; a payment in flight then keeps being
// retried for up to cfg.DrainTimeout (after Duration or Stop) or until ctx
// ends, and is otherwise reported as unresolved.
//
// The returned error is non-nil when cfg is invalid or the start state
// cannot be read (and the Result is nil), or when ctx ended before the run
// did (and the Result holds what happened until then).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	height, accounts, err := readStart(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	r := &run{cfg: cfg, start: time.Now(), accounts: accounts}
	if cfg.Rate > 0 {
		r.pace = &pacer{interval: time.Duration(float64(time.Second) / cfg.Rate)}
	}
	drainCtx := ctx
	if cfg.Duration > 0 {
		r.stopAt = r.start.Add(cfg.Duration)
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithDeadline(ctx, r.stopAt.Add(cfg.DrainTimeout))
		defer cancel()
	}
	if cfg.Stop != nil {
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithCancel(drainCtx)
		defer cancel()
		done := make(chan struct{})
		defer close(done)
		go r.watchStop(done, cancel)
	}
	stats := make([]workerStats, cfg.Concurrency)
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, drainCtx, w, &stats[w])
		}()
	}
	wg.Wait()
	res := r.result(height, stats)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("loadgen: run interrupted: %w", err)
	}
	return res, nil
}

// readStart reads the head of every node and the start state of every
// sender and recipient from the most advanced node that answers (a node
// may refuse client queries, e.g. while its ingress is closed).
func readStart(ctx context.Context, cfg Config) (uint64, map[ledger.Address]nodeapi.Account, error) {
	type candidate struct {
		node   Node
		height uint64
	}
	var cands []candidate
	var errs []error
	for i, n := range cfg.Nodes {
		hctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
		h, err := n.Head(hctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", i, err))
			continue
		}
		cands = append(cands, candidate{n, h.Height})
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(b.height, a.height) })
	addrs := make([]ledger.Address, 0, len(cfg.Accounts)+len(cfg.Recipients))
	for _, k := range cfg.Accounts {
		addrs = append(addrs, addressOf(k))
	}
	addrs = append(addrs, cfg.Recipients...)
	for _, c := range cands {
		accounts, err := readAccounts(ctx, c.node, addrs)
		if err == nil {
			return c.height, accounts, nil
		}
		errs = append(errs, err)
	}
	return 0, nil, fmt.Errorf("read start state: %w: %w", ErrNoNodeAnswered, errors.Join(errs...))
}

// readAccounts reads every account in addrs from n.
func readAccounts(ctx context.Context, n Node, addrs []ledger.Address) (map[ledger.Address]nodeapi.Account, error) {
	out := make(map[ledger.Address]nodeapi.Account, len(addrs))
	for _, a := range addrs {
		if _, ok := out[a]; ok {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, snapshotTimeout)
		acct, err := n.Account(actx, a.String())
		cancel()
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", short(a), err)
		}
		out[a] = *acct
	}
	return out, nil
}

// run is the shared state of one Run.
type run struct {
	cfg      Config
	start    time.Time
	stopAt   time.Time // zero: no time limit
	accounts map[ledger.Address]nodeapi.Account
	pace     *pacer
	started  atomic.Int64
}

// workerStats is what one worker saw; merged into the Result at the end.
// A worker's payments in flight update it concurrently, under mu.
type workerStats struct {
	mu         sync.Mutex
	acked      []Ack
	rejected   []Rejection
	unresolved []Payment
	closed     int
	retries    int
	reordered  int
	errors     map[string]int
}

// failed counts one failed attempt under key.
func (st *workerStats) failed(key string, closed bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	countError(st.errors, key)
	if closed {
		st.closed++
	}
}

// retried counts one resubmission; reordered when it followed a refusal
// explained by a predecessor still in flight.
func (st *workerStats) retried(reordered bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.retries++
	if reordered {
		st.reordered++
	}
}

// outcome is how the delivery of one payment ended.
type outcome struct {
	kind    outcomeKind
	height  uint64
	latency time.Duration
	code    ledger.Code
	reason  string
}

type outcomeKind int

const (
	outcomeAcked outcomeKind = iota
	outcomeRejected
	outcomeUnresolved
)

// watchStop ends the drain DrainTimeout after cfg.Stop is closed by
// calling cancelDrain. It returns early when done is closed (the run is
// over).
func (r *run) watchStop(done <-chan struct{}, cancelDrain context.CancelFunc) {
	select {
	case <-done:
		return
	case <-r.cfg.Stop:
	}
	t := time.NewTimer(r.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cancelDrain()
	}
}

// mayStart reports whether a new payment may be started.
func (r *run) mayStart(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	select {
	case <-r.cfg.Stop: // a nil Stop never fires
		return false
	default:
	}
	return r.stopAt.IsZero() || time.Now().Before(r.stopAt)
}

// claim takes the index of the next payment, or reports that the
// configured number of payments was started.
func (r *run) claim() (int64, bool) {
	idx := r.started.Add(1) - 1
	if r.cfg.Payments > 0 && idx >= int64(r.cfg.Payments) {
		return 0, false
	}
	return idx, true
}

// recipient picks the recipient of payment idx, avoiding the sender when
// another recipient exists.
func (r *run) recipient(idx int64, from ledger.Address) ledger.Address {
	rs := r.cfg.Recipients
	to := rs[idx%int64(len(rs))]
	if to == from && len(rs) > 1 {
		to = rs[(idx+1)%int64(len(rs))]
	}
	return to
}

// sender is one account's payments in flight. Payments are signed in
// nonce order; up to Config.InFlight of them are delivered at once.
type sender struct {
	r    *run
	st   *workerStats
	key  []byte
	from ledger.Address

	mu       sync.Mutex
	cond     *sync.Cond
	next     uint64          // next nonce to sign
	inflight map[uint64]bool // nonces being delivered
	broken   bool            // a payment was rejected: sign nothing until the ones in flight end, then re-read the nonce
	stop     bool            // a payment is unresolved: sign nothing more
	node     int             // node of the next attempt (see moveOn)
}

// worker sends payments from account w until no more may be started and
// its payments in flight are resolved. ctx is the run's context; drainCtx
// also ends DrainTimeout after Duration, and bounds the delivery of the
// payments in flight.
func (r *run) worker(ctx, drainCtx context.Context, w int, st *workerStats) {
	st.errors = map[string]int{}
	key := r.cfg.Accounts[w]
	s := &sender{r: r, st: st, key: key, from: addressOf(key), inflight: map[uint64]bool{}, node: w}
	s.cond = sync.NewCond(&s.mu)
	s.next = r.accounts[s.from].Nonce + 1
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		s.mu.Lock()
		for len(s.inflight) >= r.cfg.InFlight || (s.broken && len(s.inflight) > 0) {
			s.cond.Wait()
		}
		stop, broken := s.stop, s.broken
		s.mu.Unlock()
		if stop {
			return
		}
		if broken {
			next := s.nodeCursor()
			last, ok := r.readNonce(drainCtx, st, &next, s.from)
			if !ok {
				return
			}
			s.mu.Lock()
			s.next, s.broken, s.node = last+1, false, next
			s.mu.Unlock()
			continue
		}
		if !r.mayStart(ctx) || !r.pace.wait(ctx) || !r.mayStart(ctx) {
			return
		}
		idx, ok := r.claim()
		if !ok {
			return
		}
		to := r.recipient(idx, s.from)
		s.mu.Lock()
		nonce := s.next
		s.next++
		s.inflight[nonce] = true
		s.mu.Unlock()
		tx := ledger.NewPayment(r.cfg.ChainID, key, to, r.cfg.Amount, nonce)
		p := Payment{TxID: tx.ID(), From: s.from, To: to, Amount: r.cfg.Amount, Nonce: nonce}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.resolve(p, r.deliver(drainCtx, s, tx.Encode(), p))
		}()
	}
}

// nodeCursor returns the node of the next attempt.
func (s *sender) nodeCursor() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// moveOn advances the node cursor past i after an attempt there, unless a
// concurrent attempt already did: payments started together go to the
// same node (which sees them in nonce order), and every attempt still
// moves the account on, round-robin and away from a failing node.
func (s *sender) moveOn(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.node == i {
		s.node++
	}
}

// mayBeReordered reports whether a refusal of payment nonce may be due to
// an earlier payment of this account still in flight (the node saw nonce
// before its predecessor): then the same transaction is resubmitted.
func (s *sender) mayBeReordered(nonce uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return false
	}
	for n := range s.inflight {
		if n < nonce {
			return true
		}
	}
	return false
}

// resolve records how the delivery of p ended.
func (s *sender) resolve(p Payment, out outcome) {
	var ack *Ack
	s.st.mu.Lock()
	switch out.kind {
	case outcomeAcked:
		ack = &Ack{Payment: p, Height: out.height, Latency: out.latency}
		s.st.acked = append(s.st.acked, *ack)
	case outcomeRejected:
		s.st.rejected = append(s.st.rejected, Rejection{Payment: p, Code: out.code, Reason: out.reason})
	case outcomeUnresolved:
		s.st.unresolved = append(s.st.unresolved, p)
	}
	s.st.mu.Unlock()
	if out.kind == outcomeRejected {
		s.r.cfg.Logger.Warn("payment rejected", "tx", p.TxID.String(), "from", short(p.From), "nonce", p.Nonce, "code", out.code, "reason", out.reason)
	}
	if ack != nil && s.r.cfg.OnAck != nil {
		s.r.cfg.OnAck(*ack)
	}
	s.mu.Lock()
	delete(s.inflight, p.Nonce)
	switch out.kind {
	case outcomeRejected:
		s.broken = true
	case outcomeUnresolved:
		s.stop = true
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

// deliver submits raw until a node acknowledges or rejects it, retrying the
// same transaction on the next node after any other failure, with backoff.
// A refusal while an earlier payment of the account is in flight is also
// retried (it may have arrived first). It gives up (unresolved) when ctx
// ends.
func (r *run) deliver(ctx context.Context, s *sender, raw []byte, p Payment) outcome {
	first := time.Now()
	backoff := r.cfg.MinBackoff
	for {
		i := s.nodeCursor()
		// An earlier payment in flight when this attempt is sent may reach
		// the ledger after it, even if it is resolved by the time the answer
		// comes back.
		predecessor := s.mayBeReordered(p.Nonce)
		actx, cancel := context.WithTimeout(ctx, r.cfg.SubmitTimeout)
		rec, err := r.cfg.Nodes[i%len(r.cfg.Nodes)].Submit(actx, raw)
		cancel()
		s.moveOn(i)
		if err == nil {
			err = checkReceipt(rec, p)
			if err == nil {
				return outcome{kind: outcomeAcked, height: rec.Height, latency: time.Since(first)}
			}
		}
		if ctx.Err() != nil {
			return outcome{kind: outcomeUnresolved}
		}
		v, key := judge(err)
		s.st.failed(key, nodeapi.IsCode(err, nodeapi.CodeClosedForUpgrade))
		code := ledger.Code(nodeapi.TxCode(err))
		reordered := v == rejected && mayBeNonceRace(code) && (predecessor || s.mayBeReordered(p.Nonce))
		if v == rejected && !reordered {
			return outcome{kind: outcomeRejected, code: code, reason: err.Error()}
		}
		s.st.retried(reordered)
		r.cfg.Logger.Debug("retrying payment", "tx", p.TxID.String(), "nonce", p.Nonce, "err", err, "backoff", backoff, "reordered", reordered)
		if !sleep(ctx, backoff) {
			return outcome{kind: outcomeUnresolved}
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// mayBeNonceRace reports whether a rejection with the ledger code c may
// be due to the payment overtaking its predecessor: a bad nonce, or a
// refusal without a code (a node that predates codes), which is retried
// as before.
func mayBeNonceRace(c ledger.Code) bool {
	return c == ledger.CodeBadNonce || c == ""
}

// errBadReceipt marks a receipt that does not acknowledge the payment sent.
var errBadReceipt = errors.New("bad receipt")

// ErrNoNodeAnswered means no node of the configuration could be read
// before the run.
var ErrNoNodeAnswered = errors.New("no node answered")

// ErrNonceMismatch is wrapped by Verify's error for an account whose
// nonce on chain differs from the run's payments: another client used it.
var ErrNonceMismatch = errors.New("nonce differs from the run's committed payments")

// checkReceipt makes sure a receipt acknowledges p: the same transaction
// id, committed, in a block after genesis.
func checkReceipt(rec *nodeapi.Receipt, p Payment) error {
	switch {
	case rec == nil:
		return fmt.Errorf("%w: none", errBadReceipt)
	case rec.TxID != p.TxID.String():
		return fmt.Errorf("%w: for tx %s, sent %s", errBadReceipt, rec.TxID, p.TxID)
	case rec.Status != ledger.StateCommitted:
		return fmt.Errorf("%w: status %q", errBadReceipt, rec.Status)
	case rec.Height == 0:
		return fmt.Errorf("%w: height 0", errBadReceipt)
	}
	return nil
}

// readNonce reads the last nonce the account used, trying the nodes in
// turn with backoff until one answers or ctx ends.
func (r *run) readNonce(ctx context.Context, st *workerStats, next *int, from ledger.Address) (uint64, bool) {
	backoff := r.cfg.MinBackoff
	for {
		n := r.cfg.Nodes[*next%len(r.cfg.Nodes)]
		*next++
		actx, cancel := context.WithTimeout(ctx, r.cfg.SubmitTimeout)
		acct, err := n.Account(actx, from.String())
		cancel()
		if err == nil {
			return acct.Nonce, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
		_, key := judge(err)
		st.failed("read account: "+key, false)
		if !sleep(ctx, backoff) {
			return 0, false
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// result merges the workers' stats.
func (r *run) result(height uint64, stats []workerStats) *Result {
	res := &Result{
		Start: r.start, Elapsed: time.Since(r.start), StartHeight: height, StartAccounts: r.accounts,
		PerAccountDebit: map[ledger.Address]uint64{}, Errors: map[string]int{},
	}
	for i := range stats {
		st := &stats[i]
		res.Acked = append(res.Acked, st.acked...)
		res.RejectedTxs = append(res.RejectedTxs, st.rejected...)
		res.Unresolved = append(res.Unresolved, st.unresolved...)
		res.ClosedForUpgrade += st.closed
		res.Retries += st.retries
		res.Reordered += st.reordered
		for k, v := range st.errors {
			if _, ok := res.Errors[k]; !ok && len(res.Errors) >= maxErrorKeys {
				k = otherErrors
			}
			res.Errors[k] += v
		}
	}
	for _, a := range res.Acked {
		res.Latencies = append(res.Latencies, a.Latency)
		res.PerAccountDebit[a.From] += a.Amount
	}
	res.Acknowledged, res.Rejected = len(res.Acked), len(res.RejectedTxs)
	res.Sent = res.Acknowledged + res.Rejected + len(res.Unresolved)
	return res
}

// pacer spaces the starts of new payments evenly across all workers.
type pacer struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time
}

// wait blocks until the caller's start slot; it reports false if ctx ended
// first. A nil pacer never waits.
func (p *pacer) wait(ctx context.Context) bool {
	if p == nil {
		return true
	}
	p.mu.Lock()
	now := time.Now()
	slot := p.next
	if slot.Before(now) {
		slot = now
	}
	p.next = slot.Add(p.interval)
	p.mu.Unlock()
	if d := time.Until(slot); d > 0 {
		return sleep(ctx, d)
	}
	return true
}
