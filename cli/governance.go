package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
)

// newReleaseGovernanceCmds returns the 'teeup release' subcommands that
// govern releases on chain (Node Operators Group transactions).
func newReleaseGovernanceCmds() []*cobra.Command {
	return []*cobra.Command{
		newReleaseProposeCmd(),
		newReleaseApproveCmd(),
		newReleaseScheduleCmd(),
		newReleaseAbortCmd(),
		newReleaseApproveRollbackCmd(),
		newReleaseListCmd(),
	}
}

// governanceNode is what the governance commands need of a node: the
// client API or the admin socket.
type governanceNode interface {
	Account(ctx context.Context, address string) (*nodeapi.Account, error)
	Submit(ctx context.Context, tx []byte) (*nodeapi.Receipt, error)
	TxStatus(ctx context.Context, id string) (*nodeapi.TxStatus, error)
	Releases(ctx context.Context) (*nodeapi.Governance, error)
	Close()
}

// adminGovernance adapts the admin client, which reads transaction
// statuses through its generic Get.
type adminGovernance struct{ *nodeapi.AdminClient }

func (a adminGovernance) TxStatus(ctx context.Context, id string) (*nodeapi.TxStatus, error) {
	var st nodeapi.TxStatus
	if err := a.Get(ctx, nodeapi.PathTx+"/"+id, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// govFlags are the flags every governance command shares.
type govFlags struct {
	t        target
	viaAdmin bool
	asJSON   bool
	key      string        // submitting commands only
	wait     time.Duration // submitting commands only
}

func (f *govFlags) bind(cmd *cobra.Command, submits bool) {
	f.t.bind(cmd, true)
	fl := cmd.Flags()
	fl.BoolVar(&f.viaAdmin, "admin", false, "go through the node's admin API — its socket, or with --host the remote host's (works while client ingress is closed)")
	fl.BoolVar(&f.asJSON, "json", false, "print JSON")
	if submits {
		fl.StringVar(&f.key, "key", "", "ed25519 key file of a Node Operators Group member (with --devnet: a key name such as nog-1)")
		fl.DurationVar(&f.wait, "wait", 30*time.Second, "when the node's answer does not say whether the vote was committed (its wait for the block timed out), how long to look it up")
	}
}

// connect returns the node to talk to: the admin API with --admin (or
// when only --admin-socket or --host says where the node is) — the unix
// socket, or the remote host's over mutual TLS — else the client API.
func (f *govFlags) connect() (governanceNode, error) {
	if f.viaAdmin || ((f.t.adminPath != "" || f.t.host != "") && f.t.addr == "") {
		a, err := f.t.admin()
		if err != nil {
			return nil, err
		}
		return adminGovernance{a}, nil
	}
	return f.t.client()
}

// governanceTx is a governance transaction committed on chain.
type governanceTx struct {
	Receipt    *nodeapi.Receipt    `json:"receipt"`
	Sender     string              `json:"sender"`
	Governance *nodeapi.Governance `json:"governance"`
}

// submitGovernance signs a governance transaction of kind with the
// member's key, submits it, waits for its block, and returns the receipt
// and the governance state after it. When the wait for the block ends
// without the node's verdict, the transaction is looked up before anything
// is reported: a committed vote succeeds, and only one that is rejected or
// still not committed after --wait fails (exit 1). A transaction the ledger
// committed without effect (it lost a race with another) is an error.
func submitGovernance(ctx context.Context, f *govFlags, what string, kind ledger.TxKind, payload []byte) (*governanceTx, error) {
	if f.key == "" {
		return nil, fmt.Errorf("%s: --key NOG_KEY is required", what)
	}
	key, err := keyfile.ReadPrivate(resolveKeyPath(&f.t, f.key))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	chainID, err := chainIDOf(&f.t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	node, err := f.connect()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer node.Close()
	return submitGovernanceVia(ctx, node, chainID, key, f.wait, what, kind, payload)
}

// submitGovernanceVia is submitGovernance through node (which it does not
// close) on chain chainID, signed with key, looking a vote whose wait
// ended without the node's verdict up for wait.
func submitGovernanceVia(ctx context.Context, node governanceNode, chainID string, key ed25519.PrivateKey, wait time.Duration, what string, kind ledger.TxKind, payload []byte) (*governanceTx, error) {
	from, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	acct, err := node.Account(ctx, from.String())
	if nodeapi.IsCode(err, nodeapi.CodeClosedForUpgrade) {
		return nil, fmt.Errorf("%s: %w (governance transactions can go through the admin socket: add --admin)", what, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read the sender's account: %w", what, err)
	}
	tx, err := ledger.NewGovernanceTx(chainID, kind, payload, acct.Nonce+1, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	rec, err := nodeapi.SubmitAndConfirm(ctx, node, tx.Encode(), tx.ID().String(), wait)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	st, err := node.TxStatus(ctx, rec.TxID)
	if err != nil {
		return nil, fmt.Errorf("%s: committed as tx %s at height %d, but reading its status failed: %w", what, rec.TxID, rec.Height, err)
	}
	if committedWithoutEffect(st) {
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s: tx %s was %w at height %d: %s", what, rec.TxID, nodeapi.ErrNoEffect, rec.Height, st.Reason)}
	}
	g, err := node.Releases(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: committed as tx %s at height %d, but reading the governance state failed: %w", what, rec.TxID, rec.Height, err)
	}
	return &governanceTx{Receipt: rec, Sender: from.String(), Governance: g}, nil
}

// committedWithoutEffect reports whether a committed transaction's status
// says it had no effect: its code is no_effect, or, from a node that
// predates result codes, it carries a reason (only such a transaction
// had one).
func committedWithoutEffect(st *nodeapi.TxStatus) bool {
	if st.Code != "" {
		return ledger.Code(st.Code) == ledger.CodeNoEffect
	}
	return st.Reason != ""
}

func newReleaseProposeCmd() *cobra.Command {
	var f govFlags
	cmd := &cobra.Command{
		Use:   "propose FILE --key NOG_KEY",
		Short: "Propose a KMG-signed release on chain (a Node Operators Group member's transaction)",
		Long: `Submit the signed release in FILE (written by 'teeup release create' and signed by the Key
Management Group with 'teeup release sign') as a proposal, signed with the Node Operators Group
member key --key, and wait for its block. The chain admits it only if the release is for this
network, carries the group's threshold of signatures on its manifest and enclave IDs, and is newer
than every approved release. The proposer's approval counts; other members approve with
'teeup release approve'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sr, err := release.Load(args[0])
			if err != nil {
				return fmt.Errorf("release propose: %w", err)
			}
			if err := sr.Check(); err != nil {
				return fmt.Errorf("release propose: %s: %w", args[0], err)
			}
			payload, err := json.Marshal(sr)
			if err != nil {
				return fmt.Errorf("release propose: %w", err)
			}
			if len(payload) > ledger.MaxGovernancePayloadSize {
				return fmt.Errorf("release propose: the release is %d bytes as compact JSON, more than a proposal may carry (%d): shorten its notes", len(payload), ledger.MaxGovernancePayloadSize)
			}
			res, err := submitGovernance(cmd.Context(), &f, "release propose", ledger.TxProposeRelease, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			version := sr.Manifest.Version
			w := stdoutOf(cmd)
			fmt.Fprintf(w, "proposed release %s (tx %s, height %d)\n", version, res.Receipt.TxID, res.Receipt.Height)
			printApprovals(w, res.Governance, version)
			return nil
		},
	}
	f.bind(cmd, true)
	return cmd
}

// printApprovals prints a release's approval count and state.
func printApprovals(w io.Writer, g *nodeapi.Governance, version string) {
	r, ok := g.Release(version)
	if !ok {
		fmt.Fprintf(w, "  release %s is not on chain\n", version)
		return
	}
	fmt.Fprintf(w, "  node mrenclave %s, manifest hash %s\n", r.NodeMREnclave, r.ManifestHash)
	if r.Approved() {
		fmt.Fprintf(w, "  %d of quorum %d approvals: APPROVED at height %d\n", len(r.Approvers), g.Quorum, r.ApprovedAt)
		return
	}
	fmt.Fprintf(w, "  %d of quorum %d approvals: not approved yet\n", len(r.Approvers), g.Quorum)
}

func newReleaseApproveCmd() *cobra.Command {
	var f govFlags
	var manifest string
	cmd := &cobra.Command{
		Use:   "approve VERSION --key NOG_KEY [--manifest FILE]",
		Short: "Approve a proposed release on chain (a Node Operators Group member's transaction)",
		Long: `Approve exactly one manifest of release VERSION: the approval names the SHA-256 of the manifest's
signing bytes. With --manifest FILE the hash is computed from a release file you checked
yourself (recommended); without it, it is read from the proposal on chain. When the
approvals reach the Node Operators Group's quorum the release is approved.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := args[0]
			if err := release.ValidateVersion(version); err != nil {
				return fmt.Errorf("release approve: %w", err)
			}
			hash, err := approvalHash(cmd.Context(), &f, version, manifest)
			if err != nil {
				return fmt.Errorf("release approve: %w", err)
			}
			payload := ledger.EncodeReleaseApproval(ledger.ReleaseApproval{Version: version, ManifestHash: hash})
			res, err := submitGovernance(cmd.Context(), &f, "release approve", ledger.TxApproveRelease, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			w := stdoutOf(cmd)
			fmt.Fprintf(w, "approved release %s (tx %s, height %d)\n", version, res.Receipt.TxID, res.Receipt.Height)
			printApprovals(w, res.Governance, version)
			return nil
		},
	}
	f.bind(cmd, true)
	cmd.Flags().StringVar(&manifest, "manifest", "", "signed release file to take the manifest hash from (default: the proposal on chain)")
	return cmd
}

// approvalHash returns the manifest hash to approve: from the file, or
// from the chain's proposal of version.
func approvalHash(ctx context.Context, f *govFlags, version, manifest string) (ledger.Hash, error) {
	if manifest != "" {
		sr, err := release.Load(manifest)
		if err != nil {
			return ledger.Hash{}, err
		}
		if sr.Manifest.Version != version {
			return ledger.Hash{}, fmt.Errorf("%s is release %s, not %s", manifest, sr.Manifest.Version, version)
		}
		return ledger.ManifestHash(sr)
	}
	node, err := f.connect()
	if err != nil {
		return ledger.Hash{}, err
	}
	defer node.Close()
	g, err := node.Releases(ctx)
	if err != nil {
		return ledger.Hash{}, fmt.Errorf("read the proposal: %w", err)
	}
	r, ok := g.Release(version)
	if !ok {
		return ledger.Hash{}, fmt.Errorf("release %s is not proposed on chain (propose it with 'teeup release propose')", version)
	}
	return ledger.ParseHash(r.ManifestHash)
}

func newReleaseScheduleCmd() *cobra.Command {
	var f govFlags
	var height uint64
	cmd := &cobra.Command{
		Use:   "schedule VERSION --height H --key NOG_KEY",
		Short: "Vote to schedule the flag-day upgrade to an approved release at height H",
		Long: fmt.Sprintf(`Vote, as a Node Operators Group member, to upgrade the network to the approved release
VERSION at activation height H. When the quorum of members has voted for the same VERSION and H,
the schedule is in force: nodes of another MRENCLAVE close client ingress a few blocks before H
and commit no block past it, and the agents hand the keys over to the new release. H must be at
least %d blocks above the head when the vote is admitted, and another schedule must not be
pending. An older approved release can be scheduled only after a rollback to it is approved
('teeup release approve-rollback').`, ledger.MinScheduleLead),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := args[0]
			if err := release.ValidateVersion(version); err != nil {
				return fmt.Errorf("release schedule: %w", err)
			}
			if height == 0 {
				return fmt.Errorf("release schedule: --height H is required (at least %d above the current height)", ledger.MinScheduleLead)
			}
			kind, payload := scheduleVote(version, height)
			res, err := submitGovernance(cmd.Context(), &f, "release schedule", kind, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			printScheduleVote(stdoutOf(cmd), res, version, height)
			return nil
		},
	}
	f.bind(cmd, true)
	cmd.Flags().Uint64Var(&height, "height", 0, "activation height of the upgrade")
	return cmd
}

// scheduleVote is a Node Operators Group member's vote to schedule the
// flag-day upgrade to version at height ('teeup release schedule', and
// the operator's own vote of 'teeup flagday run').
func scheduleVote(version string, height uint64) (ledger.TxKind, []byte) {
	return ledger.TxScheduleUpgrade, ledger.EncodeUpgradeSchedule(ledger.UpgradeSchedule{Version: version, ActivationHeight: height})
}

// printScheduleVote says whether the vote put the schedule in force, or
// how many of the quorum's votes are pending.
func printScheduleVote(w io.Writer, res *governanceTx, version string, height uint64) {
	g := res.Governance
	if s := g.Schedule; s != nil && s.Version == version && s.ActivationHeight == height {
		fmt.Fprintf(w, "upgrade to release %s SCHEDULED at height %d (tx %s, height %d)\n", version, height, res.Receipt.TxID, res.Receipt.Height)
		fmt.Fprintf(w, "  node mrenclave %s; in force since height %d with %d of quorum %d votes\n", s.NodeMREnclave, s.ScheduledAt, len(s.Approvers), g.Quorum)
		return
	}
	votes := 0
	for _, v := range g.PendingSchedules {
		if v.Version == version && v.ActivationHeight == height {
			votes++
		}
	}
	fmt.Fprintf(w, "vote to schedule release %s at height %d recorded (tx %s, height %d): %d of quorum %d votes\n", version, height, res.Receipt.TxID, res.Receipt.Height, votes, g.Quorum)
}

func newReleaseAbortCmd() *cobra.Command {
	var f govFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "abort VERSION --reason TEXT --key NOG_KEY",
		Short: "Vote to abort the scheduled upgrade to VERSION",
		Long: `Vote, as a Node Operators Group member, to abort the upgrade schedule in force for VERSION.
An abort vote takes effect as soon as it is admitted (old nodes halted at the activation height
build no block that could carry it): when the quorum has voted, the schedule is cleared and
recorded as aborted, and nodes of the old release continue past the activation height. Use
--admin while client ingress is closed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			version := args[0]
			if err := release.ValidateVersion(version); err != nil {
				return fmt.Errorf("release abort: %w", err)
			}
			reason = strings.TrimSpace(reason)
			if reason == "" {
				return errors.New("release abort: --reason TEXT is required")
			}
			if len(reason) > ledger.MaxAbortReasonLen {
				return fmt.Errorf("release abort: --reason is %d bytes, at most %d", len(reason), ledger.MaxAbortReasonLen)
			}
			payload := ledger.EncodeUpgradeAbort(ledger.UpgradeAbort{Version: version, Reason: reason})
			res, err := submitGovernance(cmd.Context(), &f, "release abort", ledger.TxAbortUpgrade, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			w := stdoutOf(cmd)
			g := res.Governance
			if s := g.Schedule; s != nil && s.Version == version {
				fmt.Fprintf(w, "vote to abort the upgrade to %s recorded (tx %s, height %d): %d of quorum %d votes\n", version, res.Receipt.TxID, res.Receipt.Height, len(g.PendingAborts), g.Quorum)
				return nil
			}
			for i := len(g.Aborts) - 1; i >= 0; i-- {
				if a := g.Aborts[i]; a.Version == version {
					fmt.Fprintf(w, "upgrade to %s (activation height %d) ABORTED at height %d: %s\n", version, a.ActivationHeight, a.Height, a.Reason)
					return nil
				}
			}
			fmt.Fprintf(w, "abort vote committed (tx %s, height %d); no upgrade to %s is scheduled now\n", res.Receipt.TxID, res.Receipt.Height, version)
			return nil
		},
	}
	f.bind(cmd, true)
	cmd.Flags().StringVar(&reason, "reason", "", "why the upgrade is aborted (recorded on chain)")
	return cmd
}

func newReleaseApproveRollbackCmd() *cobra.Command {
	var f govFlags
	var from, to string
	cmd := &cobra.Command{
		Use:   "approve-rollback --from V1 --to V0 --key NOG_KEY",
		Short: "Vote to allow going back from approved release V1 to the older approved release V0",
		Long: `Vote, as a Node Operators Group member, to allow a rollback from release V1 to the older
release V0 (both approved). At quorum a rollback record is kept on chain: agents then hand keys
to V0's node, which they otherwise refuse as a downgrade, and V0 may be scheduled.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("release approve-rollback: --from V1 and --to V0 are required")
			}
			payload := ledger.EncodeRollbackApproval(ledger.RollbackApproval{From: from, To: to})
			if _, err := ledger.DecodeRollbackApproval(payload); err != nil {
				return fmt.Errorf("release approve-rollback: %w", err)
			}
			res, err := submitGovernance(cmd.Context(), &f, "release approve-rollback", ledger.TxApproveRollback, payload)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), res)
			}
			w := stdoutOf(cmd)
			g := res.Governance
			for _, r := range g.Rollbacks {
				if r.From == from && r.To == to {
					fmt.Fprintf(w, "rollback from %s to %s APPROVED at height %d (%d of quorum %d votes)\n", from, to, r.Height, len(r.Approvers), g.Quorum)
					return nil
				}
			}
			votes := 0
			for _, v := range g.PendingRollbacks {
				if v.From == from && v.To == to {
					votes++
				}
			}
			fmt.Fprintf(w, "vote for the rollback from %s to %s recorded (tx %s, height %d): %d of quorum %d votes\n", from, to, res.Receipt.TxID, res.Receipt.Height, votes, g.Quorum)
			return nil
		},
	}
	f.bind(cmd, true)
	cmd.Flags().StringVar(&from, "from", "", "the newer approved release to leave")
	cmd.Flags().StringVar(&to, "to", "", "the older approved release to go back to")
	return cmd
}

