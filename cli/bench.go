package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
)

// benchVerifyTimeout bounds the check, after a benchmark, that every
// acknowledged payment is committed.
const benchVerifyTimeout = 2 * time.Minute

// benchFundPayments is how many payments of --amount each extra sender
// account is funded for, when --concurrency exceeds the devnet's users.
const benchFundPayments = 100_000

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a network's performance",
	}
	cmd.AddCommand(newBenchPaymentsCmd())
	return cmd
}

// benchOptions are the flags of 'teeup bench payments'.
type benchOptions struct {
	devnetDir   string
	duration    time.Duration
	concurrency int
	rate        float64
	amount      uint64
	cryptoTime  time.Duration
	verify      bool
	asJSON      bool
}

func (o benchOptions) validate() error {
	var errs []error
	if o.devnetDir == "" {
		errs = append(errs, errors.New("--devnet DIR is required"))
	}
	if o.duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration %s: want a positive duration", o.duration))
	}
	if o.concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d: want at least 1", o.concurrency))
	}
	if o.rate < 0 {
		errs = append(errs, fmt.Errorf("--rate %v: want ≥ 0 (0 = as fast as possible)", o.rate))
	}
	if o.amount == 0 {
		errs = append(errs, errors.New("--amount must be positive"))
	}
	if o.cryptoTime <= 0 {
		errs = append(errs, fmt.Errorf("--crypto-time %s: want a positive duration", o.cryptoTime))
	}
	return errors.Join(errs...)
}

