package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/genesisdraft"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/ledger"
)

// defaultDraft is the draft file the genesis commands use without --draft.
const defaultDraft = "genesis.draft.json"

func newGenesisCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "genesis",
		Short: "Assemble a network's genesis from the operators' public host bundles",
		Long: `The group of operators assembles the genesis from public parts only:

  teeup genesis init --chain-id ID --kmg-threshold T --nog-threshold Q   start genesis.draft.json
  teeup genesis add BUNDLE...                                            add hosts' bundles
  teeup genesis finalize --out genesis.json                              validate, write, print the hash
  teeup genesis verify genesis.json --bundle MY_BUNDLE                   each operator checks its copy

The result is deterministic (nodes by id, keys and accounts in node order, whatever the order
of 'add'), so any operator can rebuild it from the same init parameters and bundles and must
get the same hash.`,
	}
	cmd.AddCommand(newGenesisInitCmd(), newGenesisAddCmd(), newGenesisFinalizeCmd(), newGenesisVerifyCmd())
	return cmd
}

func newGenesisInitCmd() *cobra.Command {
	var (
		draft, chainID, timeStr string
		startRelease            string
		kmgT, nogT              int
		params                  ledger.Params
		blockInterval           time.Duration
		kmgKeys, nogKeys, accts []string
	)
	cmd := &cobra.Command{
		Use:   "init --chain-id ID --kmg-threshold T --nog-threshold Q [--draft FILE]",
		Short: "Start a genesis draft: chain id, time, consensus parameters, KMG and NOG thresholds",
		Long: `Start a genesis draft (default genesis.draft.json; must not exist). The KMG and NOG groups
consist of the bundles' keys plus any --kmg-key/--nog-key given here (members that run no
node); the thresholds are checked against them at 'genesis finalize'. --time fixes the genesis
time (default: now, to the second); give the same value to every operator who rebuilds the
genesis independently. --release names the release version the network starts with: the chain
then refuses to propose or schedule any version that is not newer (a downgrade) unless an
approved rollback allows it; without it there is no floor until the first upgrade.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if chainID == "" || kmgT == 0 || nogT == 0 {
				return errors.New("genesis init: --chain-id, --kmg-threshold and --nog-threshold are required")
			}
			opts := genesisdraft.Options{ChainID: chainID, KMGThreshold: kmgT, NOGThreshold: nogT, Params: params, Release: startRelease}
			opts.Params.BlockInterval = ledger.Duration(blockInterval)
			if timeStr != "" {
				t, err := time.Parse(time.RFC3339, timeStr)
				if err != nil {
					return fmt.Errorf("genesis init: --time: %w", err)
				}
				opts.Time = t
			}
			var err error
			if opts.ExtraKMGKeys, err = publicKeysHex(kmgKeys); err != nil {
				return fmt.Errorf("genesis init: --kmg-key: %w", err)
			}
			if opts.ExtraNOGKeys, err = publicKeysHex(nogKeys); err != nil {
				return fmt.Errorf("genesis init: --nog-key: %w", err)
			}
			for _, a := range accts {
				acct, err := parseAccountArg(a)
				if err != nil {
					return fmt.Errorf("genesis init: --account: %w", err)
				}
				opts.Accounts = append(opts.Accounts, acct)
			}
			d, err := genesisdraft.New(opts)
			if err != nil {
				return fmt.Errorf("genesis init: %w", err)
			}
			if _, err := os.Lstat(draft); err == nil {
				return fmt.Errorf("genesis init: %s already exists", draft)
			}
			if err := d.Save(draft); err != nil {
				return fmt.Errorf("genesis init: %w", err)
			}
			fmt.Fprintf(stdoutOf(cmd), "genesis draft %s: chain %s, time %s, KMG threshold %d, NOG threshold %d\nnext: teeup genesis add --draft %s BUNDLE...\n",
				draft, d.ChainID, d.Time.Format(time.RFC3339), d.KMG.Threshold, d.NOG.Threshold, draft)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&draft, "draft", defaultDraft, "draft file to create")
	f.StringVar(&chainID, "chain-id", "", "the network's chain id: 1 to 64 characters a-z, 0-9, '-'; every transaction and release names it")
	f.StringVar(&timeStr, "time", "", "genesis time, RFC 3339 (default: now, to the second)")
	f.StringVar(&startRelease, "release", "", "the release version the network starts with (e.g. 1.0.0): proposals and schedules of versions not newer are refused on chain")
	f.IntVar(&kmgT, "kmg-threshold", 0, "how many Key Management Group signatures a release needs")
	f.IntVar(&nogT, "nog-threshold", 0, "how many Node Operators Group votes approve, schedule or abort a release")
	f.DurationVar(&blockInterval, "block-interval", 0, "consensus block interval (default 500ms)")
	f.IntVar(&params.MaxBlockTxs, "max-block-txs", 0, "transactions per block at most (default 500)")
	f.IntVar(&params.MaxPool, "max-pool", 0, "pending transactions at most (default 10000)")
	f.StringArrayVar(&kmgKeys, "kmg-key", nil, "a KMG member that brings no bundle: public key hex or key file (repeatable)")
	f.StringArrayVar(&nogKeys, "nog-key", nil, "a NOG member that brings no bundle: public key hex or key file (repeatable)")
	f.StringArrayVar(&accts, "account", nil, "another initial balance: ADDRESS=BALANCE[:LABEL], ADDRESS hex or a key file (repeatable)")
	return cmd
}

func newGenesisAddCmd() *cobra.Command {
	var draft string
	cmd := &cobra.Command{
		Use:   "add [--draft FILE] BUNDLE...",
		Short: "Add operators' host bundles to the genesis draft",
		Long: `Add each BUNDLE (made by 'teeup host bundle' on the operator's host) to the draft. A bundle that
does not validate, or clashes with the draft (node id, name or address taken, a key already in
the draft in any role, more than 7 nodes), is refused, and then none of the given bundles is
added.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := genesisdraft.LoadDraft(draft)
			if err != nil {
				return fmt.Errorf("genesis add: %w", err)
			}
			w := stdoutOf(cmd)
			for _, path := range args {
				b, err := genesisdraft.LoadBundle(path)
				if err != nil {
					return fmt.Errorf("genesis add: %w (nothing added)", err)
				}
				if err := d.Add(b); err != nil {
					return fmt.Errorf("genesis add %s: %w (nothing added)", path, err)
				}
				fmt.Fprintf(w, "added %s:\n", path)
				printBundle(w, b)
			}
			if err := d.Save(draft); err != nil {
				return fmt.Errorf("genesis add: %w", err)
			}
			printDraftState(w, draft, d)
			return nil
		},
	}
	cmd.Flags().StringVar(&draft, "draft", defaultDraft, "the genesis draft")
	return cmd
}

