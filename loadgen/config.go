// Package loadgen generates payment load against a teeup network and keeps
// exact accounting of what the network acknowledged, so that a caller can
// verify afterwards that no acknowledged payment was lost.
//
// Each worker owns one sender account and tracks its nonce locally; it
// keeps Config.InFlight payments in flight (consecutive nonces). A
// payment is acknowledged only when a node returns its receipt (committed,
// with a height). When a node answers "closed for upgrade", times out or
// cannot be reached, the worker resubmits the SAME signed transaction (same
// nonce, same id) with backoff, to the next node: the ledger deduplicates by
// transaction id and answers a resubmission of a committed transaction with
// its receipt, so a retry never pays twice. A deterministic rejection is
// counted and the worker re-reads its account's nonce before going on.
//
// Result.Verify then checks, against any node, that every acknowledged
// transaction is committed at the height of its receipt and that every
// sender's nonce and every involved account's balance are exactly what the
// committed payments imply, starting from the balances read when Run began.
package loadgen

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// Node is the part of a node's client API that Run needs.
// *nodeapi.Client implements it.
type Node interface {
	// Submit sends an encoded, signed transaction and waits for its receipt.
	Submit(ctx context.Context, tx []byte) (*nodeapi.Receipt, error)
	// Account returns an account's committed balance and the last nonce
	// it used, counting admitted transactions still pending.
	Account(ctx context.Context, address string) (*nodeapi.Account, error)
	// Head returns the newest committed block.
	Head(ctx context.Context) (*nodeapi.Head, error)
}

// Reader is the part of a node's client API that Result.Verify needs.
// *nodeapi.Client implements it.
type Reader interface {
	// TxStatus returns a transaction's state by id (hex).
	TxStatus(ctx context.Context, id string) (*nodeapi.TxStatus, error)
	// Account returns an account's committed balance and the last nonce
	// it used, counting admitted transactions still pending.
	Account(ctx context.Context, address string) (*nodeapi.Account, error)
	// Head returns the newest committed block.
	Head(ctx context.Context) (*nodeapi.Head, error)
}

// Defaults of the optional Config fields.
const (
	DefaultSubmitTimeout = 20 * time.Second
	DefaultDrainTimeout  = 30 * time.Second
	DefaultMinBackoff    = 50 * time.Millisecond
	DefaultMaxBackoff    = 2 * time.Second
)

// Config describes a load run.
type Config struct {
	// Nodes are the nodes to submit to, one client per node. Workers use
	// them round-robin and move to the next node on every retry.
	Nodes []Node
	// ChainID is the network's chain id, signed into every payment.
	ChainID string
	// Accounts are the sender keys. Each worker owns one account and tracks
	// its nonce locally, so no other client may use these accounts while
	// Run (and a later Verify) runs.
	Accounts []ed25519.PrivateKey
	// Recipients receive the payments, in turn. A worker skips its own
	// address when there is another recipient.
	Recipients []ledger.Address
	// Concurrency is the number of workers (default: one per account; at
	// most len(Accounts)).
	Concurrency int
	// InFlight is how many payments each worker keeps in flight at once
	// (default 1). They are signed with consecutive nonces and submitted
	// concurrently; one refused while an earlier one of the same account
	// is still in flight is resubmitted unchanged (a node may have seen it
	// first). After a rejection that no earlier payment explains, the
	// worker waits for its payments in flight, re-reads the account's
	// nonce and goes on from there.
	InFlight int
	// Rate is the total number of new payments started per second across
	// all workers; 0 starts them as fast as the workers go. Retries are not
	// paced.
	Rate float64
	// Duration is how long new payments are started. 0 means no time
	// limit; then Payments or Stop must be set.
	Duration time.Duration
	// Payments is the total number of new payments to start. 0 means no
	// count limit; then Duration or Stop must be set.
	Payments int
	// Stop, when set, ends the run gracefully once it is closed: no new
	// payment is started, and a payment in flight keeps being retried for
	// up to DrainTimeout (cancelling ctx instead leaves it unresolved).
	Stop <-chan struct{}
	// Amount of every payment (> 0).
	Amount uint64
	// SubmitTimeout bounds one submission attempt (default 20s).
	SubmitTimeout time.Duration
	// DrainTimeout is how long, after Duration ends or Stop is closed, a
	// payment already in flight keeps being retried before it is left
	// unresolved (default 30s).
	DrainTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries of one payment (defaults 50ms and 2s).
	MinBackoff, MaxBackoff time.Duration
	// OnAck, when set, is called for every acknowledged payment, from the
	// worker goroutines (concurrently).
	OnAck func(Ack)
	// Logger receives retries (debug) and rejections (warn); default none.
	Logger *slog.Logger
}

