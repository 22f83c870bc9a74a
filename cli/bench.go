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
	"syscall"
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
	inFlight    int
	conns       int
	verifies    int
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
	if o.inFlight < 1 {
		errs = append(errs, fmt.Errorf("--in-flight %d: want at least 1", o.inFlight))
	}
	if o.conns < 0 {
		errs = append(errs, fmt.Errorf("--conns %d: want ≥ 0 (0 = workers × in-flight)", o.conns))
	}
	if o.verifies < 0 {
		errs = append(errs, fmt.Errorf("--verifies-per-payment %d: want ≥ 0 (0 = one per node)", o.verifies))
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
		Use:   "payments --devnet DIR [--duration 20s] [--concurrency 32] [--in-flight 1] [--json]",
		Short: "Send payments to every node of a devnet and report throughput, latency and the crypto bound",
		Long: `Send payments from the devnet's user accounts to every node of the devnet (round-robin, over
attested TLS) for --duration with --concurrency workers, each owning one sender account (when
--concurrency exceeds the devnet's users, fresh accounts are funded first) and keeping --in-flight
payments in flight (consecutive nonces). Each node's client keeps --conns persistent connections
(default: workers × in-flight, so no request waits for a new handshake). A payment counts once a
node returns its receipt: committed, with a height. Failed attempts are retried with the same
signed transaction. Then, unless --verify=false, every acknowledged payment is checked to be
committed at its height and every account's balance and nonce to add up.

The report gives the sustained rate (acknowledged payments / wall time), the commit latency
percentiles, rejections, the connections the client opened and the CPU it used, and — measured in
the same run, on the same machine — how many ed25519 signatures one core verifies per second,
the signature-only bound that implies (cores × verifications/s ÷ verifications per payment) and
the ratio of the measured rate to that bound.`,
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
	f.IntVar(&o.inFlight, "in-flight", 1, "payments each worker keeps in flight")
	f.IntVar(&o.conns, "conns", 0, "persistent connections per node (0 = workers × in-flight)")
	f.IntVar(&o.verifies, "verifies-per-payment", 0, "ed25519 verifications the network makes per payment, for the bound (0 = one per node: every node checks every payment once)")
	f.Float64Var(&o.rate, "rate", 0, "total new payments per second (0 = as fast as the workers go)")
	f.Uint64Var(&o.amount, "amount", 1, "amount of each payment")
	f.DurationVar(&o.cryptoTime, "crypto-time", 2*time.Second, "how long to measure the single-core ed25519 verification rate")
	f.BoolVar(&o.verify, "verify", true, "check afterwards that every acknowledged payment is committed and the balances add up")
	f.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	return cmd
}

