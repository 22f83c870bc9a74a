package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/loadgen"
)

// runBench runs 'teeup bench ARGS...' and returns its standard output.
func runBench(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newBenchCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestBenchPaymentsRejectsBadFlags(t *testing.T) {
	notDevnet := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no devnet", []string{"--devnet="}, "--devnet DIR is required"},
		{"not a devnet", []string{"--devnet", notDevnet}, "is not a devnet"},
		{"zero duration", []string{"--devnet", notDevnet, "--duration", "0s"}, "--duration 0s"},
		{"negative duration", []string{"--devnet", notDevnet, "--duration", "-1s"}, "--duration -1s"},
		{"unparsable duration", []string{"--devnet", notDevnet, "--duration", "fast"}, "invalid argument"},
		{"zero concurrency", []string{"--devnet", notDevnet, "--concurrency", "0"}, "--concurrency 0"},
		{"zero in flight", []string{"--devnet", notDevnet, "--in-flight", "0"}, "--in-flight 0"},
		{"negative conns", []string{"--devnet", notDevnet, "--conns", "-1"}, "--conns -1"},
		{"negative verifies", []string{"--devnet", notDevnet, "--verifies-per-payment", "-1"}, "--verifies-per-payment -1"},
		{"negative rate", []string{"--devnet", notDevnet, "--rate", "-5"}, "--rate -5"},
		{"zero amount", []string{"--devnet", notDevnet, "--amount", "0"}, "--amount must be positive"},
		{"zero crypto time", []string{"--devnet", notDevnet, "--crypto-time", "0s"}, "--crypto-time 0s"},
		{"positional argument", []string{"--devnet", notDevnet, "extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runBench(t, append([]string{"payments"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("bench payments %v: %v, want an error containing %q", tt.args, err, tt.want)
			}
			if out != "" {
				t.Errorf("printed a report with an error:\n%s", out)
			}
		})
	}
}