// withDefaults fills the optional fields.
func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = len(c.Accounts)
	}
	if c.InFlight == 0 {
		c.InFlight = 1
	}
	if c.SubmitTimeout == 0 {
		c.SubmitTimeout = DefaultSubmitTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports every missing or inconsistent setting of a config with
// defaults applied.
func (c Config) validate() error {
	var errs []error
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes to submit to"))
	}
	for i, n := range c.Nodes {
		if n == nil {
			errs = append(errs, fmt.Errorf("node %d is nil", i))
		}
	}
	if c.ChainID == "" {
		errs = append(errs, errors.New("chain id is required"))
	}
	if len(c.Accounts) == 0 {
		errs = append(errs, errors.New("no sender accounts"))
	}
	seen := make(map[ledger.Address]bool, len(c.Accounts))
	for i, k := range c.Accounts {
		if len(k) != ed25519.PrivateKeySize {
			errs = append(errs, fmt.Errorf("account %d: private key has %d bytes, want %d", i, len(k), ed25519.PrivateKeySize))
			continue
		}
		a := addressOf(k)
		if seen[a] {
			errs = append(errs, fmt.Errorf("account %d (%s) is listed twice: each worker must own its account", i, a.String()[:12]))
		}
		seen[a] = true
	}
	if len(c.Recipients) == 0 {
		errs = append(errs, errors.New("no recipients"))
	}
	for i, r := range c.Recipients {
		if r.IsZero() {
			errs = append(errs, fmt.Errorf("recipient %d is the zero address", i))
		}
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d is negative", c.Concurrency))
	} else if c.Concurrency > len(c.Accounts) && len(c.Accounts) > 0 {
		errs = append(errs, fmt.Errorf("concurrency %d exceeds the %d sender accounts (each worker owns one account)", c.Concurrency, len(c.Accounts)))
	}
	if c.InFlight < 0 {
		errs = append(errs, fmt.Errorf("in flight %d is negative", c.InFlight))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate %v: want a finite number ≥ 0 (0 = unpaced)", c.Rate))
	}
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("duration %s is negative", c.Duration))
	}
	if c.Payments < 0 {
		errs = append(errs, fmt.Errorf("payments %d is negative", c.Payments))
	}
	if c.Duration == 0 && c.Payments == 0 && c.Stop == nil {
		errs = append(errs, errors.New("set a duration, a number of payments or a stop channel"))
	}
	if c.Amount == 0 {
		errs = append(errs, errors.New("amount must be positive"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"submit timeout", c.SubmitTimeout}, {"drain timeout", c.DrainTimeout}, {"min backoff", c.MinBackoff}, {"max backoff", c.MaxBackoff}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", d.name, d.v))
		}
	}
	if c.MaxBackoff < c.MinBackoff {
		errs = append(errs, fmt.Errorf("max backoff %s is below min backoff %s", c.MaxBackoff, c.MinBackoff))
	}
	return errors.Join(errs...)
}

// addressOf returns the address of a 64-byte ed25519 private key.
func addressOf(k ed25519.PrivateKey) ledger.Address {
	var a ledger.Address
	copy(a[:], k.Public().(ed25519.PublicKey))
	return a
}