// benchReport is what 'teeup bench payments' reports.
type benchReport struct {
	Nodes        int     `json:"nodes"`
	CPUs         int     `json:"cpus"`
	Concurrency  int     `json:"concurrency"`
	InFlight     int     `json:"in_flight_per_worker"`
	ConnsPerNode int     `json:"connections_per_node"`
	Duration     float64 `json:"duration_seconds"`
	Elapsed      float64 `json:"elapsed_seconds"`

	Sent             int            `json:"sent"`
	Acknowledged     int            `json:"acknowledged"`
	Rejected         int            `json:"rejected"`
	Unresolved       int            `json:"unresolved"`
	Retries          int            `json:"retries"`
	Reordered        int            `json:"reordered"`
	ClosedForUpgrade int            `json:"closed_for_upgrade"`
	Errors           map[string]int `json:"errors,omitempty"`

	PaymentsPerSecond float64       `json:"payments_per_second"`
	Latency           latencyReport `json:"commit_latency_ms"`

	// What the load generator itself cost, during the load.
	ConnectionsOpened     uint64  `json:"connections_opened"`
	ConnectionsResumed    uint64  `json:"connections_resumed"`
	ClientCPUSeconds      float64 `json:"client_cpu_seconds"`
	ClientCPUPerPaymentMs float64 `json:"client_cpu_ms_per_payment"`

	VerifyMessageBytes   int     `json:"ed25519_message_bytes"`
	VerifyPerSecond      float64 `json:"ed25519_verify_per_second_one_core"`
	PaymentsPerVerify    float64 `json:"payments_per_second_over_verify_per_second"`
	VerifiesPerPayment   int     `json:"ed25519_verifies_per_payment"`
	CryptoBoundPerSecond float64 `json:"crypto_bound_payments_per_second"`
	BoundRatio           float64 `json:"payments_per_second_over_crypto_bound"`

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
	if o.conns == 0 {
		// Every request could go to one node (retries move on), so each
		// node's pool can hold all of them.
		o.conns = o.concurrency * o.inFlight
	}
	for i := range net.Hosts {
		h := &net.Hosts[i]
		c, err := net.DialNodeConns(ctx, h, o.conns)
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

	opened0 := connStats(clients)
	cpu0, err := processCPU()
	if err != nil {
		return nil, err
	}
	res, runErr := loadgen.Run(ctx, loadgen.Config{
		Nodes: nodes, ChainID: net.ChainID, Accounts: senders, Recipients: recipients,
		Concurrency: o.concurrency, InFlight: o.inFlight, Rate: o.rate, Duration: o.duration, Amount: o.amount,
	})
	if res == nil {
		return nil, runErr
	}
	cpu1, err := processCPU()
	if err != nil {
		return nil, err
	}
	rep := newBenchReport(res, len(net.Hosts), o)
	opened1 := connStats(clients)
	rep.ConnectionsOpened, rep.ConnectionsResumed = opened1.Opened-opened0.Opened, opened1.Resumed-opened0.Resumed
	rep.setClientCPU(cpu1 - cpu0)
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
	verifies := o.verifies
	if verifies == 0 {
		// Every node checks every payment once: the receiving node when it
		// admits it (its block's apply there skips it), the others when
		// the block applies.
		verifies = nodes
	}
	return &benchReport{
		Nodes: nodes, CPUs: runtime.NumCPU(), Concurrency: o.concurrency, InFlight: max(o.inFlight, 1), ConnsPerNode: o.conns,
		Duration: o.duration.Seconds(), Elapsed: res.Elapsed.Seconds(),
		Sent: res.Sent, Acknowledged: res.Acknowledged, Rejected: res.Rejected, Unresolved: len(res.Unresolved),
		Retries: res.Retries, Reordered: res.Reordered, ClosedForUpgrade: res.ClosedForUpgrade, Errors: res.Errors,
		PaymentsPerSecond:  res.Throughput(),
		Latency:            latencyReport{P50: ms(res.Percentile(50)), P90: ms(res.Percentile(90)), P99: ms(res.Percentile(99)), Max: ms(res.Percentile(100))},
		VerifiesPerPayment: verifies,
	}
}

// setClientCPU records the CPU time the load generator used during the load.
func (r *benchReport) setClientCPU(d time.Duration) {
	r.ClientCPUSeconds = d.Seconds()
	if r.Acknowledged > 0 {
		r.ClientCPUPerPaymentMs = float64(d) / float64(time.Millisecond) / float64(r.Acknowledged)
	}
}

// connStats sums the clients' connection counts.
func connStats(clients []*nodeapi.Client) nodeapi.ConnStats {
	var s nodeapi.ConnStats
	for _, c := range clients {
		cs := c.Stats()
		s.Opened += cs.Opened
		s.Resumed += cs.Resumed
	}
	return s
}

// processCPU returns the user and system CPU time this process used so far.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("read the CPU time used: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
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
	if r.CryptoBoundPerSecond > 0 {
		r.BoundRatio = r.PaymentsPerSecond / r.CryptoBoundPerSecond
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
	fmt.Fprintf(tw, "network\t%d nodes on this machine (%d CPUs), %d workers × %d in flight for %s\n", r.Nodes, r.CPUs, r.Concurrency, r.InFlight, time.Duration(r.Duration*float64(time.Second)))
	fmt.Fprintf(tw, "payments\tsent %d, acknowledged %d, rejected %d, unresolved %d, retries %d (%d reordered), closed for upgrade %d\n",
		r.Sent, r.Acknowledged, r.Rejected, r.Unresolved, r.Retries, r.Reordered, r.ClosedForUpgrade)
	fmt.Fprintf(tw, "throughput\t%.1f payments/s (acknowledged / %.2fs wall time)\n", r.PaymentsPerSecond, r.Elapsed)
	fmt.Fprintf(tw, "commit latency\tp50 %.1fms  p90 %.1fms  p99 %.1fms  max %.1fms\n", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(tw, "load generator\t%d connections opened (%d resumed) with %d kept per node; %.2fs of CPU (%.3fms per payment)\n",
		r.ConnectionsOpened, r.ConnectionsResumed, r.ConnsPerNode, r.ClientCPUSeconds, r.ClientCPUPerPaymentMs)
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
		how := fmt.Sprintf("once per node, %d nodes: the receiving node when it admits it, every other node when its block applies", r.Nodes)
		if r.VerifiesPerPayment != r.Nodes {
			how = "as --verifies-per-payment says"
		}
		fmt.Fprintf(tw, "crypto bound\teach payment is verified %d times (%s);\n", r.VerifiesPerPayment, how)
		fmt.Fprintf(tw, "\twith %d cores, signature checks alone would allow ≈ %.0f payments/s\n", r.CPUs, r.CryptoBoundPerSecond)
		fmt.Fprintf(tw, "ratio to the bound\t%.4f (%.2f%% of the signature-only bound)\n", r.BoundRatio, 100*r.BoundRatio)
	}
	return tw.Flush()
}
