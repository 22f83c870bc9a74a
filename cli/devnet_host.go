package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/nodeapi"
)

// loadHost loads the devnet in dir and its host named by arg (its id).
func loadHost(dir, arg string) (*devnet.Network, *devnet.Host, error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("host %q: want a node id", arg)
	}
	n, err := devnet.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	h, err := n.Host(id)
	if err != nil {
		return nil, nil, err
	}
	return n, h, nil
}

// describeRunning lists programs with their pids, in stop order.
func describeRunning(running map[string]int) string {
	var parts []string
	for _, prog := range []string{devnet.AgentBin, devnet.DistributeBin, devnet.NodeBin} {
		if pid, ok := running[prog]; ok {
			parts = append(parts, fmt.Sprintf("%s (pid %d)", prog, pid))
		}
	}
	if len(parts) == 0 {
		return "nothing was running"
	}
	return strings.Join(parts, ", ")
}

func newDevnetHostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Stop, start or wipe one host of the devnet (rehearse failures and recovery)",
	}
	var dir string
	stop := &cobra.Command{
		Use:   "stop N",
		Short: "Stop host N's agent, distribution and node (data kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, h, err := loadHost(dir, args[0])
			if err != nil {
				return err
			}
			running := devnet.HostRunning(h)
			if err := devnet.StopHost(cmd.Context(), h); err != nil {
				return err
			}
			fmt.Fprintf(stdoutOf(cmd), "host %d stopped: %s\n", h.ID, describeRunning(running))
			return nil
		},
	}
	var wait time.Duration
	start := &cobra.Command{
		Use:   "start N [--wait 60s]",
		Short: "Start host N's processes again (its network namespace too, on an isolated devnet)",
		Long: `Start host N's processes: its agent, which starts the node and distribution (or the node and
distribution directly on a devnet without agents). On an isolated devnet the host's network
namespace and link are created first if they are missing (after 'devnet down'); a partitioned
host stays partitioned. Then wait until the node answers on its admin socket (--wait 0: do not
wait).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, h, err := loadHost(dir, args[0])
			if err != nil {
				return err
			}
			if err := devnet.ConnectHost(cmd.Context(), n, h); err != nil {
				return err
			}
			if err := devnet.StartHost(n, h, !n.NoDistribute); err != nil {
				return err
			}
			out := stdoutOf(cmd)
			if wait <= 0 {
				fmt.Fprintf(out, "host %d started\n", h.ID)
				return nil
			}
			st, err := awaitAdmin(cmd.Context(), h, wait)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "host %d started: %s; node at height %d, leader %d, ingress %s\n", h.ID, describeRunning(devnet.HostRunning(h)), st.Height, st.Leader, st.Ingress)
			return nil
		},
	}
	start.Flags().DurationVar(&wait, "wait", time.Minute, "how long to wait for the node to answer on its admin socket (0: do not wait)")
	var asJSON bool
	wipe := &cobra.Command{
		Use:   "wipe N",
		Short: "Stop host N and delete its node data directory (ledger and sealed keys), as a lost disk would",
		Long: `Stop host N (agent, distribution, node) and delete its node data directory: the ledger (blocks,
state, raft log), the node's sealed application keys, its sockets and ingress state. An empty
directory is left in its place, as a replaced disk. Kept: the host's platform (its simulated
CPU: the same platform secret and attestation key), the agent's directory and configuration,
the node configuration, distribution output and logs. 'teeup devnet host start N' starts the
host again with an empty node.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, h, err := loadHost(dir, args[0])
			if err != nil {
				return err
			}
			running := devnet.HostRunning(h)
			w, err := devnet.WipeHost(cmd.Context(), h)
			if err != nil {
				return err
			}
			out := stdoutOf(cmd)
			if asJSON {
				return printJSON(out, w)
			}
			printWiped(out, h, w, describeRunning(running), dir)
			return nil
		},
	}
	wipe.Flags().BoolVar(&asJSON, "json", false, "print what was deleted and kept as JSON")
	for _, c := range []*cobra.Command{stop, start, wipe} {
		c.Flags().StringVar(&dir, "dir", defaultDevnetDir(), "devnet directory")
	}
	cmd.AddCommand(stop, start, wipe)
	return cmd
}