func newReleaseListCmd() *cobra.Command {
	var f govFlags
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "Show the releases, approvals, upgrade schedule, aborts and rollbacks on chain",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			node, err := f.connect()
			if err != nil {
				return fmt.Errorf("release list: %w", err)
			}
			defer node.Close()
			g, err := node.Releases(cmd.Context())
			if err != nil {
				return fmt.Errorf("release list: %w", err)
			}
			if f.asJSON {
				return printJSON(stdoutOf(cmd), g)
			}
			return printGovernance(stdoutOf(cmd), g)
		},
	}
	f.bind(cmd, false)
	return cmd
}

// printGovernance writes the governance state for people.
func printGovernance(out io.Writer, g *nodeapi.Governance) error {
	fmt.Fprintf(out, "chain %s at height %d; node operators quorum %d of %d\n", g.ChainID, g.Height, g.Quorum, g.Operators)
	if g.RunningRelease != "" {
		fmt.Fprintf(out, "running release %s (proposals and schedules must be newer, or allowed by an approved rollback)\n", g.RunningRelease)
	}
	if len(g.Releases) == 0 {
		fmt.Fprintln(out, "no releases proposed")
	} else {
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tPROPOSED\tAPPROVALS\tAPPROVED\tSCHEMA\tNODE MRENCLAVE")
		for _, r := range g.Releases {
			approved := "-"
			if r.Approved() {
				approved = fmt.Sprintf("%d", r.ApprovedAt)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%d\t%s\n", r.Version, r.ProposedAt, len(r.Approvers), g.Quorum, approved, r.SchemaVersion, r.NodeMREnclave)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if s := g.Schedule; s != nil {
		state := "pending"
		if s.Reached {
			state = "reached"
		}
		fmt.Fprintf(out, "schedule: release %s at height %d (%s), node mrenclave %s, in force since height %d\n", s.Version, s.ActivationHeight, state, s.NodeMREnclave, s.ScheduledAt)
		for _, v := range g.PendingAborts {
			fmt.Fprintf(out, "  abort vote by %s: %s\n", short(v.Member), v.Reason)
		}
	} else {
		fmt.Fprintln(out, "schedule: none")
	}
	for _, v := range g.PendingSchedules {
		fmt.Fprintf(out, "pending schedule vote by %s: release %s at height %d\n", short(v.Member), v.Version, v.ActivationHeight)
	}
	for _, v := range g.PendingRollbacks {
		fmt.Fprintf(out, "pending rollback vote by %s: %s -> %s\n", short(v.Member), v.From, v.To)
	}
	for _, a := range g.Aborts {
		fmt.Fprintf(out, "aborted: release %s (activation height %d) at height %d: %s\n", a.Version, a.ActivationHeight, a.Height, a.Reason)
	}
	for _, r := range g.Rollbacks {
		fmt.Fprintf(out, "rollback allowed: %s -> %s since height %d\n", r.From, r.To, r.Height)
	}
	return nil
}

// short abbreviates a hex address for tables.
func short(hexAddr string) string {
	if len(hexAddr) > 12 {
		return hexAddr[:12]
	}
	return hexAddr
}
