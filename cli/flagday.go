package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
)

// flagdayTarget resolves the network and the journal directory.
type flagdayTarget struct {
	devnetDir, topologyPath, journalDir string
}

func (t *flagdayTarget) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&t.devnetDir, "devnet", os.Getenv("TEEUP_DEVNET"), "devnet directory (env TEEUP_DEVNET)")
	f.StringVar(&t.topologyPath, "topology", "", "JSON topology (each host's node id and its admin and agent sockets or remote addresses, the operator key, root and measurements for remote hosts, NOG and test account key files) instead of --devnet")
	f.StringVar(&t.journalDir, "journal", "", "where flag-day journals live (default: the devnet directory, or the topology file's)")
}

func (t *flagdayTarget) resolve() (flagday.Topology, string, error) {
	switch {
	case t.topologyPath != "":
		raw, err := os.ReadFile(t.topologyPath)
		if err != nil {
			return flagday.Topology{}, "", fmt.Errorf("topology: %w", err)
		}
		var top flagday.Topology
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&top); err != nil {
			return flagday.Topology{}, "", fmt.Errorf("topology %s: %w", t.topologyPath, err)
		}
		root := t.journalDir
		if root == "" {
			root = filepath.Dir(t.topologyPath)
		}
		return top, root, top.Validate()
	case t.devnetDir != "":
		n, err := devnet.Load(t.devnetDir)
		if err != nil {
			return flagday.Topology{}, "", err
		}
		root := t.journalDir
		if root == "" {
			root = n.Dir
		}
		return flagday.FromDevnet(n), root, nil
	}
	return flagday.Topology{}, "", errors.New("say which network: --devnet DIR or --topology FILE")
}

func newFlagdayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flagday",
		Short: "Drive a network-wide enclave upgrade: plan, run, status, abort, rollback",
		Long: `A flag day moves every node to a new enclave at once, because peers accept only peers with an
identical MRENCLAVE. 'run' schedules it on chain (or, with --manual, runs it now), waits until
every node closed ingress and halted at the same height and hash with nothing in flight, has
every host's agent snapshot the ledger and the distribution state file and hand the keys to the
new enclave, checks that every new node attests every other, sends a self and a cross test
payment, reopens ingress and watches a live period. Any failure before ingress reopens rolls the
whole network back. Every step is journalled; running 'run' again resumes an interrupted one.`,
	}
	var t flagdayTarget
	var version string
	var manual, asJSON, finalize, noRollback, force bool
	var activationIn uint64
	var live, stepTimeout time.Duration
	var reason string
	opts := func(cmd *cobra.Command) (flagday.Options, error) {
		top, root, err := t.resolve()
		if err != nil {
			return flagday.Options{}, err
		}
		faults, err := flagdayFaults(cmd.ErrOrStderr())
		if err != nil {
			return flagday.Options{}, err
		}
		mode := flagday.Scheduled
		if manual {
			mode = flagday.Manual
		}
		return flagday.Options{Root: root, Topology: top, Version: version, Mode: mode, ActivationIn: activationIn,
			LivePeriod: live, StepTimeout: stepTimeout, Finalize: finalize, NoRollback: noRollback,
			Progress: stdoutOf(cmd), Faults: faults}, nil
	}

	plan := &cobra.Command{
		Use:   "plan --version V",
		Short: "Print the steps, the checks each makes, and the nodes' current state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(cmd)
			if err != nil {
				return err
			}
			if version == "" {
				return errors.New("flagday plan: --version is required")
			}
			p, err := flagday.Plan(cmd.Context(), o)
			if p != nil {
				if asJSON {
					if jerr := json.NewEncoder(stdoutOf(cmd)).Encode(p); jerr != nil {
						return jerr
					}
				} else {
					flagday.PrintPlan(stdoutOf(cmd), p)
				}
			}
			if err != nil {
				// An unreachable host is a failed check, not a plan.
				return &ExitError{Code: 1, Err: fmt.Errorf("flagday plan: %w", err)}
			}
			return nil
		},
	}
	run := &cobra.Command{
		Use:   "run --version V [--manual]",
		Short: "Run (or resume) the flag day; prints a live progress table and ends with a report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(cmd)
			if err != nil {
				return err
			}
			rec, runErr := flagday.Run(cmd.Context(), o)
			if rec != nil {
				path, err := flagday.WriteReport(o.Root, rec)
				if err == nil {
					fmt.Fprintf(stdoutOf(cmd), "\nreport: %s\nevents: %s\n\n", path, filepath.Join(filepath.Dir(path), "events.jsonl"))
				}
				flagday.Summarize(stdoutOf(cmd), rec)
			}
			if runErr != nil {
				return &ExitError{Code: 1, Err: runErr}
			}
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the current (or last) flag day's journal",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, root, err := t.resolve()
			if err != nil {
				return err
			}
			rec, err := flagday.Current(root)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(stdoutOf(cmd), rec)
			}
			flagday.Summarize(stdoutOf(cmd), rec)
			return nil
		},
	}
	abort := &cobra.Command{
		Use:   "abort [--reason TEXT]",
		Short: "Stop an unfinished flag day and roll the network back (before ingress reopened)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(cmd)
			if err != nil {
				return err
			}
			rec, err := flagday.Abort(cmd.Context(), o, reason)
			if rec != nil {
				flagday.Summarize(stdoutOf(cmd), rec)
			}
			return err
		},
	}
	rollback := &cobra.Command{
		Use:   "rollback [--force] [--reason TEXT]",
		Short: "Roll back a completed flag day (refuses, saying what would be lost, unless --force)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(cmd)
			if err != nil {
				return err
			}
			rec, loss, err := flagday.RollbackCompleted(cmd.Context(), o, force, reason)
			if loss != nil && loss.Transactions > 0 {
				fmt.Fprintf(stdoutOf(cmd), "rolling back discards %d transactions in blocks %d..%d\n", loss.Transactions, loss.FromHeight, loss.ToHeight)
			}
			if rec != nil && err == nil {
				flagday.Summarize(stdoutOf(cmd), rec)
			}
			return err
		},
	}
	rollout := &cobra.Command{
		Use:   "rollout --version V",
		Short: "Roll out a release that changes no enclave (same node MRENCLAVE) host by host, with no flag day",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(cmd)
			if err != nil {
				return err
			}
			if version == "" {
				return errors.New("flagday rollout: --version is required")
			}
			res, err := flagday.Rollout(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdoutOf(cmd), "release %s rolled out on %d hosts without a flag day\n", res.Version, len(res.Hosts))
			return nil
		},
	}
	step := &cobra.Command{
		Use:   "step NAME [--manual --version V]",
		Short: "Run one step of the current flag day on its own (manual coordination by call)",
		Long: `Run a single step of the current flag day, or start a new one (with --version) and run its
first step. Steps are idempotent and verify their preconditions; a failed step does not roll
back — decide on the call to run it again or 'teeup flagday abort'. Manual-mode steps, in order:
preflight, close-ingress, halt-at-height, upgrade-hosts, resume-chain, verify-chain,
verify-attestation, test-payments, reopen-ingress, live-period.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := opts(cmd)
			if err != nil {
				return err
			}
			rec, err := flagday.RunStep(cmd.Context(), o, args[0])
			if rec != nil {
				flagday.Summarize(stdoutOf(cmd), rec)
			}
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			return nil
		},
	}
	var once bool
	var reportPath string
	observe := &cobra.Command{
		Use:   "observe [--once] [--report FILE]",
		Short: "Watch a coordinator-free flag day on every host (reads only; casts no vote)",
		Long: `With coordinator-free agents every host decides its part of a flag day from the chain. 'observe'
runs on any machine: it reads every host's node (the chain's readiness records, failure votes and
outcome) and agent (the host's journalled part) over the topology's sockets or remote admin APIs
— another operator's host is read with this operator's key — draws the progress table until every
host settled, and writes the report (JSON) from what the chain and the agents' journals hold. It
changes nothing; operators vote with 'teeup release schedule|abort'. Exits 1 if the hosts did not
all end the same way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			top, _, err := t.resolve()
			if err != nil {
				return err
			}
			var progress io.Writer = stdoutOf(cmd)
			if asJSON {
				progress = nil
			}
			o, err := flagday.Observe(cmd.Context(), flagday.ObserveOptions{Topology: top, Once: once, Progress: progress})
			if o == nil {
				return err
			}
			if reportPath != "" {
				raw, merr := o.MarshalReport()
				if merr != nil {
					return merr
				}
				if werr := os.WriteFile(reportPath, append(raw, '\n'), 0o644); werr != nil {
					return werr
				}
			}
			if asJSON {
				if perr := printJSON(stdoutOf(cmd), o); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			if o.Settled && o.Outcome == "" {
				return &ExitError{Code: 1, Err: errors.New("the hosts did not all end the flag day the same way")}
			}
			return nil
		},
	}
	observe.Flags().BoolVar(&once, "once", false, "observe once and exit")
	observe.Flags().StringVar(&reportPath, "report", "", "write the report (JSON) to this file")
	for _, c := range []*cobra.Command{plan, run, status, abort, rollback, rollout, step, observe} {
		t.bind(c)
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		cmd.AddCommand(c)
	}
	rollout.Flags().StringVar(&version, "version", "", "approved release to roll out")
	for _, c := range []*cobra.Command{plan, run, abort, rollback, step} {
		c.Flags().StringVar(&version, "version", "", "approved release to upgrade to")
		c.Flags().BoolVar(&manual, "manual", false, "run now without on-chain scheduling (networks that coordinate by call)")
		c.Flags().Uint64Var(&activationIn, "activation-in", 15, "scheduled mode: blocks from now to the activation height (at least 15)")
		c.Flags().DurationVar(&live, "live-period", 10*time.Second, "how long to watch after reopening")
		c.Flags().DurationVar(&stepTimeout, "step-timeout", 2*time.Minute, "how long any one step may wait")
		c.Flags().BoolVar(&finalize, "finalize", false, "after the live period, delete the old version's keys on every host (no rollback after)")
		c.Flags().BoolVar(&noRollback, "no-rollback", false, "on failure, stop where it failed instead of rolling back")
	}
	for _, c := range []*cobra.Command{abort, rollback} {
		c.Flags().StringVar(&reason, "reason", "operator decision", "why (recorded on chain and in the journal)")
	}
	rollback.Flags().BoolVar(&force, "force", false, "roll back even though transactions committed after the activation height are lost")
	return cmd
}
