package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/distribute"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// clientsFor returns an attested client per node that accepts the
// measurements of both versions (clients keep working across the upgrade).
func clientsFor(net *devnet.Network) ([]*nodeapi.Client, error) {
	var out []*nodeapi.Client
	for _, h := range net.Hosts {
		c, err := nodeapi.Dial(nodeapi.DialConfig{Addr: h.ClientAddr, RootPath: net.RootCert(), MREnclaves: net.AcceptedMeasurements()})
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// userKeys returns the devnet's user keys (senders) and their addresses
// (recipients).
func userKeys(net *devnet.Network) ([]ed25519.PrivateKey, []ledger.Address, error) {
	var keys []ed25519.PrivateKey
	var addrs []ledger.Address
	for i := 1; i <= devnet.UserCount; i++ {
		k, err := keyfile.ReadPrivate(net.KeyPath(fmt.Sprintf("user-%d", i)))
		if err != nil {
			return nil, nil, err
		}
		a, err := ledger.AddressOf(k.Public().(ed25519.PublicKey))
		if err != nil {
			return nil, nil, err
		}
		keys, addrs = append(keys, k), append(addrs, a)
	}
	return keys, addrs, nil
}

func admins(net *devnet.Network) map[uint64]*nodeapi.AdminClient {
	out := map[uint64]*nodeapi.AdminClient{}
	for _, h := range net.Hosts {
		out[h.ID] = nodeapi.NewAdminClient(h.AdminSocket)
	}
	return out
}

func verifyVersions(ctx context.Context, net *devnet.Network, rel *devnet.Release) error {
	for id, a := range admins(net) {
		st, err := a.Status(ctx)
		a.Close()
		if err != nil {
			return fmt.Errorf("node %d: %w", id, err)
		}
		if st.MREnclave != rel.NodeMREnclave || st.SchemaVersion != V2Schema {
			return fmt.Errorf("node %d runs %s (%s) at schema %d", id, st.MREnclave.Short(), st.Version, st.SchemaVersion)
		}
	}
	return nil
}

// verifyBlocks compares every block hash, from genesis to the lowest head,
// on every node.
func verifyBlocks(ctx context.Context, net *devnet.Network) (uint64, error) {
	as := admins(net)
	defer func() {
		for _, a := range as {
			a.Close()
		}
	}()
	var low uint64 = ^uint64(0)
	for id, a := range as {
		h, err := a.Head(ctx)
		if err != nil {
			return 0, fmt.Errorf("node %d: %w", id, err)
		}
		low = min(low, h.Height)
	}
	for ht := uint64(0); ht <= low; ht++ {
		var ref string
		for id, a := range as {
			b, err := a.Block(ctx, ht)
			if err != nil {
				return ht, fmt.Errorf("node %d block %d: %w", id, ht, err)
			}
			if ref == "" {
				ref = b.Hash
			} else if b.Hash != ref {
				return ht, fmt.Errorf("block %d differs between nodes", ht)
			}
		}
	}
	return low, nil
}

// verifyBalances compares every genesis account's balance on every node,
// at one common height (blocks keep coming: the nodes are first halted at
// the same height through the admin API, then the halt is cleared).
func verifyBalances(ctx context.Context, net *devnet.Network) (int, error) {
	g, err := ledger.LoadGenesis(net.GenesisPath())
	if err != nil {
		return 0, err
	}
	as := admins(net)
	defer func() {
		for _, a := range as {
			a.Close()
		}
	}()
	first := as[net.Hosts[0].ID]
	head, err := first.Head(ctx)
	if err != nil {
		return 0, err
	}
	target := head.Height + 2
	if _, err := first.Halt(ctx, target); err != nil {
		return 0, fmt.Errorf("hold the network at height %d for the comparison: %w", target, err)
	}
	defer func() { _, _ = first.Halt(context.WithoutCancel(ctx), 0) }()
	deadline := time.Now().Add(30 * time.Second)
	for id, a := range as {
		for {
			h, err := a.Head(ctx)
			if err == nil && h.Height == target {
				break
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("node %d did not reach height %d", id, target)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, acc := range g.Accounts {
		var ref *nodeapi.Account
		for id, a := range as {
			got, err := a.Account(ctx, acc.Address.String())
			if err != nil {
				return 0, fmt.Errorf("node %d: %w", id, err)
			}
			if ref == nil {
				ref = got
			} else if got.Balance != ref.Balance || got.Nonce != ref.Nonce {
				return 0, fmt.Errorf("account %s (%s): node %d has balance %d nonce %d, another has %d/%d", acc.Label, acc.Address.String()[:12], id, got.Balance, got.Nonce, ref.Balance, ref.Nonce)
			}
		}
	}
	return len(g.Accounts), nil
}

// verifyDistribution checks that every host's distribution published
// blocks past the activation height, each identical to the node's.
func verifyDistribution(ctx context.Context, net *devnet.Network) (string, error) {
	var total int
	for _, h := range net.Hosts {
		// Each host gets its own wait: comparing a big ledger's blocks on
		// the hosts before it takes time of its own.
		deadline := time.Now().Add(20 * time.Second)
		a := nodeapi.NewAdminClient(h.AdminSocket)
		head, err := a.Head(ctx)
		if err != nil {
			a.Close()
			return "", err
		}
		var st distribute.State
		for {
			st, err = distribute.LoadState(h.DistState)
			if err == nil && st.NextBlock > head.Height {
				break
			}
			if time.Now().After(deadline) {
				a.Close()
				return "", fmt.Errorf("host %d published blocks 0..%d within 20 s, its node is at %d", h.ID, int64(st.NextBlock)-1, head.Height)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for ht := uint64(0); ht < st.NextBlock; ht++ {
			got, err := os.ReadFile(filepath.Join(h.DistDir, distribute.ObjectName(ht)))
			if err != nil {
				a.Close()
				return "", fmt.Errorf("host %d: block %d missing from distribution: %w", h.ID, ht, err)
			}
			want, err := a.RawBlock(ctx, ht)
			if err != nil {
				a.Close()
				return "", err
			}
			if !bytes.Equal(got, want) {
				a.Close()
				return "", fmt.Errorf("host %d: distributed block %d differs from the node's", h.ID, ht)
			}
			total++
		}
		a.Close()
	}
	return fmt.Sprintf("%d published blocks identical to the nodes' (all %d hosts, across the upgrade)", total, len(net.Hosts)), nil
}

func fileHash(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(raw)
	return hex.EncodeToString(s[:]), nil
}

// Print writes the report for humans.
func Print(w io.Writer, r *Report) {
	fmt.Fprintln(w)
	if o := r.FlagDay; o != nil {
		fmt.Fprintf(w, "flag day to %s at height %d, coordinator-free: %s on every host; readiness records %s\n",
			o.Version, o.ActivationHeight, observedOutcome(o), readinessOf(o))
		fmt.Fprintf(w, "  scheduled by %d operators' votes, one at a time; then no coordinator acted\n", len(r.Votes))
		if r.ObserverReport != "" {
			fmt.Fprintf(w, "  observer report: %s\n", r.ObserverReport)
		}
		fmt.Fprintln(w)
		o.WriteTable(w)
		fmt.Fprintln(w)
	}
	if f := r.Fill; f != nil {
		fmt.Fprintf(w, "ledger filled before the flag day: every node's ledger at least %d MB (asked %d MB), %d payments in %s\n\n",
			f.Bytes>>20, f.TargetBytes>>20, f.Payments, f.Elapsed.Round(time.Second))
	}
	if r.Downtime != nil {
		printDowntime(w, r.Downtime)
		fmt.Fprintln(w)
	}
	if l := r.Load; l != nil {
		fmt.Fprintf(w, "client load: %d payments sent, %d acknowledged, %d rejected, %d unanswered when the load stopped; %d attempts answered \"closed for upgrade\" and retried\n",
			l.Sent, l.Acknowledged, l.Rejected, l.Unresolved, l.ClosedForUpgrade)
		fmt.Fprintf(w, "  %.1f payments/s; commit latency p50 %s, p99 %s, max %s (max spans the upgrade: clients waited for ingress to reopen)\n\n",
			l.Throughput, l.P50.Round(time.Millisecond), l.P99.Round(time.Millisecond), l.Max.Round(time.Millisecond))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tTIME")
	for _, p := range r.StepTimes {
		fmt.Fprintf(tw, "%s\t%s\n", p.Name, p.Duration.Round(time.Millisecond))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, c := range r.Checks {
		res := "PASS"
		if !c.OK {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, res, c.Detail)
	}
	tw.Flush()
	verdict := "every check passed"
	if !r.OK() {
		verdict = "SOME CHECKS FAILED"
	}
	fmt.Fprintf(w, "\ndemo finished in %s: %s (files in %s)\n", r.Elapsed.Round(100*time.Millisecond), verdict, r.Dir)
}

// WriteJSON writes the report as JSON.
func WriteJSON(path string, r *Report) error {
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}
