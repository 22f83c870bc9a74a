package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/genesisdraft"
	"github.com/teeup/teeup/hostinit"
)

// DefaultTestBalance is the operator test account's balance a bundle
// proposes unless told otherwise.
const DefaultTestBalance = 1_000_000_000

func newHostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Prepare this operator's host of a network (without devnet) and make its genesis bundle",
		Long: `Each organisation prepares its own host: 'teeup host init' lays out the directory, the platform,
the operator's keys and the node and agent configurations; 'teeup host bundle' writes the
host's public bundle for the genesis. See "Deploy on separate hosts" in the README.`,
	}
	cmd.AddCommand(newHostInitCmd(), newHostBundleCmd())
	return cmd
}

func newHostInitCmd() *cobra.Command {
	var (
		o         hostinit.Options
		nodeID    uint64
		bootstrap bool
	)
	cmd := &cobra.Command{
		Use:   "init DIR --node-id N --peer-addr HOST:PORT --client-addr HOST:PORT (--root ROOT.crt | --ca CADIR | --platform PDIR)",
		Short: "Prepare one host: directories (0700), platform, operator keys, node.json, agent.json, host.json",
		Long: `Prepare the host directory DIR for node N of a network:

  DIR/keys/      operator.key, nog.key, account.key (operator test account), kmg.key with --kmg:
                 new ed25519 keys (0600) unless --operator-key, --nog-key, --account-key or
                 --kmg-key name existing ones (private or public; they stay where they are)
  DIR/platform/  the simulated platform: with --root ROOT.crt (or --ca CADIR holding only
                 root.crt) it requests its certificate (DIR/platform/attestation.csr, a copy to
                 --request FILE); with --ca CADIR holding root.key it is certified at once;
                 --platform PDIR uses an existing platform instead
  DIR/node.json  complete teeup-node configuration (genesis DIR/genesis.json, data DIR/data)
  DIR/agent.json complete teeup-agent configuration (release in DIR/release, logs in DIR/logs,
                 distribution to DIR/dist)
                 Both authorise the operator key for remote admin (admin_operators); with
                 --admin-listen / --agent-listen they serve it over mutual TLS
  DIR/host.json  the host's public description, from which 'teeup host bundle' makes the bundle

Every directory is created (or made) mode 0700. Nothing private leaves DIR.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if nodeID == 0 || o.Node.PeerAddr == "" || o.Node.ClientAddr == "" {
				return errors.New("host init: --node-id, --peer-addr and --client-addr are required")
			}
			o.Dir = args[0]
			o.Node.ID = nodeID
			if o.Node.Name == "" {
				o.Node.Name = fmt.Sprintf("node-%d", nodeID)
			}
			o.Config.Bootstrap = nodeID == 1
			if cmd.Flags().Changed("bootstrap") {
				o.Config.Bootstrap = bootstrap
			}
			res, err := hostinit.Init(o)
			if err != nil {
				return err
			}
			printHostInit(stdoutOf(cmd), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&nodeID, "node-id", 0, "this node's id in the genesis (1 to 7, agreed among the operators)")
	f.StringVar(&o.Node.Name, "name", "", "this node's name in the genesis, e.g. the organisation (default node-N)")
	f.StringVar(&o.Node.PeerAddr, "peer-addr", "", "address other nodes reach this node's peer port at (HOST:PORT, goes into the genesis)")
	f.StringVar(&o.Node.ClientAddr, "client-addr", "", "address clients reach this node's client API at (HOST:PORT, goes into the genesis)")
	f.StringVar(&o.RootCert, "root", "", "root certificate to pin (from the CA holder): the platform requests its certificate")
	f.StringVar(&o.CADir, "ca", "", "simulated root CA directory: with root.key certify at once, with only root.crt request a certificate")
	f.StringVar(&o.Platform, "platform", "", "use this existing platform directory instead of creating DIR/platform")
	f.StringVar(&o.RequestOut, "request", "", "also write the platform's certificate request to this file")
	f.StringVar(&o.OperatorKey, "operator-key", "", "existing operator key file (default: generate DIR/keys/operator.key)")
	f.StringVar(&o.NOGKey, "nog-key", "", "existing Node Operators Group key file (default: generate DIR/keys/nog.key)")
	f.StringVar(&o.AccountKey, "account-key", "", "existing operator test account key file (default: generate DIR/keys/account.key)")
	f.StringVar(&o.KMGKey, "kmg-key", "", "existing Key Management Group key file of this operator (implies --kmg)")
	f.BoolVar(&o.KMG, "kmg", false, "this operator is a Key Management Group member: generate DIR/keys/kmg.key")
	f.BoolVar(&bootstrap, "bootstrap", false, "this node may create the network's ledger key; exactly one node of the network sets it (default: true for node 1 only)")
	f.StringVar(&o.Config.PeerListen, "peer-listen", "", "peer listen address if not the genesis peer address (e.g. 0.0.0.0:7101)")
	f.StringVar(&o.Config.ClientListen, "client-listen", "", "client API listen address if not the genesis client address")
	f.StringVar(&o.Config.ReleaseDir, "release-dir", "", "where the installed release is (release.json and binaries; default DIR/release)")
	f.BoolVar(&o.Config.NoDistribute, "no-distribute", false, "do not run ledger distribution under the agent")
	f.StringVar(&o.Config.DistributeDest, "distribute-dest", "", "distribution destination: a directory or s3://bucket/prefix?endpoint=... (default DIR/dist)")
	f.StringVar(&o.Config.AdminListen, "admin-listen", "", "serve the node's admin API to remote operators over mutual TLS on this address (e.g. 0.0.0.0:7301; default: unix socket only)")
	f.StringVar(&o.Config.AgentListen, "agent-listen", "", "serve the agent's API to remote operators over mutual TLS on this address (e.g. 0.0.0.0:7401; default: unix socket only)")
	return cmd
}

// printHostInit reports what host init prepared and what comes next.
func printHostInit(w io.Writer, res *hostinit.Result) {
	h, l := res.Host, res.Layout
	fmt.Fprintf(w, "host %s (node %d) prepared in %s\n", h.Node.Name, h.Node.ID, l.Dir)
	fmt.Fprintf(w, "  operator key   %s  %s\n", h.Node.Operator, h.KeyFiles.Operator)
	fmt.Fprintf(w, "  NOG key        %s  %s\n", h.NOGKey, h.KeyFiles.NOG)
	if h.KMGKey != "" {
		fmt.Fprintf(w, "  KMG key        %s  %s\n", h.KMGKey, h.KeyFiles.KMG)
	}
	fmt.Fprintf(w, "  test account   %s  %s\n", h.Account, h.KeyFiles.Account)
	state := "certified"
	if res.PlatformPending {
		state = "awaiting its certificate"
	}
	fmt.Fprintf(w, "  platform       %s  %s (%s)\n", res.PlatformID, h.Platform, state)
	fmt.Fprintf(w, "  configs        %s, %s\n", h.NodeConfig, h.AgentConfig)
	fmt.Fprintln(w, "next:")
	step := 1
	if res.PlatformPending {
		fmt.Fprintf(w, "  %d. send %s to the CA holder ('teeup platform certify --ca CADIR REQUEST -o CERT'),\n     then: teeup platform install-cert %s CERT\n", step, res.Request, h.Platform)
		step++
	}
	fmt.Fprintf(w, "  %d. teeup host bundle %s   (send the bundle to whoever assembles the genesis)\n", step, l.Dir)
	fmt.Fprintf(w, "  %d. install the network's genesis as %s and check it: teeup genesis verify %s --bundle %s\n", step+1, l.Genesis(), l.Genesis(), l.BundleFile())
	fmt.Fprintf(w, "  %d. install the release (release.json, teeup-node, teeup-agent with .sig, teeup-distribute) in %s\n", step+2, l.Release())
	fmt.Fprintf(w, "  %d. %s/teeup-agent run --config %s\n", step+3, l.Release(), h.AgentConfig)
}

func newHostBundleCmd() *cobra.Command {
	var (
		balance uint64
		label   string
		out     string
	)
	cmd := &cobra.Command{
		Use:   "bundle DIR [--balance N] [--out FILE]",
		Short: "Write this host's public genesis bundle (node entry, operator, NOG and KMG keys, test account)",
		Long: `Write the public bundle of the host prepared in DIR (from DIR/host.json) to --out (default
DIR/bundle.json): the node's id, name, peer and client addresses and operator key, the
operator's NOG key and KMG key (if any), and its test account with the proposed balance. It
holds no private key. Send it to whoever runs 'teeup genesis add'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := hostinit.LoadHost(args[0])
			if err != nil {
				return fmt.Errorf("host bundle: %w", err)
			}
			b := h.Bundle(balance, label)
			if err := b.Validate(); err != nil {
				return fmt.Errorf("host bundle: %w", err)
			}
			if out == "" {
				out = hostinit.Layout{Dir: absPath(args[0])}.BundleFile()
			}
			if err := b.Save(out); err != nil {
				return fmt.Errorf("host bundle: %w", err)
			}
			w := stdoutOf(cmd)
			fmt.Fprintf(w, "bundle of node %d (%s) written to %s\n", b.Node.ID, b.Node.Name, out)
			printBundle(w, b)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&balance, "balance", DefaultTestBalance, "balance proposed for the operator test account")
	cmd.Flags().StringVar(&label, "label", "", "label of the test account in the genesis (default operator-test-N)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "bundle file to write (default DIR/bundle.json)")
	return cmd
}

// printBundle prints a bundle's content, one fact a line.
func printBundle(w io.Writer, b *genesisdraft.Bundle) {
	fmt.Fprintf(w, "  node %d %q  peer %s  client %s\n", b.Node.ID, b.Node.Name, b.Node.PeerAddr, b.Node.ClientAddr)
	fmt.Fprintf(w, "  operator     %s\n", b.Node.Operator)
	fmt.Fprintf(w, "  NOG key      %s\n", b.NOGKey)
	if b.KMGKey != "" {
		fmt.Fprintf(w, "  KMG key      %s\n", b.KMGKey)
	}
	fmt.Fprintf(w, "  test account %s  balance %d  %q\n", b.Account.Address, b.Account.Balance, b.Account.Label)
}

// absPath returns p made absolute (p itself if that fails).
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
