package distribute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source is where finalized blocks come from.
type Source interface {
	// Head returns the height of the newest finalized block.
	Head(ctx context.Context) (uint64, error)
	// Block returns the encoded block at height (opaque bytes).
	Block(ctx context.Context, height uint64) ([]byte, error)
}

// Errors on which Run stops instead of retrying: each needs an operator.
var (
	// ErrBlockMismatch: the destination holds, under a block's name, bytes
	// that differ from the source's block. The distributor does not overwrite
	// it and does not advance.
	ErrBlockMismatch = errors.New("destination holds a different block")
	// ErrStateAhead: the state file says block N is next but the destination
	// lacks block N-1, which the distributor never causes (it stores a block
	// before recording it). The state file probably belongs to another
	// destination, or the destination lost data.
	ErrStateAhead = errors.New("state file is ahead of the destination")
	// ErrAborted: a Hooks function returned an error.
	ErrAborted = errors.New("distribution aborted by hook")
)

// Hooks are optional functions called at each step of publishing, for tests
// and fault injection. A hook that returns an error aborts the current call
// at that point (wrapped in ErrAborted), as a crash there would; Run returns
// that error instead of retrying. Nil hooks are skipped.
type Hooks struct {
	// BeforePublish is called before block height is looked up in the
	// destination.
	BeforePublish func(height uint64) error
	// AfterPut is called once block height is durable in the destination
	// (uploaded now, or found there with the source's bytes), before the
	// state file records it.
	AfterPut func(height uint64) error
	// BeforeSave is called before the state file is rewritten to say next.
	BeforeSave func(next uint64) error
	// SaveTempWritten is called while saving next, after the temporary file
	// is written and synced and before it replaces the state file. Aborting
	// here leaves the temporary file and the old state file, as a crash would.
	SaveTempWritten func(next uint64) error
	// AfterSave is called once the state file durably says next.
	AfterSave func(next uint64) error
}

// Defaults for Config.
const (
	DefaultPollInterval = 500 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
)

// Config configures a Distributor.
type Config struct {
	// StatePath is the state file (required).
	StatePath string
	// Source provides the finalized blocks (required).
	Source Source
	// Dest stores the published blocks (required).
	Dest Destination
	// Start is the first height to publish when there is no state file
	// (0, the genesis block, by default).
	Start uint64
	// PollInterval is how long Run waits between polls of the source head
	// (DefaultPollInterval if zero); it is also the first retry delay.
	PollInterval time.Duration
	// MaxBackoff caps the delay between Run's retries after errors
	// (DefaultMaxBackoff if zero).
	MaxBackoff time.Duration
	// Logger receives progress and warnings (slog.Default() if nil).
	Logger *slog.Logger
	// Metrics, if not nil, registers the distributor's counters and gauges.
	Metrics prometheus.Registerer
	// Hooks, if not nil, are called at each step.
	Hooks *Hooks
}

// Distributor publishes finalized blocks from a Source to a Destination.
// Reconcile, RunOnce and Run serialize with each other; Next may be called
// concurrently with them.
type Distributor struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	hooks Hooks

	mu         sync.Mutex // held by Reconcile and RunOnce
	reconciled bool       // under mu
	next       atomic.Uint64
}

