package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/agentapi"
)

func newUpgradeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Drive one host's upgrade agent: stage a release, hand the keys over, roll back, finalize",
		Long: `A key-handover upgrade on one host, as in the DCNode seed: the agent downloads and verifies a
network-signed release, takes the application keys from the running node through a local
attestation challenge, seals them, stops the old node, starts the new one, checks its
network-signed enclave ID and hands the keys over. The release must be approved on chain
(teeup release propose/approve) after the running one. Every step is journalled; a crash
resumes or rolls back.`,
	}
	var t agentTarget
	var asJSON bool
	printRecord := func(w io.Writer, rec *agentapi.UpgradeRecord) error {
		if asJSON {
			return printJSON(w, rec)
		}
		return writeUpgradeRecord(w, rec)
	}

	stage := &cobra.Command{
		Use:   "stage RELEASE.json",
		Short: "Have the agent download and verify a signed release",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("upgrade stage: %w", err)
			}
			c, err := t.client()
			if err != nil {
				return err
			}
			defer c.Close()
			inst, err := c.Stage(cmd.Context(), raw)
			if err != nil {
				return fmt.Errorf("upgrade stage: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "staged %s: %s (node MRENCLAVE %s)\n", inst.Version, inst.NodeBinary, inst.NodeMREnclave)
			return nil
		},
	}
	var version string
	var noRollback bool
	local := &cobra.Command{
		Use:   "local --version V",
		Short: "Hand the keys over to a staged, approved release on this host now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if version == "" {
				return errors.New("upgrade local: --version is required")
			}
			c, err := t.client()
			if err != nil {
				return err
			}
			defer c.Close()
			start := time.Now()
			rec, err := c.Upgrade(cmd.Context(), agentapi.UpgradeRequest{Version: version, NoRollback: noRollback})
			if err != nil {
				var ae *agentapi.Error
				if errors.As(err, &ae) && ae.Upgrade != nil {
					_ = printRecord(stdoutOf(cmd), ae.Upgrade)
				}
				return fmt.Errorf("upgrade local: %w", err)
			}
			if err := printRecord(stdoutOf(cmd), rec); err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(stdoutOf(cmd), "upgrade to %s completed in %s; finalize with 'teeup upgrade finalize' once satisfied (until then 'teeup upgrade rollback' restores %s)\n",
					rec.To.Version, time.Since(start).Round(time.Millisecond), rec.From.Version)
			}
			return nil
		},
	}
	local.Flags().StringVar(&version, "version", "", "staged release version to upgrade to")
	local.Flags().BoolVar(&noRollback, "no-rollback", false, "on failure, stop where it failed instead of rolling back")

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the agent: installed version, staged releases, the current upgrade",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := t.client()
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			w := stdoutOf(cmd)
			if asJSON {
				return printJSON(w, st)
			}
			fmt.Fprintf(w, "agent %s (MRENCLAVE %s) on host %d\ninstalled %s (node MRENCLAVE %s)\nnode pid %d %s\nstaged %v\n",
				st.Version, st.MREnclave.Short(), st.NodeID, st.Installed.Version, st.Installed.NodeMREnclave.Short(), st.NodePID, st.NodeBinary, st.Staged)
			if r := st.NodeRefused; r != nil {
				fmt.Fprintf(w, "NODE NOT STARTED (%s since %s): %s\n  the agent verifies the binary before every start; install the signed release's binary, or roll back or upgrade\n",
					r.Cause, r.Since.Format(time.RFC3339), r.Error)
			}
			if a := st.AgentUpgrade; a != nil {
				fmt.Fprintf(w, "agent self-upgrade %s: %s -> %s (release %s) %s", a.ID, a.From.MREnclave.Short(), a.To.MREnclave.Short(), a.To.Version, a.Phase)
				if a.Error != "" {
					fmt.Fprintf(w, " (attempt %d: %s; retry at %s)", a.Attempts, a.Error, a.RetryAt.Format(time.RFC3339))
				}
				fmt.Fprintln(w)
			}
			if st.Upgrade != nil {
				return writeUpgradeRecord(w, st.Upgrade)
			}
			return nil
		},
	}
	var reason string
	var force bool
	rollback := &cobra.Command{
		Use:   "rollback [--reason TEXT]",
		Short: "Undo the current upgrade: restore the snapshot and restart the old version with its own keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := t.client()
			if err != nil {
				return err
			}
			defer c.Close()
			rec, err := c.Rollback(cmd.Context(), agentapi.RollbackRequest{Reason: reason, Force: force})
			if err != nil {
				return fmt.Errorf("upgrade rollback: %w", err)
			}
			return printRecord(stdoutOf(cmd), rec)
		},
	}
	rollback.Flags().StringVar(&reason, "reason", "operator rollback", "why (journalled)")
	rollback.Flags().BoolVar(&force, "force", false, "roll back even if the new version committed transactions since the snapshot (they are lost)")
	finalize := &cobra.Command{
		Use:   "finalize",
		Short: "Make a completed upgrade permanent (deletes the old version's sealed keys: no rollback after this)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := t.client()
			if err != nil {
				return err
			}
			defer c.Close()
			rec, err := c.Finalize(cmd.Context())
			if err != nil {
				return fmt.Errorf("upgrade finalize: %w", err)
			}
			return printRecord(stdoutOf(cmd), rec)
		},
	}
	for _, c := range []*cobra.Command{stage, local, status, rollback, finalize} {
		t.bind(c)
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		cmd.AddCommand(c)
	}
	return cmd
}

func writeUpgradeRecord(w io.Writer, rec *agentapi.UpgradeRecord) error {
	fmt.Fprintf(w, "upgrade %s (%s): %s -> %s, phase %s\n", rec.ID, rec.Mode, rec.From.Version, rec.To.Version, rec.Phase)
	if rec.Error != "" {
		fmt.Fprintf(w, "  last error: %s\n", rec.Error)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, s := range rec.Steps {
		fmt.Fprintf(tw, "  %s\t%s\n", s.Phase, s.Duration.Round(time.Millisecond))
	}
	return tw.Flush()
}
