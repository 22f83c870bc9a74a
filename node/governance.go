package node

import (
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// upgradeHaltHeight returns the height at which this binary must stop
// committing: the activation height of the upgrade schedule in force when
// its node MRENCLAVE is not this enclave's. A node running the scheduled
// MRENCLAVE continues past it. (The ledger enforces the same rule when it
// applies blocks, so a halted node never commits past the height even if
// another node proposes such a block.)
func (n *Node) upgradeHaltHeight() (uint64, bool) {
	h, ok, err := n.store.UpgradeHaltHeight() // the store knows this node's MRENCLAVE
	if err != nil {
		// Cannot tell: the ledger refuses past-schedule blocks by itself.
		n.log.Error("read upgrade schedule", "err", err)
		return 0, false
	}
	return h, ok
}

// upgradeIngressReason is the ingress-closed reason of a scheduled upgrade.
func upgradeIngressReason(s ledger.Schedule) string {
	return fmt.Sprintf("scheduled upgrade to %s at height %d", s.Version, s.ActivationHeight)
}

// ingressClosesAt is the height from which ingress is closed ahead of an
// activation height.
func (n *Node) ingressClosesAt(activation uint64) uint64 {
	if activation <= n.cfg.IngressCloseBlocks {
		return 0
	}
	return activation - n.cfg.IngressCloseBlocks
}

// checkUpgradeIngress runs after every applied block: once the head is
// within IngressCloseBlocks of a scheduled upgrade this node does not run,
// client ingress closes, so that nothing is in flight at the activation
// height. (Nodes of the new version do not close it; the operators reopen
// ingress after the flag day.)
func (n *Node) checkUpgradeIngress() {
	s, ok, err := n.store.ActiveSchedule()
	if err != nil {
		n.log.Error("read upgrade schedule", "err", err)
		return
	}
	if !ok || s.NodeMREnclave == n.identity.UniqueID {
		return
	}
	key := fmt.Sprintf("%s@%d", s.Version, s.ActivationHeight)
	n.flushAhead(s, key)
	head, _ := n.store.Head()
	n.compactAtHalt(s, key, head)
	if !n.ingress.isOpen() {
		return
	}
	if head < n.ingressClosesAt(s.ActivationHeight) {
		return
	}
	reason := upgradeIngressReason(s)
	if err := n.ingress.set(false, reason); err != nil {
		n.log.Error("close client ingress for the scheduled upgrade", "err", err)
		return
	}
	n.log.Warn("client ingress closed for a scheduled upgrade", "version", s.Version,
		"activation_height", s.ActivationHeight, "height", head, "node_mrenclave", s.NodeMREnclave.String())
}

// flushAhead flushes the ledger's memtable once per scheduled upgrade to
// another enclave, in the background, as soon as the schedule is in force
// (blocks before its activation height): the write-ahead log the new node
// replays when it opens the ledger at H — inside the window in which
// client ingress is closed, where Pebble flushes what it replays — then
// holds only the last blocks' writes.
func (n *Node) flushAhead(s ledger.Schedule, key string) {
	if !firstFor(&n.flushedFor, key) {
		return
	}
	if _, err := n.store.DB().AsyncFlush(); err != nil {
		n.log.Warn("flush the ledger ahead of the scheduled upgrade", "version", s.Version, "err", err)
		return
	}
	n.log.Info("ledger memtable flushing ahead of the scheduled upgrade", "version", s.Version, "activation_height", s.ActivationHeight)
}

// firstFor records key ("version@height" of a schedule) in done and
// reports whether it was not there already: each once-per-schedule step
// runs on the first call for its schedule only.
func firstFor(done *atomic.Pointer[string], key string) bool {
	old := done.Swap(&key)
	return old == nil || *old != key
}

// haltKeepEntries is how many raft entries a node halted for a flag day
// keeps when it compacts its log (compactAtHalt): blocks near H are small
// (ingress is closed), and a member that lags further receives a state
// snapshot.
const haltKeepEntries = 16

// compactAtHalt compacts the raft log once this node applied a scheduled
// upgrade's activation height (it halts there): the new node reads the
// whole log when it starts, inside the window in which client ingress is
// closed, and needs none of the old network's entries.
func (n *Node) compactAtHalt(s ledger.Schedule, key string, head uint64) {
	r := n.raftRef.Load()
	if r == nil || head < s.ActivationHeight || !firstFor(&n.compactedFor, key) {
		return
	}
	r.RequestCompaction(haltKeepEntries)
}

// upgradeState reports the upgrade schedule in force for Status (nil if
// none).
func (n *Node) upgradeState() *nodeapi.UpgradeState {
	s, ok, err := n.store.ActiveSchedule()
	if err != nil {
		n.log.Error("read upgrade schedule", "err", err)
		return nil
	}
	if !ok {
		return nil
	}
	return &nodeapi.UpgradeState{
		Version:          s.Version,
		ActivationHeight: s.ActivationHeight,
		MREnclave:        s.NodeMREnclave,
		IngressCloses:    n.ingressClosesAt(s.ActivationHeight),
		ThisNodeRuns:     s.NodeMREnclave == n.identity.UniqueID,
	}
}

// registerGovernanceHandlers adds the governance read API to a mux (the
// admin API; the client API serves the same handler).
func (n *Node) registerGovernanceHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET "+nodeapi.PathReleases, n.handleReleases)
}

