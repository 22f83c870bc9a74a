package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
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
	top, root, err := t.load()
	if err != nil {
		return top, root, err
	}
	return top, root, top.Validate()
}

// load is resolve without the topology's validation (the coordinator-free
// preflight names a duplicate entry as a blocker, with every other one).
func (t *flagdayTarget) load() (flagday.Topology, string, error) {
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
		return top, root, nil
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
		Short: "Network-wide enclave upgrades: run (observe and vote), observe, or the legacy coordinator",
		Long: `A flag day moves every node to a new enclave at once, because peers accept only peers with an
identical MRENCLAVE. There is exactly one owner of a flag day's rollback per network:

  coordinator-free agents (the default): every host's agent decides its part from the chain —
  hands over at the activation height, proves the new node, records readiness, rolls its own
  host back and votes failure if it must, finalizes after the live period. 'run' and 'observe'
  run on any machine and change nothing on a host: 'run' checks every host (preflight), casts
  only this operator's schedule vote, and observes until every host settled.

  coordinated agents (agent.json flag_day.coordinated): 'coordinate' drives every step from one
  machine and owns the rollback; 'step', 'abort' and 'rollback' are its parts. The coordinator
  refuses a network whose agents are coordinator-free, and 'run' refuses coordinated agents.`,
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
		Short: "Print the coordinator's steps, the checks each makes, and the nodes' current state",
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
	coordinate := &cobra.Command{
		Use:   "coordinate --version V [--manual]",
		Short: "Coordinated agents only: drive (or resume) the flag day from here, owning its rollback",
		Long: `The legacy coordinator, for networks whose agents are configured flag_day.coordinated (and for
manual coordination by call, --manual). It schedules the flag day on chain with the topology's Node
Operators Group keys (or, with --manual, runs it now), waits until every node closed ingress and
halted at the same height and hash with nothing in flight, has every host's agent snapshot the
ledger and the distribution state file and hand the keys to the new enclave, checks that every new
node attests every other, sends a self and a cross test payment, reopens ingress and watches a live
period. Any failure before ingress reopens rolls the whole network back: the coordinator is the
network's one rollback owner. Every step is journalled; running 'coordinate' again resumes an
interrupted one. It refuses (exit 1) when any host's agent is coordinator-free: use 'run'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := opts(cmd)
			if err != nil {
				return err
			}
			rec, runErr := flagday.Run(cmd.Context(), o)
			if rec != nil {
				path, err := flagday.WriteReport(o.Root, rec)
				if err == nil {
					fmt.Fprintf(stdoutOf(cmd), "\nreport: %s\nevents: %s\n\n", path, layout.FlagDaysUnder(o.Root).FlagDay(rec.ID).Events())
				}
				flagday.Summarize(stdoutOf(cmd), rec)
			}
			if runErr != nil {
				return &ExitError{Code: 1, Err: runErr}
			}
			return nil
		},
	}
	var height, in uint64
	var key, reportPath string
	var wait time.Duration
	run := &cobra.Command{
		Use:   "run --version V [--height H | --in N] [--key NOG_KEY] [--report FILE]",
		Short: "Coordinator-free agents: preflight, cast this operator's schedule vote, observe to the end",
		Long: `The flag day of a network whose agents are coordinator-free, as one operator runs it on any
machine. 'run' reads every host's node and agent over the topology's sockets or remote admin APIs
and checks them (the preflight): the release is approved and newer than the running one, each
agent staged and verified it and holds no unfinished upgrade, each node is healthy and current and
answers as its topology entry's node id, no host is listed twice, every agent is coordinator-free.
It exits 1 naming every blocker. Then it casts only this operator's Node Operators Group vote to
schedule the flag day at H (--height; else the height another member voted; else --in blocks above
the head) — the other operators vote with 'teeup release schedule V --height H' — and observes
until every host settled, drawing the progress table, and writes the report (--report). Without
--key it casts no vote and only observes. It never stops, rolls back or triggers anything on a
host: each agent owns its host's part and its rollback, so killing 'run' changes nothing (restart
it, or 'observe'). Run again after the schedule is in force, it only observes. Exits 1 unless
every host ended ready on V; refuses (exit 1) coordinated agents: use 'coordinate'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			top, _, err := t.load()
			if err != nil {
				return err
			}
			if version == "" {
				return errors.New("flagday run: --version is required")
			}
			if height != 0 && cmd.Flags().Changed("in") {
				return errors.New("flagday run: give --height or --in, not both")
			}
			opt := flagday.FreeOptions{Topology: top, Version: version, Height: height, In: in}
			if !asJSON {
				opt.Progress = stdoutOf(cmd)
			}
			if key != "" {
				out := io.Discard
				if !asJSON {
					out = stdoutOf(cmd)
				}
				v, err := newScheduleVoter(t.devnetDir, key, top.ChainID, wait, out)
				if err != nil {
					return fmt.Errorf("flagday run: %w", err)
				}
				opt.Voter = v
			}
			res, runErr := flagday.RunFree(cmd.Context(), opt)
			var pe *flagday.PreflightError
			if errors.As(runErr, &pe) {
				if asJSON {
					_ = printJSON(stdoutOf(cmd), res)
				}
				w := cmd.ErrOrStderr()
				fmt.Fprintf(w, "flagday run: the flag day to %s is blocked:\n", version)
				for _, b := range pe.Blockers {
					fmt.Fprintf(w, "  %s\n", b)
				}
				if errors.Is(runErr, flagday.ErrAgentsCoordinated) {
					fmt.Fprintln(w, "coordinated agents leave the flag day (and its rollback) to the coordinator: use 'teeup flagday coordinate'")
				}
				return &ExitError{Code: 1, Err: errors.New("flagday run: preflight failed")}
			}
			if res == nil || res.Observation == nil {
				return runErr
			}
			if err := writeObservation(cmd, res.Observation, reportPath, asJSON, res); err != nil {
				return err
			}
			if runErr != nil {
				return runErr
			}
			return observedOutcome(res.Observation, true)
		},
	}
	run.Flags().Uint64Var(&height, "height", 0, "activation height to vote for (default: the one another member voted, else --in above the head)")
	run.Flags().Uint64Var(&in, "in", ledger.MinScheduleLead+5, "blocks above the head to schedule at, without --height")
	run.Flags().StringVar(&key, "key", "", "this operator's Node Operators Group key file (with --devnet: a key name such as nog-1); without it no vote is cast")
	run.Flags().DurationVar(&wait, "wait", 30*time.Second, "when the node's answer does not say whether the vote was committed, how long to look it up")
	status := &cobra.Command{
		Use:   "status",
		Short: "Coordinated agents only: show the coordinator's current (or last) flag-day journal",
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
		Short: "Coordinated agents only: stop the coordinator's unfinished flag day and roll the network back (before ingress reopened)",
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
		Short: "Coordinated agents only: roll back the coordinator's completed flag day (refuses, saying what would be lost, unless --force)",
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
		Short: "Coordinated agents only: run one step of the coordinator's flag day (manual coordination by call)",
		Long: `Run a single step of the coordinator's current flag day, or start a new one (with --version) and run its
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
	observe := &cobra.Command{
		Use:   "observe [--once] [--report FILE]",
		Short: "Watch a coordinator-free flag day on every host (reads only; casts no vote)",
		Long: `With coordinator-free agents every host decides its part of a flag day from the chain. 'observe'
runs on any machine: it reads every host's node (the chain's readiness records, failure votes and
outcome) and agent (the host's journalled part) over the topology's sockets or remote admin APIs
— another operator's host is read with this operator's key — draws the progress table until every
host settled, and writes the report (JSON) from what the chain and the agents' journals hold. It
changes nothing; operators vote with 'teeup release schedule|abort' (or 'teeup flagday run').
Exits 1 if the hosts did not all end the same way.`,
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
			if werr := writeObservation(cmd, o, reportPath, asJSON, o); werr != nil {
				return werr
			}
			if err != nil {
				return err
			}
			return observedOutcome(o, false)
		},
	}
	observe.Flags().BoolVar(&once, "once", false, "observe once and exit")
	for _, c := range []*cobra.Command{run, observe} {
		c.Flags().StringVar(&reportPath, "report", "", "write the report (JSON: every host's node, chain and agent view, the readiness records) to this file")
	}
	for _, c := range []*cobra.Command{run, plan, coordinate, status, abort, rollback, rollout, step, observe} {
		t.bind(c)
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		cmd.AddCommand(c)
	}
	rollout.Flags().StringVar(&version, "version", "", "approved release to roll out")
	run.Flags().StringVar(&version, "version", "", "approved release to upgrade to")
	for _, c := range []*cobra.Command{plan, coordinate, abort, rollback, step} {
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

// writeObservation writes the observer's report (JSON) to path, if one is
// given, and prints v as JSON when asked.
func writeObservation(cmd *cobra.Command, o *flagday.Observation, path string, asJSON bool, v any) error {
	if path != "" {
		raw, err := o.MarshalReport()
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if !asJSON {
			fmt.Fprintf(stdoutOf(cmd), "report: %s\n", path)
		}
	}
	if asJSON {
		return printJSON(stdoutOf(cmd), v)
	}
	return nil
}

// observedOutcome is the exit status of an observation: 1 if the hosts
// settled differently, or — needReady — unless every host ended ready.
func observedOutcome(o *flagday.Observation, needReady bool) error {
	switch {
	case o.Settled && o.Outcome == "":
		return &ExitError{Code: 1, Err: errors.New("the hosts did not all end the flag day the same way")}
	case needReady && o.Outcome != decide.OutcomeReady:
		return &ExitError{Code: 1, Err: fmt.Errorf("the flag day to %s at height %d did not complete: outcome %q", o.Version, o.ActivationHeight, o.Outcome)}
	}
	return nil
}

// scheduleVoter casts one operator's schedule vote for 'teeup flagday
// run': the vote of 'teeup release schedule' (scheduleVote,
// submitGovernanceVia) through a node of the topology.
type scheduleVoter struct {
	key     ed25519.PrivateKey
	member  string
	chainID string
	wait    time.Duration
	out     io.Writer
}

func newScheduleVoter(devnetDir, name, chainID string, wait time.Duration, out io.Writer) (*scheduleVoter, error) {
	e := endpoint{devnetDir: devnetDir}
	k, err := keyfile.ReadPrivate(e.keyPath(name))
	if err != nil {
		return nil, err
	}
	addr, err := ledger.AddressOf(k.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &scheduleVoter{key: k, member: addr.String(), chainID: chainID, wait: wait, out: out}, nil
}

// Member implements flagday.Voter.
func (v *scheduleVoter) Member() string { return v.member }

// VoteSchedule implements flagday.Voter.
func (v *scheduleVoter) VoteSchedule(ctx context.Context, a *nodeapi.AdminClient, version string, height uint64) error {
	kind, payload := scheduleVote(version, height)
	res, err := submitGovernanceVia(ctx, adminGovernance{a}, v.chainID, v.key, v.wait, "flagday run: schedule vote", kind, payload)
	if err != nil {
		return err
	}
	printScheduleVote(v.out, res, version, height)
	return nil
}
