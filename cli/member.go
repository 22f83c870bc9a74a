package cli

import (
	"crypto/sha256"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
)

// newMemberCmd is 'teeup member': membership and governance groups on
// chain, voted by the Node Operators Group.
func newMemberCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Add, remove and re-key nodes, and rotate the NOG and KMG, by governance",
		Long: `Membership is governed on chain. The genesis is only the initial membership: nodes are added
and removed, and the Node Operators Group (NOG) and Key Management Group (KMG) replaced, by
votes of the NOG in force to its quorum. A node that lost its sealed keys comes back with a new
identity key, which its operator (or the NOG quorum) registers with 'member rekey'.`,
	}
	cmd.AddCommand(newMemberAddCmd(), newMemberRemoveCmd(), newMemberRekeyCmd(), newMemberGroupCmd(), newMemberKMGSignCmd(), newMemberListCmd())
	return cmd
}

// voteSummary prints how a membership vote stands after it was committed.
func voteSummary(w io.Writer, what string, res *governanceTx, kind ledger.TxKind, payload []byte, done bool) {
	if done {
		fmt.Fprintf(w, "%s: DONE (tx %s, height %d)\n", what, res.Receipt.TxID, res.Receipt.Height)
		return
	}
	h := ledger.Hash(sha256.Sum256(payload)).String()
	votes := 0
	for _, v := range res.Governance.PendingMembershipVotes {
		if v.Kind == kind.String() && v.Hash == h {
			votes++
		}
	}
	fmt.Fprintf(w, "%s: vote recorded (tx %s, height %d): %d of quorum %d votes\n", what, res.Receipt.TxID, res.Receipt.Height, votes, res.Governance.Quorum)
}

func findMember(g *nodeapi.Governance, id uint64) (nodeapi.MemberInfo, bool) {
	for _, m := range g.Members {
		if m.ID == id {
			return m, true
		}
	}
	return nodeapi.MemberInfo{}, false
}

func optionalKey(t *target, s string) (ledger.Address, error) {
	if s == "" {
		return ledger.Address{}, nil
	}
	return resolveAddress(t, s)
}

func newMemberAddCmd() *cobra.Command {
	var f govFlags
	var spec ledger.MemberSpec
	var operator, nodeKey string
	cmd := &cobra.Command{
		Use:   "add ID --peer-addr HOST:PORT --client-addr HOST:PORT [--name N] [--operator KEY] [--node-key HEX] --key NOG_KEY",
		Short: "Vote to add a node to the network",
		Long: `Vote, as a NOG member, to add node ID. At the quorum the node is a member: its peers give it
the ledger key over mutual attested TLS, the leader adds it to raft as a voter, and it receives
the ledger by state transfer. --node-key is the identity key the new node printed when it first
started ('teeup status' on its host shows it as node_key): with it, no other enclave can take the
new node's place; --operator is the key of its operator, who may re-key it later.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("member add: %q is not a node id (≥ 1)", args[0])
			}
			spec.ID = id
			if spec.Name == "" {
				spec.Name = fmt.Sprintf("node-%d", id)
			}
			if spec.PeerAddr == "" || spec.ClientAddr == "" {
				return fmt.Errorf("member add: --peer-addr and --client-addr are required")
			}
			if spec.Operator, err = optionalKey(&f.t, operator); err != nil {
				return fmt.Errorf("member add: --operator: %w", err)
			}
			if spec.NodeKey, err = optionalKey(&f.t, nodeKey); err != nil {
				return fmt.Errorf("member add: --node-key: %w", err)
			}
			payload := ledger.EncodeMemberSpec(spec)
			if _, err := ledger.DecodeMemberSpec(payload); err != nil {
				return fmt.Errorf("member add: %w", err)
			}
			res, err := submitGovernance(cmd.Context(), &f, "member add", ledger.TxAddNode, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			m, ok := findMember(res.Governance, id)
			voteSummary(stdoutOf(cmd), fmt.Sprintf("add node %d", id), res, ledger.TxAddNode, payload, ok && m.RemovedAt == 0)
			return nil
		},
	}
	f.bind(cmd, true)
	fl := cmd.Flags()
	fl.StringVar(&spec.Name, "name", "", "node name (default node-ID)")
	fl.StringVar(&spec.PeerAddr, "peer-addr", "", "the node's peer (consensus) address")
	fl.StringVar(&spec.ClientAddr, "client-addr", "", "the node's client API address")
	fl.StringVar(&operator, "operator", "", "the operator's public key (hex, key file, or devnet key name)")
	fl.StringVar(&nodeKey, "node-key", "", "the node identity key it must register with (hex)")
	return cmd
}

func newMemberRemoveCmd() *cobra.Command {
	var f govFlags
	cmd := &cobra.Command{
		Use:   "remove ID --key NOG_KEY",
		Short: "Vote to remove a node from the network",
		Long: `Vote, as a NOG member, to remove node ID. At the quorum it is no longer a member: the leader
removes it from raft, every peer drops and refuses its connections, and it serves nothing. Its id
is never reused; its blocks stay verifiable history.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("member remove: %q is not a node id (≥ 1)", args[0])
			}
			payload := ledger.EncodeNodeRemoval(ledger.NodeRemoval{ID: id})
			res, err := submitGovernance(cmd.Context(), &f, "member remove", ledger.TxRemoveNode, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			m, _ := findMember(res.Governance, id)
			voteSummary(stdoutOf(cmd), fmt.Sprintf("remove node %d", id), res, ledger.TxRemoveNode, payload, m.RemovedAt != 0)
			return nil
		},
	}
	f.bind(cmd, true)
	return cmd
}

