package loadgen

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/teeup/teeup/ledger"
)

// FundAccounts creates n fresh ed25519 accounts and pays amount into each
// from the funders (concurrently, one worker per funder), returning once
// every funding payment is committed. It lets a run use more sender
// accounts (more concurrency) than a network's genesis provides. Give ctx
// a deadline: a payment that cannot be committed is retried until it ends.
func FundAccounts(ctx context.Context, nodes []Node, chainID string, funders []ed25519.PrivateKey, n int, amount uint64) ([]ed25519.PrivateKey, error) {
	if n <= 0 {
		return nil, fmt.Errorf("fund accounts: want a positive number of accounts, got %d", n)
	}
	keys := make([]ed25519.PrivateKey, n)
	addrs := make([]ledger.Address, n)
	for i := range keys {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("fund accounts: generate key: %w", err)
		}
		keys[i], addrs[i] = k, addressOf(k)
	}
	res, err := Run(ctx, Config{
		Nodes: nodes, ChainID: chainID, Accounts: funders, Recipients: addrs,
		Concurrency: min(len(funders), n), Payments: n, Amount: amount,
	})
	if err != nil {
		return nil, fmt.Errorf("fund accounts: %w", err)
	}
	if res.Rejected > 0 || len(res.Unresolved) > 0 {
		var reasons []error
		for _, r := range res.RejectedTxs {
			reasons = append(reasons, fmt.Errorf("to %s: %s", short(r.To), r.Reason))
		}
		return nil, fmt.Errorf("fund accounts: %d of %d funding payments rejected, %d unresolved: %w",
			res.Rejected, n, len(res.Unresolved), errors.Join(reasons...))
	}
	funded := make(map[ledger.Address]int, n)
	for _, a := range res.Acked {
		funded[a.To]++
	}
	for i, a := range addrs {
		if funded[a] != 1 {
			return nil, fmt.Errorf("fund accounts: account %d (%s) received %d funding payments, want 1", i, short(a), funded[a])
		}
	}
	return keys, nil
}