// printDraftState summarises a draft and whether it can be finalized.
func printDraftState(w io.Writer, path string, d *genesisdraft.Draft) {
	kmg, nog := len(d.KMG.Keys), len(d.NOG.Keys)
	for _, b := range d.Bundles {
		nog++
		if b.KMGKey != "" {
			kmg++
		}
	}
	fmt.Fprintf(w, "draft %s: %d nodes, KMG %d keys (threshold %d), NOG %d keys (threshold %d)\n", path, len(d.Bundles), kmg, d.KMG.Threshold, nog, d.NOG.Threshold)
	if _, err := d.Genesis(); err != nil {
		fmt.Fprintf(w, "not ready to finalize: %v\n", err)
		return
	}
	fmt.Fprintf(w, "ready: teeup genesis finalize --draft %s --out genesis.json\n", path)
}

func newGenesisFinalizeCmd() *cobra.Command {
	var draft, out string
	cmd := &cobra.Command{
		Use:   "finalize [--draft FILE] [--out genesis.json]",
		Short: "Validate the draft, write genesis.json and print its hash for every operator to compare",
		Long: `Build the genesis from the draft (nodes ordered by id, then group keys and accounts in node
order), validate it as a node would, write it to --out (must not exist; 0644, it is public)
and print its hash: SHA-256 of the canonical genesis, what every node pins. Send genesis.json
to every operator; each checks it with 'teeup genesis verify' and compares the hash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := genesisdraft.LoadDraft(draft)
			if err != nil {
				return fmt.Errorf("genesis finalize: %w", err)
			}
			g, err := d.Genesis()
			if err != nil {
				return fmt.Errorf("genesis finalize: %w", err)
			}
			raw, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				return fmt.Errorf("genesis finalize: %w", err)
			}
			raw = append(raw, '\n')
			// What a node reads must be what was validated.
			parsed, err := ledger.ParseGenesis(raw)
			if err != nil {
				return fmt.Errorf("genesis finalize: %w", err)
			}
			h, err := parsed.Hash()
			if err != nil {
				return fmt.Errorf("genesis finalize: %w", err)
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("genesis finalize: %s already exists", out)
			}
			if err := fsutil.WriteFileAtomic(out, raw, 0o644); err != nil {
				return fmt.Errorf("genesis finalize: %w", err)
			}
			w := stdoutOf(cmd)
			fmt.Fprintf(w, "wrote %s: chain %s, %d nodes, KMG %d of %d, NOG %d of %d\n", out, g.ChainID, len(g.Nodes), g.KMG.Threshold, len(g.KMG.Keys), g.NOG.Threshold, len(g.NOG.Keys))
			fmt.Fprintf(w, "genesis hash %s\n", h)
			fmt.Fprintf(w, "every operator: teeup genesis verify %s --bundle THEIR_BUNDLE, and compare the hash\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&draft, "draft", defaultDraft, "the genesis draft")
	cmd.Flags().StringVarP(&out, "out", "o", "genesis.json", "genesis file to write")
	return cmd
}

// genesisVerification is what 'genesis verify --json' prints.
type genesisVerification struct {
	File    string   `json:"file"`
	ChainID string   `json:"chain_id"`
	Hash    string   `json:"hash"`
	Nodes   int      `json:"nodes"`
	Bundles []string `json:"bundles_checked"`
}

func newGenesisVerifyCmd() *cobra.Command {
	var (
		bundles []string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "verify GENESIS [--bundle FILE]...",
		Short: "Validate a genesis as a node would, print its hash, and check that it contains your bundle",
		Long: `Load GENESIS exactly as teeup-node does (strict JSON, every rule), print its hash and nodes, and
check that each --bundle is in it as made: the node entry with its operator, the NOG key, the
KMG key if any, and the test account with its balance. Exit 1 if anything differs. Each
operator runs it on the genesis.json it received, with its own bundle, and compares the hash
with the others.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := ledger.LoadGenesis(args[0])
			if err != nil {
				return fmt.Errorf("genesis verify: %w", err)
			}
			h, err := g.Hash()
			if err != nil {
				return fmt.Errorf("genesis verify: %w", err)
			}
			res := genesisVerification{File: args[0], ChainID: g.ChainID, Hash: h.String(), Nodes: len(g.Nodes), Bundles: []string{}}
			for _, path := range bundles {
				b, err := genesisdraft.LoadBundle(path)
				if err != nil {
					return fmt.Errorf("genesis verify: %w", err)
				}
				if err := genesisdraft.CheckBundle(g, b); err != nil {
					return &ExitError{Code: 1, Err: fmt.Errorf("genesis verify %s: %s: %w", args[0], path, err)}
				}
				res.Bundles = append(res.Bundles, path)
			}
			w := stdoutOf(cmd)
			if asJSON {
				return printJSON(w, res)
			}
			fmt.Fprintf(w, "%s: chain %s, time %s, KMG %d of %d, NOG %d of %d\n", args[0], g.ChainID, g.Time.UTC().Format(time.RFC3339), g.KMG.Threshold, len(g.KMG.Keys), g.NOG.Threshold, len(g.NOG.Keys))
			for _, n := range g.Nodes {
				op := n.Operator
				if op == "" {
					op = "-"
				}
				fmt.Fprintf(w, "  node %d %q  peer %s  client %s  operator %s\n", n.ID, n.Name, n.PeerAddr, n.ClientAddr, op)
			}
			for _, p := range res.Bundles {
				fmt.Fprintf(w, "bundle %s: contained as made\n", p)
			}
			fmt.Fprintf(w, "genesis hash %s\n", h)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&bundles, "bundle", nil, "a host bundle that must be in the genesis as made (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// publicKeysHex turns key arguments (hex or key files) into lower-case hex.
func publicKeysHex(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for _, a := range args {
		addr, err := resolveAddress(&target{}, a)
		if err != nil {
			return nil, err
		}
		out = append(out, addr.String())
	}
	return out, nil
}

// parseAccountArg parses ADDRESS=BALANCE[:LABEL].
func parseAccountArg(s string) (ledger.GenesisAccount, error) {
	who, rest, ok := strings.Cut(s, "=")
	if !ok {
		return ledger.GenesisAccount{}, fmt.Errorf("%q: want ADDRESS=BALANCE[:LABEL]", s)
	}
	bal, label, _ := strings.Cut(rest, ":")
	n, err := strconv.ParseUint(bal, 10, 64)
	if err != nil {
		return ledger.GenesisAccount{}, fmt.Errorf("%q: balance: %w", s, err)
	}
	addr, err := resolveAddress(&target{}, who)
	if err != nil {
		return ledger.GenesisAccount{}, err
	}
	return ledger.GenesisAccount{Address: addr, Balance: n, Label: label}, nil
}