func printWiped(out io.Writer, h *devnet.Host, w *devnet.Wiped, stopped, dir string) {
	fmt.Fprintf(out, "host %d stopped (%s) and its node data directory wiped:\n", h.ID, stopped)
	if len(w.Deleted) == 0 {
		fmt.Fprintf(out, "  %s was already empty\n", w.DataDir)
	}
	for _, e := range w.Deleted {
		fmt.Fprintf(out, "  deleted  %-50s %10s  %s\n", e.Path, humanBytes(e.Bytes), e.What)
	}
	for _, k := range w.Kept {
		fmt.Fprintf(out, "  kept     %s\n", k)
	}
	fmt.Fprintf(out, "start it again: teeup devnet host start %d --dir %s\n", h.ID, dir)
}

func humanBytes(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	default:
		return fmt.Sprintf("%d B", b)
	}
}

// awaitAdmin waits until host h's node answers on its admin socket.
func awaitAdmin(ctx context.Context, h *devnet.Host, timeout time.Duration) (*nodeapi.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := nodeapi.NewAdminClient(h.AdminSocket)
	defer c.Close()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := c.Status(ctx)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("host %d: node does not answer on %s after %s (%v); see %s", h.ID, h.AdminSocket, timeout, err, filepath.Join(h.LogDir, "node.log"))
		case <-tick.C:
		}
	}
}

// newDevnetLinkCmd is 'devnet partition N' (verb "partition") or 'devnet
// heal N' (verb "heal").
func newDevnetLinkCmd(verb string) *cobra.Command {
	var dir string
	short := map[string]string{
		"partition": "Cut host N off the isolated devnet's network (its link goes down; processes keep running)",
		"heal":      "Restore host N's network after 'devnet partition N'",
	}[verb]
	cmd := &cobra.Command{
		Use:   verb + " N",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, h, err := loadHost(dir, args[0])
			if err != nil {
				return err
			}
			op, state := devnet.Partition, "partitioned: its link is down; its processes keep running and its admin socket answers"
			if verb == "heal" {
				op, state = devnet.Heal, "healed: its link is up"
			}
			if err := op(cmd.Context(), n, h); err != nil {
				return err
			}
			fmt.Fprintf(stdoutOf(cmd), "host %d %s\n", h.ID, state)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultDevnetDir(), "devnet directory")
	return cmd
}

func newDevnetAddNodeCmd() *cobra.Command {
	var dir string
	var noVote, asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "add-node [--no-vote]",
		Short: "Lay out and start one more host whose node joins the network by governance",
		Long: `Lay out one more host (id = the highest + 1): a platform certified by the devnet CA, an operator
key keys/operator-<id>, node and agent configurations, and start it. Its node makes its identity
key and waits: members refuse it the ledger key until it is a member on chain. Then (unless
--no-vote) the devnet's NOG members vote it in ('teeup member add' with its id, addresses,
operator key and identity key); at the quorum the members give it the ledger key over attested
TLS, the leader adds it to raft as a voter, and it receives the ledger by state transfer.
Waits until the new node is current. With --no-vote it prints the 'teeup member add' command
to run instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := devnet.Load(dir)
			if err != nil {
				return err
			}
			out := stdoutOf(cmd)
			added, err := devnet.AddNode(cmd.Context(), n, devnet.AddNodeOptions{Vote: !noVote, Timeout: timeout, Progress: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, added)
			}
			h := added.Host
			if noVote {
				fmt.Fprintf(out, "host %d started; its node waits to be voted in:\n  teeup member add %d --peer-addr %s --client-addr %s --operator %s --node-key %s --key nog-1 --devnet %s\n",
					h.ID, h.ID, h.PeerAddr, h.ClientAddr, added.Operator, added.NodeKey, dir)
				return nil
			}
			fmt.Fprintf(out, "node %d added (peer %s, client %s, identity key %s, operator key %s): a member and current\n",
				h.ID, h.PeerAddr, h.ClientAddr, added.NodeKey.String()[:12], filepath.Join(dir, "keys", fmt.Sprintf("operator-%d.key", h.ID)))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", defaultDevnetDir(), "devnet directory")
	cmd.Flags().BoolVar(&noVote, "no-vote", false, "start the host only; print the vote to cast")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the new node to be current")
	return cmd
}
