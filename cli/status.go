package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/nodeapi"
)

// withAdmin opens the target's admin client, runs fn with it and closes it.
func withAdmin(t *target, fn func(*nodeapi.AdminClient) error) error {
	a, err := t.admin()
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(a)
}

func newStatusCmd() *cobra.Command {
	var t target
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status (--devnet DIR [--node-id N] | --admin-socket PATH | --host HOST:PORT --node-id N --operator-key KEY) [--json]",
		Short: "Show a node's status from its admin API (local socket or remote host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s *nodeapi.Status
			if err := withAdmin(&t, func(a *nodeapi.AdminClient) (err error) {
				s, err = a.Status(cmd.Context())
				return err
			}); err != nil {
				return fmt.Errorf("status: %w", err)
			}
			out := stdoutOf(cmd)
			if asJSON {
				return printJSON(out, s)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "node\t%d of chain %s\n", s.NodeID, s.ChainID)
			fmt.Fprintf(tw, "phase\t%s\n", s.Phase)
			if s.NodeKey != "" {
				fmt.Fprintf(tw, "node key\t%s\n", s.NodeKey)
			}
			sync := s.Sync.State
			if s.Sync.Reason != "" {
				sync += ": " + s.Sync.Reason
			}
			fmt.Fprintf(tw, "sync\t%s (network height %d, behind by %d)\n", sync, s.Sync.NetworkHeight, s.Sync.BehindBy)
			fmt.Fprintf(tw, "version\t%s (schema %d)\n", s.Version, s.SchemaVersion)
			fmt.Fprintf(tw, "mrenclave\t%s\n", s.MREnclave)
			fmt.Fprintf(tw, "mrsigner\t%s (svn %d, debug %t, simulated %t)\n", s.MRSigner, s.SVN, s.Debug, s.Simulated)
			fmt.Fprintf(tw, "height\t%d\n", s.Height)
			fmt.Fprintf(tw, "head\t%s\n", s.HeadHash)
			fmt.Fprintf(tw, "pending\t%d\n", s.Pending)
			fmt.Fprintf(tw, "ingress\t%s\n", s.Ingress)
			fmt.Fprintf(tw, "halted\t%t (halt height %d)\n", s.Halted, s.HaltHeight)
			fmt.Fprintf(tw, "leader\t%d (term %d)\n", s.Leader, s.Term)
			for _, p := range s.Peers {
				fmt.Fprintf(tw, "peer %d\t%s connected=%t mrenclave=%s %s\n", p.ID, p.Addr, p.Connected, p.MREnclave.Short(), p.LastError)
			}
			if s.Upgrade != nil {
				fmt.Fprintf(tw, "upgrade\tversion %s at height %d (mrenclave %s), ingress closes at %d, this node runs it: %t\n",
					s.Upgrade.Version, s.Upgrade.ActivationHeight, s.Upgrade.MREnclave.Short(), s.Upgrade.IngressCloses, s.Upgrade.ThisNodeRuns)
			}
			return tw.Flush()
		},
	}
	t.bind(cmd, true)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