// handleReleases serves the governance state: proposed and approved
// releases, the schedule in force, pending votes, aborts and rollbacks.
func (n *Node) handleReleases(w http.ResponseWriter, r *http.Request) {
	v, err := n.store.Governance()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	g := governanceJSON(n.genesis.ChainID, v)
	if err := addMembership(g, n.store); err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// governanceJSON converts the ledger's governance view to its API form.
func governanceJSON(chainID string, v *ledger.GovernanceView) *nodeapi.Governance {
	g := &nodeapi.Governance{
		ChainID: chainID, Height: v.Height, Quorum: v.Quorum, Operators: v.Operators,
		Releases: make([]nodeapi.ReleaseInfo, 0, len(v.Releases)),
		Approved: make([]nodeapi.Approval, 0, len(v.Approved)),
	}
	g.RunningRelease = v.Running
	approvedAt := make(map[string]uint64, len(v.Releases))
	for _, r := range v.Releases {
		m := &r.Release.Manifest
		g.Releases = append(g.Releases, nodeapi.ReleaseInfo{
			Version: r.Version, ManifestHash: r.ManifestHash.String(),
			NodeMREnclave: m.Node.MREnclave, AgentMREnclave: m.Agent.MREnclave, SchemaVersion: m.SchemaVersion,
			Proposer: r.Proposer.String(), ProposedAt: r.ProposedAt, Approvers: addressStrings(r.Approvers),
			ApprovedAt: r.ApprovedAt, Release: r.Raw,
		})
		approvedAt[r.Version] = r.ApprovedAt
	}
	for _, version := range v.Approved {
		g.Approved = append(g.Approved, nodeapi.Approval{Version: version, Height: approvedAt[version]})
	}
	if s := v.Schedule; s != nil {
		g.Schedule = &nodeapi.ScheduleInfo{
			Version: s.Version, NodeMREnclave: s.NodeMREnclave, ActivationHeight: s.ActivationHeight,
			ScheduledAt: s.ScheduledAt, Approvers: addressStrings(s.Approvers), Reached: s.Reached(v.Height),
		}
		for _, a := range v.AbortVotes {
			g.PendingAborts = append(g.PendingAborts, nodeapi.AbortVote{Member: a.Member.String(), Reason: a.Reason})
		}
	}
	for _, s := range v.ScheduleVotes {
		g.PendingSchedules = append(g.PendingSchedules, nodeapi.ScheduleVote{Member: s.Member.String(), Version: s.Version, ActivationHeight: s.ActivationHeight})
	}
	for _, r := range v.RollbackVotes {
		g.PendingRollbacks = append(g.PendingRollbacks, nodeapi.RollbackVote{Member: r.Member.String(), From: r.From, To: r.To})
	}
	for _, a := range v.Aborts {
		g.Aborts = append(g.Aborts, nodeapi.AbortInfo{
			Version: a.Version, NodeMREnclave: a.NodeMREnclave, ActivationHeight: a.ActivationHeight,
			ScheduledAt: a.ScheduledAt, Height: a.Height, Reason: a.Reason, Approvers: addressStrings(a.Approvers),
		})
	}
	for _, r := range v.Rollbacks {
		g.Rollbacks = append(g.Rollbacks, nodeapi.RollbackInfo{From: r.From, To: r.To, Height: r.Height, Approvers: addressStrings(r.Approvers)})
	}
	return g
}

func addressStrings(as []ledger.Address) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// addMembership adds the members, groups, pending membership votes and
// membership history to a governance view.
func addMembership(g *nodeapi.Governance, st *ledger.Store) error {
	members, err := st.Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		mi := nodeapi.MemberInfo{ID: m.ID, Name: m.Name, PeerAddr: m.PeerAddr, ClientAddr: m.ClientAddr,
			AddedAt: m.AddedAt, RemovedAt: m.RemovedAt}
		if !m.Operator.IsZero() {
			mi.Operator = m.Operator.String()
		}
		if !m.NodeKey.IsZero() {
			mi.NodeKey = m.NodeKey.String()
		}
		if rec, ok, err := st.Node(m.ID); err == nil && ok {
			mi.RegisteredKey, mi.MREnclave = rec.Key.String(), rec.Measurement
		}
		g.Members = append(g.Members, mi)
	}
	nog, kmg, err := st.Groups()
	if err != nil {
		return err
	}
	g.NOG = &nodeapi.GroupInfo{Keys: nog.Keys, Threshold: nog.Threshold}
	g.KMG = &nodeapi.GroupInfo{Keys: kmg.Keys, Threshold: kmg.Threshold}
	votes, err := st.MembershipVotes()
	if err != nil {
		return err
	}
	for _, v := range votes {
		g.PendingMembershipVotes = append(g.PendingMembershipVotes, nodeapi.MembershipVote{Member: v.Voter.String(), Kind: v.Kind.String(), Hash: v.Hash.String()})
	}
	changes, err := st.MembershipChanges()
	if err != nil {
		return err
	}
	for _, c := range changes {
		g.MembershipChanges = append(g.MembershipChanges, nodeapi.MembershipChange{
			Height: c.Height, Kind: c.Kind.String(), Summary: ledger.DescribeMembershipChange(c), Approvers: addressStrings(c.Approvers)})
	}
	if g.NextGroupChangeSeq, err = st.NextGroupChangeSeq(); err != nil {
		return err
	}
	return nil
}
