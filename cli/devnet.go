package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/devnet"
)

func defaultDevnetDir() string {
	if d := os.Getenv("TEEUP_DEVNET"); d != "" {
		return d
	}
	return ".devnet"
}

func newDevnetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "devnet",
		Short: "Run a local network: simulated hosts, genesis, nodes, agents and distribution",
	}
	var dir, binDir, chainID string
	var nodes int
	var noAgents, noDist, isolate, remoteAdmin, coordinated, coordinatorFree bool
	var subnet string
	var interval time.Duration
	up := &cobra.Command{
		Use:   "up [--nodes N] [--dir DIR]",
		Short: "Create a devnet and start it in the background",
		Long: `Create a devnet in DIR (default .devnet, or TEEUP_DEVNET): a simulated root CA, one simulated
platform per node, keys (enclave signer, Key Management Group, Node Operators Group, operator
test accounts, users), a genesis, the release binaries (signed), and node configurations; then
start every host's processes in the background and wait until every node commits blocks.
Binaries are taken from the directory of this teeup executable (make build puts them in ./bin)
or from --bin.

--isolate (root only) starts every host in its own network namespace with its own address on
a private subnet (--subnet, default 10.77.0.0/24) that exists only inside the namespaces the
devnet creates: a bridge in a namespace of its own, one namespace per host, and an observer
namespace from which teeup commands given --devnet DIR dial the hosts' client APIs (admin and
agent unix sockets stay reachable as files). Each host's processes are configured with only
its own directory (its own copy of the genesis and the release, and of its own operator's
test account key); every other key stays in DIR/keys. 'teeup devnet partition N' / 'heal N' cut and restore a host's link; 'teeup devnet
down' removes every namespace.

Every agent decides its host's part of a flag day from the chain: it hands over at H, proves
the new node (attestation, test payments with operator-N's account, from the host's own copy of
that key), records readiness, rolls back by itself and finalizes after the live period; the
operators only vote ('teeup release schedule') and may watch ('teeup flagday observe').
--coordinated starts agents in the legacy mode instead: they hand over when their node halts at
H and leave everything else to a coordinator ('teeup flagday coordinate').

--remote-admin also serves every node's and agent's admin API over TCP with mutual TLS
(admin_listen), authorising operator-N on host N: 'teeup status --devnet DIR --node-id 1 --host
ADDR --operator-key operator-2' reads host 1 as operator 2.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := stdoutOf(cmd)
			opts := devnet.UpOptions{
				Dir: dir, Nodes: nodes, BinDir: binDir, ChainID: chainID, BlockInterval: interval,
				NoAgents: noAgents, NoDistribute: noDist, Progress: out, Isolate: isolate, RemoteAdmin: remoteAdmin,
				Coordinated: coordinated,
			}
			if coordinated && coordinatorFree {
				return errors.New("devnet up: --coordinated and --coordinator-free contradict each other (coordinator-free is the default)")
			}
			if subnet != "" {
				if !isolate {
					return errors.New("devnet up: --subnet needs --isolate")
				}
				p, err := netip.ParsePrefix(subnet)
				if err != nil {
					return fmt.Errorf("devnet up: --subnet: %w", err)
				}
				opts.Subnet = p
			}
			n, err := devnet.Up(cmd.Context(), opts)
			if err != nil {
				if n != nil {
					return fmt.Errorf("%w\n(what started is still running: 'teeup devnet down --dir %s' stops it)", err, n.Dir)
				}
				return err
			}
			fmt.Fprintf(out, "\ndevnet %q is up in %s\n", n.ChainID, n.Dir)
			fmt.Fprintf(out, "  node MRENCLAVE  %s (release %s)\n  attestation root %s\n", n.Release.NodeMREnclave, n.Release.Version, n.RootCert())
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  NODE\tCLIENT API\tPEER\tADMIN SOCKET\tREMOTE ADMIN\tREMOTE AGENT")
			for _, h := range n.Hosts {
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.ClientAddr, h.PeerAddr, h.AdminSocket, dash(h.AdminAddr), dash(h.AgentAddr))
			}
			tw.Flush()
			if iso := n.Isolation; iso != nil {
				fmt.Fprintf(out, "  isolated: namespaces %s{sw,obs,h1..h%d}, subnet %s, observer %s\n", iso.Prefix, len(n.Hosts), iso.Subnet, iso.ObserverAddr)
			}
			fmt.Fprintf(out, "\ntry:  teeup pay --devnet %s --from operator-1 --to user-1 --amount 10\n      teeup devnet status --dir %s\n", n.Dir, n.Dir)
			return nil
		},
	}
	up.Flags().StringVar(&dir, "dir", defaultDevnetDir(), "devnet directory")
	up.Flags().IntVar(&nodes, "nodes", 4, "number of nodes (1-7)")
	up.Flags().StringVar(&binDir, "bin", "", "directory holding teeup-node, teeup-agent, teeup-distribute (default: next to teeup)")
	up.Flags().StringVar(&chainID, "chain-id", devnet.DefaultChainID, "chain id")
	up.Flags().DurationVar(&interval, "block-interval", 200*time.Millisecond, "consensus block interval")
	up.Flags().BoolVar(&noAgents, "no-agents", false, "run nodes directly instead of under teeup-agent")
	up.Flags().BoolVar(&noDist, "no-distribute", false, "do not start ledger distribution")
	up.Flags().BoolVar(&isolate, "isolate", false, "every host in its own network namespace on a private subnet (root only)")
	up.Flags().StringVar(&subnet, "subnet", "", "with --isolate: the private IPv4 subnet (default "+devnet.DefaultSubnet.String()+")")
	up.Flags().BoolVar(&coordinated, "coordinated", false, "legacy: agents leave flag days to a coordinator ('teeup flagday coordinate') instead of deciding their part from the chain")
	// --coordinator-free was the opt-in before it became the default: still
	// accepted so that scripts keep working.
	up.Flags().BoolVar(&coordinatorFree, "coordinator-free", false, "agents decide their part of a flag day from the chain (the default)")
	_ = up.Flags().MarkDeprecated("coordinator-free", "it is the default now (--coordinated opts out)")
	up.Flags().BoolVar(&remoteAdmin, "remote-admin", false, "also serve every node's and agent's admin API over TCP with mutual TLS, operator-N authorised on host N")

	var asJSON bool
	status := &cobra.Command{
		Use:   "status [--dir DIR] [--json]",
		Short: "Show every node: processes, height, head hash, leader, peers, ingress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := devnet.Load(dir)
			if err != nil {
				return err
			}
			rows := devnet.Statuses(cmd.Context(), n)
			out := stdoutOf(cmd)
			if asJSON {
				return printJSON(out, rows)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			header := "NODE\tPID\tHEIGHT\tHEAD\tLEADER\tPEERS\tPENDING\tINGRESS\tMRENCLAVE\tVERSION"
			if n.Isolation != nil {
				header = strings.Replace(header, "NODE\t", "NODE\tLINK\t", 1)
			}
			fmt.Fprintln(tw, header)
			down := 0
			for _, r := range rows {
				node := fmt.Sprint(r.ID)
				if n.Isolation != nil {
					node += "\t" + r.Link
				}
				pid := "-"
				if r.NodePID != 0 {
					pid = fmt.Sprint(r.NodePID)
				}
				if r.Status == nil {
					down++
					fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\tunreachable: %s\n", node, pid, r.Error)
					continue
				}
				s := r.Status
				conn := 0
				for _, p := range s.Peers {
					if p.Connected {
						conn++
					}
				}
				ingress := s.Ingress
				if s.Halted {
					ingress += " (halted)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d/%d\t%d\t%s\t%s\t%s\n", node, pid, s.Height, shortHex(s.HeadHash), s.Leader, conn, len(s.Peers), s.Pending, ingress, s.MREnclave.Short(), s.Version)
			}
			tw.Flush()
			if down > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d of %d nodes unreachable", down, len(rows))}
			}
			return nil
		},
	}
	status.Flags().StringVar(&dir, "dir", defaultDevnetDir(), "devnet directory")
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	downCmd := &cobra.Command{
		Use:   "down [--dir DIR]",
		Short: "Stop every process of the devnet and remove its network namespaces (the directory and its data are kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := devnet.Load(dir)
			if err != nil {
				// No devnet.json (a crash while laying out): namespaces are
				// named after the directory, so they can still be found.
				removed, rerr := devnet.RemoveNetwork(cmd.Context(), dir)
				if rerr != nil {
					return errors.Join(err, rerr)
				}
				if len(removed) == 0 {
					return err
				}
				fmt.Fprintf(stdoutOf(cmd), "no devnet in %s; removed its network namespaces %v\n", dir, removed)
				return nil
			}
			if err := devnet.Down(cmd.Context(), n); err != nil {
				return err
			}
			fmt.Fprintf(stdoutOf(cmd), "devnet in %s stopped\n", n.Dir)
			if n.Isolation != nil {
				fmt.Fprintf(stdoutOf(cmd), "network namespaces %s* removed\n", n.Isolation.Prefix)
			}
			return nil
		},
	}
	downCmd.Flags().StringVar(&dir, "dir", defaultDevnetDir(), "devnet directory")
	var relBin, relVersion string
	rel := &cobra.Command{
		Use:   "release --bin DIR [--version V]",
		Short: "Stage binaries from DIR as a new devnet release, signed by the devnet signer and Key Management Group",
		Long: `Copy teeup-node, teeup-agent and teeup-distribute from DIR into DIR/releases/<version>,
sign the enclave binaries with the devnet's enclave signer key, and write release.json: the
manifest signed by the devnet's Key Management Group threshold. The version is read from
the node binary unless given. Propose and approve it on chain with 'teeup release propose'
and 'teeup release approve' (NOG keys nog-1..3), then upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := devnet.Load(dir)
			if err != nil {
				return err
			}
			if relBin == "" {
				return fmt.Errorf("devnet release: --bin DIR is required")
			}
			r, err := devnet.StageDirRelease(n, relBin, relVersion)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdoutOf(cmd), "release %s staged in %s\n  node MRENCLAVE  %s\n  agent MRENCLAVE %s\n  manifest        %s\n",
				r.Version, r.Dir, r.NodeMREnclave, r.AgentMREnclave, r.ReleaseFile())
			return nil
		},
	}
	rel.Flags().StringVar(&dir, "dir", defaultDevnetDir(), "devnet directory")
	rel.Flags().StringVar(&relBin, "bin", "", "directory holding the new teeup-node, teeup-agent, teeup-distribute")
	rel.Flags().StringVar(&relVersion, "version", "", "release version (default: the node binary's)")
	cmd.AddCommand(up, status, downCmd, rel, newDevnetHostCmd(), newDevnetAddNodeCmd(), newDevnetLinkCmd("partition"), newDevnetLinkCmd("heal"))
	return cmd
}

func shortHex(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// dash is s, or "-" when it is empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
