package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/demo"
)

func newDemoCmd() *cobra.Command {
	var opt demo.Options
	var verbose bool
	var ledgerSize string
	cmd := &cobra.Command{
		Use:   "demo [--dir DIR]",
		Short: "Build two node versions, run a 4-node network under load, upgrade it by a coordinator-free flag day, verify, report",
		Long: `The end-to-end demonstration. It builds teeup-node at version 1.0.0 (ledger schema 1) and
2.0.0 (schema 3: their MRENCLAVEs differ), starts a 4-node devnet on simulated SGX hosts with
coordinator-free agents and ledger distribution, sends payments under continuous load, signs
release 2.0.0 with the Key Management Group and approves it on chain with the Node Operators
Group. Then the operators vote the flag day's schedule one at a time, each through its own host
(as 'teeup release schedule' does), and nothing else acts: every agent hands over at the
activation height, proves its new node and records readiness on chain, and the new nodes reopen
ingress by the chain's rule. The demo only observes ('teeup flagday observe': progress in
DIR/flagday-progress.log, report in DIR/flagday-observe.json), measures the client downtime
from the load generator's side with its breakdown (reach H, handover, the new network's first
commit, readiness, reopen; per host from the agents' journals), verifies that no acknowledged
payment was lost and that every node holds identical blocks and balances, and prints a report
(DIR/demo-report.json). It exits 1 if any check failed.

--ledger-size 1GB first fills every node's ledger to that size (payments from 256 fresh
accounts, progress printed; about 1 KB of ledger per payment, so 1 GB takes some minutes), so
the flag day and its downtime breakdown are measured on a ledger of that size. --no-migration
builds 1.0.0 at schema 3 too: the flag day then changes the enclave only (no data migration,
whose cost grows with the ledger). Run it from the teeup checkout after
'make build' (or simply 'make demo').`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := stdoutOf(cmd)
			if ledgerSize != "" {
				mb, err := parseMB(ledgerSize)
				if err != nil {
					return fmt.Errorf("--ledger-size: %w", err)
				}
				opt.LedgerSize = int64(mb) << 20
			}
			if opt.Dir == "" {
				d, err := os.MkdirTemp("", "teeup-demo-")
				if err != nil {
					return err
				}
				opt.Dir = d
			}
			abs, err := filepath.Abs(opt.Dir)
			if err != nil {
				return err
			}
			opt.Dir = abs
			if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
				return err
			}
			opt.Out = out
			progress, err := os.Create(filepath.Join(opt.Dir, "flagday-progress.log"))
			if err != nil {
				return err
			}
			defer progress.Close()
			opt.Detail = progress
			if verbose {
				opt.Detail = io.MultiWriter(progress, out)
			}
			fmt.Fprintf(out, "teeup demo in %s\n", opt.Dir)
			rep, err := demo.Run(cmd.Context(), opt)
			if err != nil {
				return err
			}
			demo.Print(out, rep)
			if err := demo.WriteJSON(filepath.Join(opt.Dir, "demo-report.json"), rep); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the JSON report was not written: %v\n", err)
			}
			if !rep.OK() {
				return &ExitError{Code: 1, Err: fmt.Errorf("demo: some checks failed (see above and %s)", filepath.Join(opt.Dir, "demo-report.json"))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opt.Dir, "dir", "", "working directory (default: a new temporary directory)")
	cmd.Flags().StringVar(&opt.Source, "source", "", "teeup source tree to build from (default: the module of the working directory)")
	cmd.Flags().StringVar(&opt.BinDir, "bin", "", "directory holding teeup-agent and teeup-distribute (default: next to teeup)")
	cmd.Flags().IntVar(&opt.Nodes, "nodes", 4, "number of nodes")
	cmd.Flags().Float64Var(&opt.Rate, "rate", 40, "payments per second during the demo")
	cmd.Flags().DurationVar(&opt.LivePeriod, "live-period", 5*time.Second, "how long the load keeps running on 2.0.0 after every host settled")
	cmd.Flags().StringVar(&ledgerSize, "ledger-size", "", "fill every node's ledger to this size (e.g. 1GB) before the flag day; default: the demo's own load only")
	cmd.Flags().BoolVar(&opt.NoMigration, "no-migration", false, "build 1.0.0 at 2.0.0's ledger schema: the flag day changes the enclave only, no data migration")
	cmd.Flags().BoolVar(&opt.Keep, "keep", false, "leave the network running at the end")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the observer's live progress table")
	return cmd
}