func TestMeasureVerifyRate(t *testing.T) {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	wantLen := len(ledger.NewPayment("bench", k, ledger.Address{1}, 1, 1).SigningBytes())
	n, rate, err := measureVerifyRate(context.Background(), 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if n != wantLen {
		t.Errorf("measured on a %d-byte message, a payment signs %d bytes", n, wantLen)
	}
	if rate <= 0 || math.IsInf(rate, 0) {
		t.Errorf("rate %v", rate)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := measureVerifyRate(ctx, time.Second); err == nil {
		t.Error("a cancelled measurement returned no error")
	}
}

func TestBenchReportArithmetic(t *testing.T) {
	res := &loadgen.Result{
		Sent: 101, Acknowledged: 100, Rejected: 1, Retries: 7, ClosedForUpgrade: 2, Elapsed: 4 * time.Second,
		Errors: map[string]int{"closed_for_upgrade": 2, "transport: reset": 5},
	}
	for i := 1; i <= 100; i++ {
		res.Latencies = append(res.Latencies, time.Duration(i)*time.Millisecond)
	}
	rep := newBenchReport(res, 4, benchOptions{concurrency: 8, inFlight: 2, conns: 16, duration: 4 * time.Second})
	rep.setCrypto(97, 50_000)
	rep.setClientCPU(500 * time.Millisecond)
	rep.ConnectionsOpened, rep.ConnectionsResumed = 20, 12
	cpus := float64(runtime.NumCPU())
	checks := []struct {
		name      string
		got, want float64
	}{
		{"payments/s", rep.PaymentsPerSecond, 25},
		{"p50", rep.Latency.P50, 50},
		{"p90", rep.Latency.P90, 90},
		{"p99", rep.Latency.P99, 99},
		{"max", rep.Latency.Max, 100},
		{"ratio", rep.PaymentsPerVerify, 25.0 / 50_000},
		{"verifies per payment", float64(rep.VerifiesPerPayment), 4},
		{"crypto bound", rep.CryptoBoundPerSecond, cpus * 50_000 / 4},
		{"bound ratio", rep.BoundRatio, 25 / (cpus * 50_000 / 4)},
		{"client cpu per payment", rep.ClientCPUPerPaymentMs, 5},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	var text bytes.Buffer
	if err := writeBenchReport(&text, rep, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"4 nodes", "sent 101, acknowledged 100, rejected 1", "25.0 payments/s", "p50 50.0ms", "p99 99.0ms",
		"50000/s on one core (97-byte", "= 0.000500", "verified 4 times (once per node, 4 nodes: the receiving node when it admits it, every other node when its block applies)",
		"5 × transport: reset", "not checked", "8 workers × 2 in flight", "20 connections opened (12 resumed) with 16 kept per node; 0.50s of CPU (5.000ms per payment)",
		"ratio to the bound", fmt.Sprintf("%.4f", 25/(cpus*50_000/4)),
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}

	var js bytes.Buffer
	if err := writeBenchReport(&js, rep, true); err != nil {
		t.Fatal(err)
	}
	var back benchReport
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.PaymentsPerSecond != 25 || back.VerifyPerSecond != 50_000 || back.Acknowledged != 100 || back.Errors["transport: reset"] != 5 ||
		back.BoundRatio != rep.BoundRatio || back.InFlight != 2 || back.ConnsPerNode != 16 || back.ConnectionsOpened != 20 {
		t.Errorf("JSON report %+v", back)
	}
	// An explicit number of verifications per payment replaces nodes + 1.
	over := newBenchReport(res, 4, benchOptions{concurrency: 8, verifies: 2})
	over.setCrypto(97, 50_000)
	if over.VerifiesPerPayment != 2 || math.Abs(over.CryptoBoundPerSecond-cpus*25_000) > 1e-9 {
		t.Errorf("--verifies-per-payment 2: %d verifications, bound %v", over.VerifiesPerPayment, over.CryptoBoundPerSecond)
	}
	text.Reset()
	if err := writeBenchReport(&text, over, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "verified 2 times (as --verifies-per-payment says)") {
		t.Errorf("text report:\n%s", text.String())
	}
}

// buildBinaries builds the teeup programs into a temporary directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+string(filepath.Separator), "./cmd/...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// TestBenchPaymentsOnADevnet runs the benchmark against a one-node devnet
// with more workers than the devnet has users (so extra senders are
// funded first) and checks the JSON report.
func TestBenchPaymentsOnADevnet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and starts a devnet")
	}
	bin := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	n, err := devnet.Up(ctx, devnet.UpOptions{Dir: dir, Nodes: 1, BinDir: bin, NoAgents: true, NoDistribute: true})
	if n != nil {
		t.Cleanup(func() {
			dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
			defer dcancel()
			if err := devnet.Down(dctx, n); err != nil {
				t.Errorf("devnet down: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("devnet up: %v", err)
	}
	workers := devnet.UserCount + 2
	out, err := runBench(t, "payments", "--devnet", dir, "--duration", "2s", "--concurrency", "10", "--in-flight", "2", "--crypto-time", "200ms", "--json")
	if err != nil {
		t.Fatalf("bench payments: %v\n%s", err, out)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if rep.Nodes != 1 || rep.Concurrency != workers || rep.VerifiesPerPayment != 1 {
		t.Errorf("nodes %d, concurrency %d, verifies per payment %d; want 1, %d, 1", rep.Nodes, rep.Concurrency, rep.VerifiesPerPayment, workers)
	}
	if rep.Acknowledged == 0 || rep.Sent != rep.Acknowledged || rep.Rejected != 0 || rep.Unresolved != 0 {
		t.Errorf("sent %d, acknowledged %d, rejected %d, unresolved %d", rep.Sent, rep.Acknowledged, rep.Rejected, rep.Unresolved)
	}
	if !rep.Verified || rep.VerifyError != "" {
		t.Errorf("not verified: %q", rep.VerifyError)
	}
	if rep.PaymentsPerSecond <= 0 || rep.VerifyPerSecond <= 0 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 || rep.BoundRatio <= 0 {
		t.Errorf("report %+v", rep)
	}
	// 10 workers × 2 in flight on one node: a pool of 20 persistent
	// connections, so the load opens about that many, not one per payment.
	if rep.InFlight != 2 || rep.ConnsPerNode != 20 || rep.ConnectionsOpened > 40 || rep.ClientCPUSeconds <= 0 {
		t.Errorf("in flight %d, connections kept %d, opened %d for %d payments, client CPU %.2fs",
			rep.InFlight, rep.ConnsPerNode, rep.ConnectionsOpened, rep.Acknowledged, rep.ClientCPUSeconds)
	}
}