func newMemberRekeyCmd() *cobra.Command {
	var f govFlags
	var nodeKey string
	cmd := &cobra.Command{
		Use:   "rekey ID --node-key HEX --key OPERATOR_OR_NOG_KEY",
		Short: "Register a new identity key for a node that lost its keys",
		Long: `A node that lost its sealed keys (a wiped or replaced disk) starts with a new identity key,
which it prints and reports as node_key in its status; members refuse it the ledger key and
every consensus message until the chain registers that key for its id. Its operator's key does
that at once; NOG members may instead vote it to the quorum. The previous key is revoked: a node
holding it is refused from then on, while the blocks it signed stay verifiable history.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("member rekey: %q is not a node id (≥ 1)", args[0])
			}
			if nodeKey == "" {
				return fmt.Errorf("member rekey: --node-key is required (the node_key the node reports)")
			}
			key, err := resolveAddress(&f.t, nodeKey)
			if err != nil {
				return fmt.Errorf("member rekey: --node-key: %w", err)
			}
			payload := ledger.EncodeNodeRekey(ledger.NodeRekey{ID: id, Key: key})
			res, err := submitGovernance(cmd.Context(), &f, "member rekey", ledger.TxRekeyNode, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			m, _ := findMember(res.Governance, id)
			voteSummary(stdoutOf(cmd), fmt.Sprintf("re-key node %d to %s", id, short(key.String())), res, ledger.TxRekeyNode, payload, m.RegisteredKey == key.String())
			return nil
		},
	}
	f.bind(cmd, true)
	cmd.Flags().StringVar(&nodeKey, "node-key", "", "the node's new identity key (hex)")
	return cmd
}

// groupChangeFlags build a GroupChange from flags.
type groupChangeFlags struct {
	group     string
	keys      []string
	threshold int
}

func (g *groupChangeFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&g.group, "group", "", "nog or kmg")
	fl.StringSliceVar(&g.keys, "members", nil, "the new group's public keys (hex, key files or devnet key names), comma-separated")
	fl.IntVar(&g.threshold, "threshold", 0, "the new group's threshold (quorum)")
}

func (g *groupChangeFlags) change(t *target) (ledger.GroupChange, error) {
	var c ledger.GroupChange
	switch strings.ToLower(g.group) {
	case "nog":
		c.Group = ledger.GroupNOG
	case "kmg":
		c.Group = ledger.GroupKMG
	default:
		return c, fmt.Errorf("--group must be nog or kmg, not %q", g.group)
	}
	for _, k := range g.keys {
		a, err := resolveAddress(t, k)
		if err != nil {
			return c, fmt.Errorf("--members %s: %w", k, err)
		}
		c.Keys = append(c.Keys, a)
	}
	c.Threshold = g.threshold
	return c, nil
}

func newMemberGroupCmd() *cobra.Command {
	var f govFlags
	var g groupChangeFlags
	var sigFiles []string
	cmd := &cobra.Command{
		Use:   "change-group --group nog|kmg --members K1,K2,... --threshold T [--kmg-signature SIG ...] --key NOG_KEY",
		Short: "Vote to replace the NOG or the KMG",
		Long: `Vote, as a member of the NOG in force, to replace a group. At the quorum the new group is in
force: for the NOG, every pending vote is dropped and former members' votes are refused; for the
KMG, releases need the new group's threshold. A KMG change must also carry signatures of the
current KMG's threshold over the change ('teeup member kmg-sign', one per KMG member).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.change(&f.t)
			if err != nil {
				return fmt.Errorf("member change-group: %w", err)
			}
			for _, s := range sigFiles {
				sig, err := parseSignatureArg(s)
				if err != nil {
					return fmt.Errorf("member change-group: --kmg-signature: %w", err)
				}
				c.KMGSignatures = append(c.KMGSignatures, sig)
			}
			payload := ledger.EncodeGroupChange(c)
			if _, err := ledger.DecodeGroupChange(payload); err != nil {
				return fmt.Errorf("member change-group: %w", err)
			}
			res, err := submitGovernance(cmd.Context(), &f, "member change-group", ledger.TxChangeGroup, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			cur := res.Governance.NOG
			if c.Group == ledger.GroupKMG {
				cur = res.Governance.KMG
			}
			done := cur != nil && cur.Threshold == c.Threshold && len(cur.Keys) == len(c.Keys) && cur.Keys[0] == c.Keys[0].String()
			voteSummary(stdoutOf(cmd), "change "+c.Group.String(), res, ledger.TxChangeGroup, payload, done)
			return nil
		},
	}
	f.bind(cmd, true)
	g.bind(cmd)
	cmd.Flags().StringSliceVar(&sigFiles, "kmg-signature", nil, "a current KMG member's signature over a KMG change, as printed by 'member kmg-sign' (KEY:SIG)")
	return cmd
}