func newBenchPaymentsCmd() *cobra.Command {
	o := benchOptions{devnetDir: defaultDevnetDir()}
	cmd := &cobra.Command{
		Use:   "payments --devnet DIR [--duration 20s] [--concurrency 32] [--json]",
		Short: "Send payments to every node of a devnet and report throughput, latency and the crypto bound",
		Long: `Send payments from the devnet's user accounts to every node of the devnet (round-robin, over
attested TLS) for --duration with --concurrency workers, each owning one sender account (when
--concurrency exceeds the devnet's users, fresh accounts are funded first). A payment counts once
a node returns its receipt: committed, with a height. Failed attempts are retried with the same
signed transaction. Then, unless --verify=false, every acknowledged payment is checked to be
committed at its height and every account's balance and nonce to add up.

The report gives the sustained rate (acknowledged payments / wall time), the commit latency
percentiles, rejections, and — measured in the same run, on the same machine — how many ed25519
signatures one core verifies per second, with the ratio of the two: how far the network is from
the bound its signature checks alone would set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return fmt.Errorf("bench payments: %w", err)
			}
			rep, err := runBenchPayments(cmd.Context(), o)
			if rep != nil {
				if werr := writeBenchReport(stdoutOf(cmd), rep, o.asJSON); werr != nil {
					return werr
				}
			}
			if err != nil {
				return fmt.Errorf("bench payments: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.devnetDir, "devnet", o.devnetDir, "devnet directory (env TEEUP_DEVNET)")
	f.DurationVar(&o.duration, "duration", 20*time.Second, "how long to start new payments")
	f.IntVar(&o.concurrency, "concurrency", 32, "workers, one sender account each")
	f.Float64Var(&o.rate, "rate", 0, "total new payments per second (0 = as fast as the workers go)")
	f.Uint64Var(&o.amount, "amount", 1, "amount of each payment")
	f.DurationVar(&o.cryptoTime, "crypto-time", 2*time.Second, "how long to measure the single-core ed25519 verification rate")
	f.BoolVar(&o.verify, "verify", true, "check afterwards that every acknowledged payment is committed and the balances add up")
	f.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	return cmd
}

// benchReport is what 'teeup bench payments' reports.
type benchReport struct {
	Nodes       int     `json:"nodes"`
	CPUs        int     `json:"cpus"`
	Concurrency int     `json:"concurrency"`
	Duration    float64 `json:"duration_seconds"`
	Elapsed     float64 `json:"elapsed_seconds"`

	Sent             int            `json:"sent"`
	Acknowledged     int            `json:"acknowledged"`
	Rejected         int            `json:"rejected"`
	Unresolved       int            `json:"unresolved"`
	Retries          int            `json:"retries"`
	ClosedForUpgrade int            `json:"closed_for_upgrade"`
	Errors           map[string]int `json:"errors,omitempty"`

	PaymentsPerSecond float64       `json:"payments_per_second"`
	Latency           latencyReport `json:"commit_latency_ms"`

	VerifyMessageBytes   int     `json:"ed25519_message_bytes"`
	VerifyPerSecond      float64 `json:"ed25519_verify_per_second_one_core"`
	PaymentsPerVerify    float64 `json:"payments_per_second_over_verify_per_second"`
	VerifiesPerPayment   int     `json:"ed25519_verifies_per_payment"`
	CryptoBoundPerSecond float64 `json:"crypto_bound_payments_per_second"`

	Verified    bool   `json:"verified"`
	VerifyError string `json:"verify_error,omitempty"`
}

// latencyReport holds commit latency percentiles in milliseconds.
type latencyReport struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// runBenchPayments runs the load, the verification and the crypto
// measurement. It returns the report, if the load ran, with any error.
func runBenchPayments(ctx context.Context, o benchOptions) (*benchReport, error) {
	net, err := devnet.Load(o.devnetDir)
	if err != nil {
		return nil, err
	}
	clients := make([]*nodeapi.Client, 0, len(net.Hosts))
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	nodes := make([]loadgen.Node, 0, len(net.Hosts))
	for i := range net.Hosts {
		h := &net.Hosts[i]
		c, err := net.DialNode(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", h.ID, err)
		}
		clients = append(clients, c)
		nodes = append(nodes, c)
	}
	users := make([]ed25519.PrivateKey, 0, devnet.UserCount)
	for i := 1; i <= devnet.UserCount; i++ {
		k, err := keyfile.ReadPrivate(net.KeyPath(fmt.Sprintf("user-%d", i)))
		if err != nil {
			return nil, err
		}
		users = append(users, k)
	}
	recipients := make([]ledger.Address, len(users))
	for i, k := range users {
		copy(recipients[i][:], k.Public().(ed25519.PublicKey))
	}
	senders := users
	if o.concurrency < len(users) {
		senders = users[:o.concurrency]
	}
	if o.concurrency > len(users) {
		senders, err = loadgen.FundAccounts(ctx, nodes, net.ChainID, users, o.concurrency, o.amount*benchFundPayments)
		if err != nil {
			return nil, err
		}
	}

	res, runErr := loadgen.Run(ctx, loadgen.Config{
		Nodes: nodes, ChainID: net.ChainID, Accounts: senders, Recipients: recipients,
		Concurrency: o.concurrency, Rate: o.rate, Duration: o.duration, Amount: o.amount,
	})
	if res == nil {
		return nil, runErr
	}
	rep := newBenchReport(res, len(net.Hosts), o)
	if runErr != nil {
		return rep, runErr
	}
	if o.verify {
		vctx, cancel := context.WithTimeout(ctx, benchVerifyTimeout)
		err := res.Verify(vctx, clients[0])
		cancel()
		if err != nil {
			rep.VerifyError = err.Error()
			return rep, err
		}
		rep.Verified = true
	}
	// Measured after the load, so the nodes do not compete for the core.
	msgLen, rate, err := measureVerifyRate(ctx, o.cryptoTime)
	if err != nil {
		return rep, err
	}
	rep.setCrypto(msgLen, rate)
	return rep, nil
}

// newBenchReport summarises a load result; the crypto fields are set by
// setCrypto.
func newBenchReport(res *loadgen.Result, nodes int, o benchOptions) *benchReport {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return &benchReport{
		Nodes: nodes, CPUs: runtime.NumCPU(), Concurrency: o.concurrency,
		Duration: o.duration.Seconds(), Elapsed: res.Elapsed.Seconds(),
		Sent: res.Sent, Acknowledged: res.Acknowledged, Rejected: res.Rejected, Unresolved: len(res.Unresolved),
		Retries: res.Retries, ClosedForUpgrade: res.ClosedForUpgrade, Errors: res.Errors,
		PaymentsPerSecond: res.Throughput(),
		Latency:           latencyReport{P50: ms(res.Percentile(50)), P90: ms(res.Percentile(90)), P99: ms(res.Percentile(99)), Max: ms(res.Percentile(100))},
		// The receiving node checks the signature before proposing, then
		// every node checks it again when it admits the transaction.
		VerifiesPerPayment: nodes + 1,
	}
}

// setCrypto records the verification rate and what it implies.
func (r *benchReport) setCrypto(msgLen int, verifyPerSecond float64) {
	r.VerifyMessageBytes, r.VerifyPerSecond = msgLen, verifyPerSecond
	if verifyPerSecond > 0 {
		r.PaymentsPerVerify = r.PaymentsPerSecond / verifyPerSecond
	}
	if r.VerifiesPerPayment > 0 {
		r.CryptoBoundPerSecond = float64(r.CPUs) * verifyPerSecond / float64(r.VerifiesPerPayment)
	}
}

// measureVerifyRate verifies one payment's signature in a tight loop on
// one goroutine for about d and returns the signed message's length and
// the verifications per second.
func measureVerifyRate(ctx context.Context, d time.Duration) (int, float64, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return 0, 0, fmt.Errorf("measure ed25519: %w", err)
	}
	tx := ledger.NewPayment("bench", priv, ledger.Address{1}, 1, 1)
	msg := tx.SigningBytes()
	sig := tx.Sig[:]
	if !ed25519.Verify(pub, msg, sig) {
		return 0, 0, errors.New("measure ed25519: the sample signature does not verify")
	}
	const batch = 256
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("measure ed25519: %w", err)
		}
		for range batch {
			if !ed25519.Verify(pub, msg, sig) {
				return 0, 0, errors.New("measure ed25519: a valid signature failed to verify")
			}
		}
		n += batch
	}
	return len(msg), float64(n) / time.Since(start).Seconds(), nil
}

// writeBenchReport prints the report as text or JSON.
func writeBenchReport(w io.Writer, r *benchReport, asJSON bool) error {
	if asJSON {
		return printJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "network\t%d nodes on this machine (%d CPUs), %d workers for %s\n", r.Nodes, r.CPUs, r.Concurrency, time.Duration(r.Duration*float64(time.Second)))
	fmt.Fprintf(tw, "payments\tsent %d, acknowledged %d, rejected %d, unresolved %d, retries %d, closed for upgrade %d\n",
		r.Sent, r.Acknowledged, r.Rejected, r.Unresolved, r.Retries, r.ClosedForUpgrade)
	fmt.Fprintf(tw, "throughput\t%.1f payments/s (acknowledged / %.2fs wall time)\n", r.PaymentsPerSecond, r.Elapsed)
	fmt.Fprintf(tw, "commit latency\tp50 %.1fms  p90 %.1fms  p99 %.1fms  max %.1fms\n", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		fmt.Fprintf(tw, "failed attempts\t%d × %s\n", r.Errors[k], k)
	}
	switch {
	case r.Verified:
		fmt.Fprintf(tw, "verified\tevery acknowledged payment is committed at its height; balances and nonces add up\n")
	case r.VerifyError != "":
		fmt.Fprintf(tw, "verify FAILED\t%s\n", r.VerifyError)
	default:
		fmt.Fprintf(tw, "verified\tnot checked\n")
	}
	if r.VerifyPerSecond > 0 {
		fmt.Fprintf(tw, "ed25519 verify\t%.0f/s on one core (%d-byte payment signing message, tight loop, same run)\n", r.VerifyPerSecond, r.VerifyMessageBytes)
		fmt.Fprintf(tw, "ratio\tpayments/s ÷ verifications/s = %.6f\n", r.PaymentsPerVerify)
		fmt.Fprintf(tw, "crypto bound\teach payment is verified at admission once per node (%d nodes) plus once by the node receiving it: %d verifications;\n",
			r.Nodes, r.VerifiesPerPayment)
		fmt.Fprintf(tw, "\twith %d cores, signature checks alone would allow ≈ %.0f payments/s (%.2f%% used)\n",
			r.CPUs, r.CryptoBoundPerSecond, 100*r.PaymentsPerSecond/r.CryptoBoundPerSecond)
	}
	return tw.Flush()
}
