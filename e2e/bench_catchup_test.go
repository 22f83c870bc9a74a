package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
)

// TestBenchCatchUp measures how long a node that was down for N blocks
// takes, once restarted, to be current again: from the log (the others
// kept the entries) and by state transfer (the others compacted past it).
// It is a measurement, not a test of a bound: it runs only with
// TEEUP_BENCH=1 and logs its figures (BENCHMARKS.md).
//
//	TEEUP_BENCH=1 go test -count=1 -run TestBenchCatchUp -v ./e2e
func TestBenchCatchUp(t *testing.T) {
	if os.Getenv("TEEUP_BENCH") == "" {
		t.Skip("a benchmark: set TEEUP_BENCH=1")
	}
	for _, tc := range []struct {
		name    string
		blocks  uint64
		compact uint64
	}{
		{"log 100 blocks", 100, 1 << 20},
		{"log 1000 blocks", 1000, 1 << 20},
		{"state transfer 100 blocks", 100, 32},
		{"state transfer 1000 blocks", 1000, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := startNetOpts(t, devnet.UpOptions{Nodes: 4, RaftCompactEvery: tc.compact, BlockInterval: 50 * time.Millisecond})
			ctx := testCtx(t, 10*time.Minute)
			stop := tn.background(ctx, tn.load(0, 1, 2, 3))
			tn.waitHeight(ctx, 5)
			tn.stopNode(ctx, 4)
			from := tn.minHeight(ctx, 1, 2, 3)
			tn.waitHeight(ctx, from+tc.blocks, 1, 2, 3)
			start := time.Now()
			tn.startNode(4)
			tn.waitCurrent(ctx, 4)
			took := time.Since(start)
			stop()
			transferred := logHas(tn.host(4), "installed the state received from a peer")
			fmt.Printf("BENCH catch-up %s: %d blocks behind, current after %s (state transfer: %v)\n", tc.name, tc.blocks, took.Round(time.Millisecond), transferred)
			t.Logf("%d blocks behind: current after %s (state transfer %v)", tc.blocks, took.Round(time.Millisecond), transferred)
		})
	}
}
