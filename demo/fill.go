package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/loadgen"
	"github.com/teeup/teeup/nodeapi"
)

// Fill settings: enough senders to keep the network near its throughput
// (BENCHMARKS.md: ≈ 1,100–2,400 payments/s at 256 clients on 2 cores).
const (
	fillSenders      = 256
	fillFundEach     = 1_000_000
	fillPollInterval = 2 * time.Second
	fillMaxDuration  = 2 * time.Hour
)

// FillResult is what filling the ledger took.
type FillResult struct {
	// TargetBytes is the size asked for; Bytes the largest node ledger
	// directory when the load stopped.
	TargetBytes int64 `json:"target_bytes"`
	Bytes       int64 `json:"bytes"`
	// Payments acknowledged while filling, and how long it took.
	Payments int           `json:"payments"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// FillLedger sends payments from fresh funded accounts (as 'teeup bench
// payments' does) until the smallest node ledger directory holds at least
// target bytes, printing progress to out every few seconds: the demo runs
// its flag day on a ledger of a chosen size. The filling load is not
// verified payment by payment (the demo's own load is); a payment it sends
// that is rejected or unresolved is an error.
func FillLedger(ctx context.Context, net *devnet.Network, target int64, out io.Writer) (*FillResult, error) {
	start := time.Now()
	clients := make([]*nodeapi.Client, 0, len(net.Hosts))
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	nodes := make([]loadgen.Node, 0, len(net.Hosts))
	for i := range net.Hosts {
		c, err := net.DialNodeConns(ctx, &net.Hosts[i], fillSenders)
		if err != nil {
			return nil, fmt.Errorf("fill ledger: node %d: %w", net.Hosts[i].ID, err)
		}
		clients, nodes = append(clients, c), append(nodes, c)
	}
	users, recipients, err := userKeys(net)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	senders, err := loadgen.FundAccounts(fctx, nodes, net.ChainID, users, fillSenders, fillFundEach)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fill ledger: fund %d senders: %w", fillSenders, err)
	}
	dirs := make([]string, len(net.Hosts))
	for i, h := range net.Hosts {
		dirs[i] = layout.Node(h.DataDir).Ledger()
	}
	stop := make(chan struct{})
	watchErr := make(chan error, 1)
	var size int64
	go func() {
		var err error
		size, err = awaitSize(ctx, func() (int64, error) { return smallestDir(dirs) }, target, fillPollInterval, func(n int64) {
			el := time.Since(start).Seconds()
			fmt.Fprintf(out, "  filling: smallest node ledger %d of %d MB (%.0f s)\n", n>>20, target>>20, el)
		})
		close(stop)
		watchErr <- err
	}()
	lctx, cancel := context.WithTimeout(ctx, fillMaxDuration)
	defer cancel()
	res, runErr := loadgen.Run(lctx, loadgen.Config{
		Nodes: nodes, ChainID: net.ChainID, Accounts: senders, Recipients: recipients,
		Concurrency: len(senders), InFlight: 2, Stop: stop, Amount: 1,
	})
	cancel()
	if err := <-watchErr; err != nil {
		return nil, fmt.Errorf("fill ledger: %w", err)
	}
	if runErr != nil {
		return nil, fmt.Errorf("fill ledger: load: %w", runErr)
	}
	if res.Rejected > 0 || len(res.Unresolved) > 0 {
		return nil, fmt.Errorf("fill ledger: %d payments rejected, %d unresolved of %d", res.Rejected, len(res.Unresolved), res.Sent)
	}
	return &FillResult{TargetBytes: target, Bytes: size, Payments: res.Acknowledged, Elapsed: time.Since(start)}, nil
}

// awaitSize polls size every interval, reporting each reading to progress,
// until it reaches target (returning that reading) or ctx ends.
func awaitSize(ctx context.Context, size func() (int64, error), target int64, interval time.Duration, progress func(int64)) (int64, error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := size()
		if err != nil {
			return n, err
		}
		progress(n)
		if n >= target {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("ledger %d of %d bytes: %w", n, target, ctx.Err())
		case <-t.C:
		}
	}
}

// smallestDir returns the size of the smallest of dirs (the bytes of the
// regular files under it).
func smallestDir(dirs []string) (int64, error) {
	if len(dirs) == 0 {
		return 0, errors.New("no ledger directory")
	}
	var least int64 = -1
	for _, d := range dirs {
		n, err := dirBytes(d)
		if err != nil {
			return 0, err
		}
		if least < 0 || n < least {
			least = n
		}
	}
	return least, nil
}

// dirBytes sums the sizes of the regular files under dir. Files that
// vanish while it walks (Pebble deletes obsolete ones) are skipped.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return n, nil
}
