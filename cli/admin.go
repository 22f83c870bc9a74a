package cli

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/nodeapi"
)

// newAdminCmd is 'teeup admin': the node admin API's operations, on the
// host's unix socket or, with --host, on a remote host over mutual TLS.
func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Operate one node through its admin API: ingress, halt, leadership, stop, peer attestation",
		Long: `Operations of a node's admin API, on its unix socket (--admin-socket, or --devnet and
--node-id) or on a remote host (--host HOST:PORT --node-id N --operator-key KEY --root ROOT.crt
--mrenclave HEX): the host verifies the node enclave's attestation and that it serves node N
before anything is sent. Every command but attest-peers changes the node: only the host's own
operators may run it remotely.`,
	}
	var t target
	var asJSON bool
	var reason string
	printStatus := func(cmd *cobra.Command, s *nodeapi.Status) error {
		if asJSON {
			return printJSON(stdoutOf(cmd), s)
		}
		fmt.Fprintf(stdoutOf(cmd), "node %d: ingress %s, height %d, halt height %d, leader %d\n", s.NodeID, s.Ingress, s.Height, s.HaltHeight, s.Leader)
		return nil
	}
	ingress := func(open bool) *cobra.Command {
		verb := map[bool]string{true: "open", false: "close"}[open]
		c := &cobra.Command{
			Use:   verb + " [--reason TEXT]",
			Short: map[bool]string{true: "Reopen client ingress on this node", false: "Close client ingress on this node (clients get 'closed for upgrade')"}[open],
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var s *nodeapi.Status
				if err := withAdmin(&t, func(a *nodeapi.AdminClient) (err error) {
					s, err = a.SetIngress(cmd.Context(), open, reason)
					return err
				}); err != nil {
					return fmt.Errorf("admin ingress %s: %w", verb, err)
				}
				return printStatus(cmd, s)
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (shown to refused clients)")
		return c
	}
	ingressCmd := &cobra.Command{Use: "ingress", Short: "Open or close client ingress on one node"}
	ingressCmd.AddCommand(ingress(true), ingress(false))

	halt := &cobra.Command{
		Use:   "halt HEIGHT",
		Short: "Commit a network-wide halt height through consensus (0 clears it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("admin halt: height %q: %w", args[0], err)
			}
			var s *nodeapi.Status
			if err := withAdmin(&t, func(a *nodeapi.AdminClient) (err error) {
				s, err = a.Halt(cmd.Context(), h)
				return err
			}); err != nil {
				return fmt.Errorf("admin halt: %w", err)
			}
			return printStatus(cmd, s)
		},
	}
	var to uint64
	leadership := &cobra.Command{
		Use:   "leadership [--to N]",
		Short: "Hand leadership away from this node, which must lead (to node N, or the most up-to-date voter)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var got uint64
			if err := withAdmin(&t, func(a *nodeapi.AdminClient) (err error) {
				got, err = a.TransferLeadership(cmd.Context(), to)
				return err
			}); err != nil {
				return fmt.Errorf("admin leadership: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "node %d leads now\n", got)
			return nil
		},
	}
	leadership.Flags().Uint64Var(&to, "to", 0, "node to hand leadership to (default: the most up-to-date other voter)")
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the node gracefully (an agent that supervises it starts it again)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := withAdmin(&t, func(a *nodeapi.AdminClient) error { return a.Stop(cmd.Context()) }); err != nil {
				return fmt.Errorf("admin stop: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "node %d is stopping\n", t.nodeID)
			return nil
		},
	}
	attestPeers := &cobra.Command{
		Use:   "attest-peers [--json]",
		Short: "Have the node attest every peer afresh over mutual attested TLS (its row of the attestation matrix; a read)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res []nodeapi.PeerAttestation
			if err := withAdmin(&t, func(a *nodeapi.AdminClient) (err error) {
				res, err = a.AttestPeers(cmd.Context())
				return err
			}); err != nil {
				return fmt.Errorf("admin attest-peers: %w", err)
			}
			if asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			tw := tabwriter.NewWriter(stdoutOf(cmd), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FROM\tTO\tOK\tMRENCLAVE\tERROR")
			failed := 0
			for _, p := range res {
				fmt.Fprintf(tw, "%d\t%d\t%t\t%s\t%s\n", p.From, p.To, p.OK, p.MREnclave.Short(), p.Error)
				if !p.OK {
					failed++
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return &ExitError{Code: 1, Err: errors.New("admin attest-peers: " + strconv.Itoa(failed) + " peers failed attestation")}
			}
			return nil
		},
	}
	leaves := []*cobra.Command{ingressCmd.Commands()[0], ingressCmd.Commands()[1], halt, leadership, stop, attestPeers}
	for _, c := range leaves {
		t.bind(c, true)
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	cmd.AddCommand(ingressCmd, halt, leadership, stop, attestPeers)
	return cmd
}