func parseSignatureArg(s string) (release.Signature, error) {
	key, sig, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return release.Signature{}, fmt.Errorf("%q is not KEY:SIG", s)
	}
	return release.Signature{Key: key, Sig: sig}, nil
}

func newMemberKMGSignCmd() *cobra.Command {
	var f govFlags
	var g groupChangeFlags
	var signKey string
	cmd := &cobra.Command{
		Use:   "kmg-sign --members K1,K2,... --threshold T --sign-key KMG_KEY",
		Short: "Sign a KMG change as a member of the current KMG (prints KEY:SIG)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g.group = "kmg"
			c, err := g.change(&f.t)
			if err != nil {
				return fmt.Errorf("member kmg-sign: %w", err)
			}
			key, err := keyfile.ReadPrivate(resolveKeyPath(&f.t, signKey))
			if err != nil {
				return fmt.Errorf("member kmg-sign: %w", err)
			}
			node, err := f.connect()
			if err != nil {
				return fmt.Errorf("member kmg-sign: %w", err)
			}
			defer node.Close()
			gov, err := node.Releases(cmd.Context())
			if err != nil {
				return fmt.Errorf("member kmg-sign: read the chain: %w", err)
			}
			sig := release.SignatureOf(key, ledger.GroupChangeSigningBytes(gov.ChainID, gov.NextGroupChangeSeq, c))
			fmt.Fprintf(stdoutOf(cmd), "%s:%s\n", sig.Key, sig.Sig)
			return nil
		},
	}
	f.bind(cmd, false)
	g.bind(cmd)
	cmd.Flags().StringVar(&signKey, "sign-key", "", "the current KMG member's private key file (with --devnet: e.g. kmg-1)")
	return cmd
}

func newMemberListCmd() *cobra.Command {
	var f govFlags
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "Members, groups, pending membership votes and the membership history on chain",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			node, err := f.connect()
			if err != nil {
				return fmt.Errorf("member list: %w", err)
			}
			defer node.Close()
			g, err := node.Releases(cmd.Context())
			if err != nil {
				return fmt.Errorf("member list: %w", err)
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), g)
			}
			return printMembers(stdoutOf(cmd), g)
		},
	}
	f.bind(cmd, false)
	return cmd
}

func printMembers(out io.Writer, g *nodeapi.Governance) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tPEER\tCLIENT\tOPERATOR\tREGISTERED KEY\tSTATE")
	for _, m := range g.Members {
		state := "member"
		if m.AddedAt > 0 {
			state = fmt.Sprintf("member since %d", m.AddedAt)
		}
		if m.RemovedAt > 0 {
			state = fmt.Sprintf("removed at %d", m.RemovedAt)
		}
		reg := "-"
		if m.RegisteredKey != "" {
			reg = short(m.RegisteredKey)
		} else if m.NodeKey != "" {
			reg = "(expects " + short(m.NodeKey) + ")"
		}
		op := "-"
		if m.Operator != "" {
			op = short(m.Operator)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Name, m.PeerAddr, m.ClientAddr, op, reg, state)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for name, grp := range map[string]*nodeapi.GroupInfo{"NOG": g.NOG, "KMG": g.KMG} {
		if grp != nil {
			shorts := make([]string, len(grp.Keys))
			for i, k := range grp.Keys {
				shorts[i] = short(k)
			}
			fmt.Fprintf(out, "%s: %d of %d (%s)\n", name, grp.Threshold, len(grp.Keys), strings.Join(shorts, ", "))
		}
	}
	for _, v := range g.PendingMembershipVotes {
		fmt.Fprintf(out, "pending vote: %s by %s (payload %s)\n", v.Kind, short(v.Member), short(v.Hash))
	}
	for _, c := range g.MembershipChanges {
		fmt.Fprintf(out, "height %d: %s (%d approvers)\n", c.Height, c.Summary, len(c.Approvers))
	}
	return nil
}