// New checks cfg, fills in its defaults and returns a Distributor. It does
// not touch the state file or the destination; Reconcile (called by RunOnce
// and Run if needed) does.
func New(cfg Config) (*Distributor, error) {
	switch {
	case cfg.StatePath == "":
		return nil, errors.New("new distributor: empty state file path")
	case cfg.Source == nil:
		return nil, errors.New("new distributor: nil source")
	case cfg.Dest == nil:
		return nil, errors.New("new distributor: nil destination")
	case cfg.PollInterval < 0:
		return nil, fmt.Errorf("new distributor: negative poll interval %v", cfg.PollInterval)
	case cfg.MaxBackoff < 0:
		return nil, fmt.Errorf("new distributor: negative max backoff %v", cfg.MaxBackoff)
	case cfg.Start == math.MaxUint64:
		return nil, fmt.Errorf("new distributor: start height %d out of range", cfg.Start)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.PollInterval {
		cfg.MaxBackoff = cfg.PollInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("new distributor: %w", err)
	}
	d := &Distributor{
		cfg: cfg,
		log: log.With("dest", cfg.Dest.String(), "state", cfg.StatePath),
		m:   m,
	}
	if cfg.Hooks != nil {
		d.hooks = *cfg.Hooks
	}
	return d, nil
}

// Next returns the height of the next block to publish, as last recorded;
// it is 0 until the first Reconcile has completed.
func (d *Distributor) Next() uint64 { return d.next.Load() }

// Reconcile brings the state file in line with the destination: it loads
// the state (Config.Start if there is no state file), then, while the
// destination already holds the next block and the source has it, checks
// that the bytes are the source's and advances the state file. It logs a
// warning if the destination holds blocks beyond the first one missing. It
// returns the reconciled state.
func (d *Distributor) Reconcile(ctx context.Context) (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, _, err := d.reconcile(ctx)
	if err != nil {
		d.m.errors.Inc()
	}
	return st, err
}

// reconcile does Reconcile's work, also returning how many blocks it
// advanced over.
func (d *Distributor) reconcile(ctx context.Context) (State, int, error) {
	path := d.cfg.StatePath
	st, err := LoadState(path)
	haveFile := err == nil
	switch {
	case errors.Is(err, os.ErrNotExist):
		d.log.Info("no state file; starting from the configured height", "start", d.cfg.Start)
		st = State{NextBlock: d.cfg.Start}
	case err != nil:
		return State{}, 0, fmt.Errorf("reconcile: %w", err)
	}
	if haveFile && st.NextBlock > d.cfg.Start {
		prev := st.NextBlock - 1
		_, found, err := d.cfg.Dest.Get(ctx, ObjectName(prev))
		if err != nil {
			return State{}, 0, fmt.Errorf("reconcile: %w", err)
		}
		if !found {
			return State{}, 0, fmt.Errorf("reconcile: %w: %s says next block %d but %s lacks block %d",
				ErrStateAhead, path, st.NextBlock, d.cfg.Dest, prev)
		}
	}
	head, err := d.cfg.Source.Head(ctx)
	if err != nil {
		return State{}, 0, fmt.Errorf("reconcile: source head: %w", err)
	}
	if head < math.MaxUint64 && st.NextBlock > head+1 {
		d.log.Warn("state is more than one block ahead of the source head; waiting for the source",
			"next", st.NextBlock, "head", head)
	}
	n, repaired := st.NextBlock, 0
	for n <= head {
		ok, err := d.publish(ctx, n, false)
		if err != nil {
			return State{}, repaired, fmt.Errorf("reconcile: %w", err)
		}
		if !ok {
			break
		}
		n++
		repaired++
	}
	if repaired > 0 {
		d.log.Info("state file lagged the destination; advanced over blocks already stored",
			"from", st.NextBlock, "to", n)
	} else if !haveFile {
		if err := d.save(n); err != nil {
			return State{}, 0, fmt.Errorf("reconcile: %w", err)
		}
	}
	if err := d.reportBeyond(ctx, n); err != nil {
		// Only a report: a destination that cannot list still publishes.
		d.log.Warn("could not check the destination for blocks beyond the next one", "err", err)
	}
	d.next.Store(n)
	d.m.next.Set(float64(n))
	d.reconciled = true
	return State{NextBlock: n}, repaired, nil
}

// reportBeyond logs a warning if the destination (when it can list) holds
// blocks at or after next, the first one not recorded as published. They are
// left alone: each is compared with the source when its turn comes.
func (d *Distributor) reportBeyond(ctx context.Context, next uint64) error {
	l, ok := d.cfg.Dest.(Lister)
	if !ok {
		return nil
	}
	names, err := l.List(ctx, blockPrefix)
	if err != nil {
		return err
	}
	var beyond []uint64
	for _, name := range names {
		if h, ok := parseObjectName(name); ok && h >= next {
			beyond = append(beyond, h)
		}
	}
	if len(beyond) == 0 {
		return nil
	}
	slices.Sort(beyond)
	d.log.Warn("destination holds blocks beyond the next block to publish; not filling out of order, each will be verified against the source when reached",
		"next", next, "count", len(beyond), "lowest", beyond[0], "highest", beyond[len(beyond)-1])
	return nil
}

// RunOnce publishes every block from the next one up to the source's head,
// reconciling first if that has not been done. It returns how many blocks
// it advanced the state over, including those Reconcile found already stored
// with identical bytes.
func (d *Distributor) RunOnce(ctx context.Context) (published int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer func() {
		if err != nil {
			d.m.errors.Inc()
		}
	}()
	if !d.reconciled {
		if _, published, err = d.reconcile(ctx); err != nil {
			return published, err
		}
	}
	head, err := d.cfg.Source.Head(ctx)
	if err != nil {
		return 0, fmt.Errorf("run: source head: %w", err)
	}
	for n := d.next.Load(); n <= head; n++ {
		if _, err := d.publish(ctx, n, true); err != nil {
			return published, fmt.Errorf("run: %w", err)
		}
		published++
		if n == head {
			break // n++ would overflow at head == MaxUint64
		}
	}
	return published, nil
}

// Run publishes blocks as they are finalized until ctx is done, then returns
// ctx's error. Failures are logged and retried with exponential backoff
// (PollInterval doubling up to MaxBackoff), except those that need an
// operator (ErrBlockMismatch, ErrStateAhead, ErrCorruptState, ErrAborted),
// which Run returns.
func (d *Distributor) Run(ctx context.Context) error {
	failures := 0
	for {
		n, err := d.RunOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := d.cfg.PollInterval
		switch {
		case err == nil:
			failures = 0
			if n > 0 {
				d.log.Debug("published blocks", "count", n, "next", d.Next())
			}
		case permanent(err):
			d.log.Error("distribution stopped", "err", err)
			return err
		default:
			failures++
			wait = d.backoff(failures)
			d.log.Warn("distribution failed; retrying", "err", err, "failures", failures, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// permanent reports whether err needs an operator rather than a retry.
func permanent(err error) bool {
	return errors.Is(err, ErrBlockMismatch) || errors.Is(err, ErrStateAhead) ||
		errors.Is(err, ErrCorruptState) || errors.Is(err, ErrAborted)
}

// backoff is the delay before retry number failures (1-based).
func (d *Distributor) backoff(failures int) time.Duration {
	wait := d.cfg.PollInterval
	for i := 1; i < failures && wait < d.cfg.MaxBackoff; i++ {
		wait *= 2
	}
	return min(wait, d.cfg.MaxBackoff)
}

// publish makes block n durable in the destination, then records n+1 in the
// state file. If the destination already holds block n, it must hold the
// source's exact bytes; it is not uploaded again. If upload is false and the
// destination does not hold block n, publish changes nothing and returns
// false.
func (d *Distributor) publish(ctx context.Context, n uint64, upload bool) (bool, error) {
	if n == math.MaxUint64 {
		return false, fmt.Errorf("publish block %d: height out of range", n)
	}
	if err := d.hook("BeforePublish", d.hooks.BeforePublish, n); err != nil {
		return false, err
	}
	name := ObjectName(n)
	stored, found, err := d.cfg.Dest.Get(ctx, name)
	if err != nil {
		return false, fmt.Errorf("publish block %d: %w", n, err)
	}
	if !found && !upload {
		return false, nil
	}
	block, err := d.cfg.Source.Block(ctx, n)
	if err != nil {
		return false, fmt.Errorf("publish block %d: source: %w", n, err)
	}
	switch {
	case len(block) == 0:
		return false, fmt.Errorf("publish block %d: source returned an empty block", n)
	case len(block) > MaxObjectSize:
		return false, fmt.Errorf("publish block %d: source block is %d bytes, more than the %d a destination object may hold",
			n, len(block), MaxObjectSize)
	}
	if found {
		if !bytes.Equal(stored, block) {
			return false, fmt.Errorf("publish block %d: %w: %s in %s has %d bytes that differ from the source's %d; refusing to overwrite or skip it",
				n, ErrBlockMismatch, name, d.cfg.Dest, len(stored), len(block))
		}
		d.m.verified.Inc()
		d.log.Info("block already stored with identical bytes; not uploading again", "height", n)
	} else {
		if err := d.cfg.Dest.Put(ctx, name, block); err != nil {
			return false, fmt.Errorf("publish block %d: %w", n, err)
		}
		d.m.uploaded.Inc()
	}
	if err := d.hook("AfterPut", d.hooks.AfterPut, n); err != nil {
		return false, err
	}
	if err := d.save(n + 1); err != nil {
		return false, fmt.Errorf("publish block %d: %w", n, err)
	}
	return true, nil
}

// save records next in the state file, then in memory.
func (d *Distributor) save(next uint64) error {
	if err := d.hook("BeforeSave", d.hooks.BeforeSave, next); err != nil {
		return err
	}
	var afterTemp func() error
	if d.hooks.SaveTempWritten != nil {
		afterTemp = func() error { return d.hook("SaveTempWritten", d.hooks.SaveTempWritten, next) }
	}
	if err := saveState(d.cfg.StatePath, State{NextBlock: next}, afterTemp); err != nil {
		return err
	}
	d.next.Store(next)
	d.m.next.Set(float64(next))
	return d.hook("AfterSave", d.hooks.AfterSave, next)
}

// hook calls fn(arg) if fn is set, wrapping its error in ErrAborted.
func (d *Distributor) hook(name string, fn func(uint64) error, arg uint64) error {
	if fn == nil {
		return nil
	}
	if err := fn(arg); err != nil {
		return fmt.Errorf("%w: %s(%d): %w", ErrAborted, name, arg, err)
	}
	return nil
}
