package ledger

import (
	"errors"
	"fmt"
	"slices"

	"github.com/teeup/teeup/release"
)

// govPhase says where a governance transaction is checked: at admission,
// against the head, or at commit, in the block at height.
type govPhase struct {
	commit bool
	// height is the head at admission, the committing block's height at
	// commit.
	height uint64
}

func (ph govPhase) String() string {
	if ph.commit {
		return "commit"
	}
	return "admission"
}

// govGet reads a governance key, seeing this entry's own writes first.
func (a *applier) govGet(key []byte) ([]byte, bool, error) {
	if v, ok := a.govCache[string(key)]; ok {
		return v, true, nil
	}
	return a.s.get(key)
}

// govSet writes a governance key into the batch and the entry's cache.
func (a *applier) govSet(key, v []byte) error {
	if a.govCache == nil {
		a.govCache = make(map[string][]byte)
	}
	a.govCache[string(key)] = v
	if err := a.batch.Set(key, v, nil); err != nil {
		return fmt.Errorf("write %q: %w", key, err)
	}
	return nil
}

// governance returns the governance state as this entry sees it, loading
// it on first use.
func (a *applier) governance() (*govState, error) {
	if a.gov != nil {
		return a.gov, nil
	}
	g, err := readGovState(a.s.db)
	if err != nil {
		return nil, err
	}
	a.gov = g
	return g, nil
}

// saveGovernance writes the (changed) governance state.
func (a *applier) saveGovernance() error {
	return a.govSet(keyGovState, a.gov.encode())
}

// releaseSeq returns the sequence number of a proposed version.
func (a *applier) releaseSeq(version string) (uint64, bool, error) {
	v, ok, err := a.govGet(govVersionKey(version))
	if err != nil || !ok {
		return 0, false, err
	}
	seq, err := decodeU64("release index of "+version, v)
	return seq, err == nil, err
}

// releaseAt returns the release record with sequence number seq.
func (a *applier) releaseAt(seq uint64) (*ReleaseRecord, error) {
	v, ok, err := a.govGet(govReleaseKey(seq))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("corrupt governance: release record %d is missing", seq)
	}
	r, err := decodeReleaseRecord(v)
	if err != nil {
		return nil, fmt.Errorf("corrupt governance: release record %d: %w", seq, err)
	}
	return r, nil
}

// releaseByVersion returns a proposed release and its sequence number.
func (a *applier) releaseByVersion(version string) (*ReleaseRecord, uint64, bool, error) {
	seq, ok, err := a.releaseSeq(version)
	if err != nil || !ok {
		return nil, 0, false, err
	}
	r, err := a.releaseAt(seq)
	if err != nil {
		return nil, 0, false, err
	}
	return r, seq, true, nil
}

// approvedReleases returns the approved releases in approval order.
func (a *applier) approvedReleases() ([]*ReleaseRecord, error) {
	g, err := a.governance()
	if err != nil {
		return nil, err
	}
	out := make([]*ReleaseRecord, 0, g.approved)
	for n := range g.approved {
		v, ok, err := a.govGet(govApprovedKey(n))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("corrupt governance: approved release %d is missing", n)
		}
		seq, err := decodeU64("approved release index", v)
		if err != nil {
			return nil, err
		}
		r, err := a.releaseAt(seq)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// rollbacks returns the rollback records.
func (a *applier) rollbacks() ([]*RollbackRecord, error) {
	g, err := a.governance()
	if err != nil {
		return nil, err
	}
	out := make([]*RollbackRecord, 0, g.rollbacks)
	for n := range g.rollbacks {
		v, ok, err := a.govGet(govRollbackKey(n))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("corrupt governance: rollback record %d is missing", n)
		}
		r, err := decodeRollbackRecord(v)
		if err != nil {
			return nil, fmt.Errorf("corrupt governance: rollback record %d: %w", n, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// approve marks the release with sequence number seq approved at height.
func (a *applier) approve(g *govState, seq uint64, r *ReleaseRecord, height uint64) error {
	r.ApprovedAt = height
	if err := a.govSet(govApprovedKey(g.approved), u64(seq)); err != nil {
		return err
	}
	g.approved++
	a.s.log.Info("release approved", "version", r.Version, "height", height, "approvers", len(r.Approvers))
	return nil
}

// isOperator reports whether addr is a member of the Node Operators Group
// in force.
func (a *applier) isOperator(addr Address) bool {
	ok, err := a.isOperatorNow(addr)
	return err == nil && ok
}

// quorum is the threshold of the Node Operators Group in force.
func (a *applier) quorum() int {
	q, err := a.quorumNow()
	if err != nil {
		return a.s.genesis.NOG.Threshold
	}
	return q
}

// checkGovernance checks a governance transaction at admission; it
// returns a rejection or the zero verdict.
func (a *applier) checkGovernance(t *Tx) (verdict, error) {
	ph := govPhase{height: a.st.head.Height}
	return a.governanceTx(t, ph, false)
}

// governanceAdmitted runs the effects that happen at admission: abort votes.
func (a *applier) governanceAdmitted(t *Tx) error {
	if t.Kind != TxAbortUpgrade && t.Kind != TxUpgradeFailure {
		return nil
	}
	v, err := a.governanceTx(t, govPhase{height: a.st.head.Height}, true)
	if err != nil {
		return err
	}
	if v.failed() {
		// checkGovernance passed on the same state a moment ago.
		return fmt.Errorf("abort vote %s passed admission and then failed: %s", t.ID(), v.reason)
	}
	return nil
}

// commitGovernance executes a governance transaction committed in the
// block at height: it consumes the sender's nonce and, unless the state
// changed since admission in a way that makes it void, takes effect. It
// returns why it had no effect (its status then has CodeNoEffect), or "".
func (a *applier) commitGovernance(height uint64, t *Tx) (string, error) {
	from, err := a.account(t.From)
	if err != nil {
		return "", err
	}
	if from.Nonce+1 != t.Nonce || from.Pending == 0 {
		return "", fmt.Errorf("corrupt ledger: pool tx %s (nonce %d) does not fit account %s %+v", t.ID(), t.Nonce, t.From, *from)
	}
	from.Pending--
	from.Nonce++
	if t.Kind == TxAbortUpgrade || t.Kind == TxUpgradeFailure {
		return "", nil // took effect when admitted
	}
	v, err := a.governanceTx(t, govPhase{commit: true, height: height}, true)
	if err != nil {
		return "", err
	}
	if v.failed() {
		a.s.log.Info("governance tx committed without effect", "tx", t.ID(), "kind", t.Kind, "code", v.code, "reason", v.reason)
		return noEffectPrefix + v.reason, nil
	}
	return "", nil
}

// governanceTx checks a governance transaction in phase ph and, if apply
// is set and it passes, performs its effect.
func (a *applier) governanceTx(t *Tx, ph govPhase, apply bool) (verdict, error) {
	if t.Kind == TxRekeyNode {
		return a.membershipTx(t, ph, apply) // its operator may send it too
	}
	if t.Kind.IsFlagDay() {
		return a.flagDayTx(t, ph, apply) // node keys and member operators send them
	}
	if _, err := a.membership(); err != nil {
		return verdict{}, err
	}
	if !a.isOperator(t.From) {
		return reject(CodeNotMember, "%s is not a member of the node operators group in force", t.From), nil
	}
	if t.Kind.IsMembership() {
		return a.membershipTx(t, ph, apply)
	}
	switch t.Kind {
	case TxProposeRelease:
		sr, err := DecodeReleaseProposal(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.proposeRelease(t, sr, ph, apply)
	case TxApproveRelease:
		p, err := DecodeReleaseApproval(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.approveRelease(t.From, p, ph, apply)
	case TxScheduleUpgrade:
		p, err := DecodeUpgradeSchedule(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.scheduleUpgrade(t.From, p, ph, apply)
	case TxAbortUpgrade:
		p, err := DecodeUpgradeAbort(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.abortUpgrade(t.From, p, ph, apply)
	case TxApproveRollback:
		p, err := DecodeRollbackApproval(t.Payload)
		if err != nil {
			return reject(CodeMalformed, "bad payload: %v", err), nil
		}
		return a.approveRollback(t.From, p, ph, apply)
	default:
		return reject(CodeMalformed, "%s is not a governance kind", t.Kind), nil
	}
}

// checkNewerThanApproved refuses a release that is not newer than every
// approved release, or that would take the ledger schema back.
func (a *applier) checkNewerThanApproved(sr *release.SignedRelease) (verdict, error) {
	approved, err := a.approvedReleases()
	if err != nil {
		return verdict{}, err
	}
	m := &sr.Manifest
	for _, r := range approved {
		c, err := release.CompareVersions(m.Version, r.Version)
		if err != nil {
			return verdict{}, fmt.Errorf("corrupt governance: %w", err)
		}
		if c <= 0 {
			return reject(CodeDowngrade, "downgrade: release %s is not newer than approved release %s", m.Version, r.Version), nil
		}
		if s := r.Release.Manifest.SchemaVersion; m.SchemaVersion != 0 && m.SchemaVersion < s {
			return reject(CodeDowngrade, "schema regression: release %s migrates to schema %d, approved release %s already to %d", m.Version, m.SchemaVersion, r.Version, s), nil
		}
	}
	return verdict{}, nil
}

// verifyReason maps a KMG verification error to a rejection.
func verifyReason(err error) verdict {
	var te *release.ThresholdError
	switch {
	case errors.As(err, &te):
		return reject(CodeBadRelease, "key management group threshold not met: %v", err)
	case errors.Is(err, release.ErrNotMember):
		return reject(CodeBadRelease, "signature outside the key management group: %v", err)
	default:
		return reject(CodeBadRelease, "release does not verify: %v", err)
	}
}

func (a *applier) proposeRelease(t *Tx, sr *release.SignedRelease, ph govPhase, apply bool) (verdict, error) {
	m := &sr.Manifest
	if m.NetworkID != a.s.genesis.ChainID {
		return reject(CodeWrongChain, "wrong network: release %s is for network %q, this chain is %q", m.Version, m.NetworkID, a.s.genesis.ChainID), nil
	}
	if m.SchemaVersion > MaxReleaseSchema {
		return reject(CodeBadRelease, "schema version %d of release %s is above %d", m.SchemaVersion, m.Version, MaxReleaseSchema), nil
	}
	kmg, err := a.kmg()
	if err != nil {
		return verdict{}, err
	}
	if err := sr.Verify(kmg); err != nil {
		return verifyReason(err), nil
	}
	prev, _, ok, err := a.releaseByVersion(m.Version)
	if err != nil {
		return verdict{}, err
	}
	if ok {
		return reject(CodeDuplicate, "duplicate proposal: release %s was proposed at height %d", m.Version, prev.ProposedAt), nil
	}
	if v, err := a.checkNewerThanApproved(sr); err != nil || v.failed() {
		return v, err
	}
	if v, err := a.checkNotDowngrade(m.Version, "release"); err != nil || v.failed() {
		return v, err
	}
	if !apply {
		return verdict{}, nil
	}
	hash, err := ManifestHash(sr)
	if err != nil {
		return verdict{}, err
	}
	g, err := a.governance()
	if err != nil {
		return verdict{}, err
	}
	seq := g.releases
	g.releases++
	r := &ReleaseRecord{
		Version: m.Version, Raw: t.Payload, Release: sr, ManifestHash: hash,
		Proposer: t.From, ProposedAt: ph.height, Approvers: []Address{t.From},
	}
	a.s.log.Info("release proposed", "version", m.Version, "height", ph.height, "proposer", t.From, "node_mrenclave", m.Node.MREnclave)
	if len(r.Approvers) >= a.quorum() {
		if err := a.approve(g, seq, r, ph.height); err != nil {
			return verdict{}, err
		}
	}
	if err := a.govSet(govReleaseKey(seq), encodeReleaseRecord(r)); err != nil {
		return verdict{}, err
	}
	if err := a.govSet(govVersionKey(m.Version), u64(seq)); err != nil {
		return verdict{}, err
	}
	return verdict{}, a.saveGovernance()
}

func (a *applier) approveRelease(member Address, p ReleaseApproval, ph govPhase, apply bool) (verdict, error) {
	r, seq, ok, err := a.releaseByVersion(p.Version)
	if err != nil {
		return verdict{}, err
	}
	if !ok {
		return reject(CodeUnknownRelease, "unknown release %s: it was never proposed", p.Version), nil
	}
	if p.ManifestHash != r.ManifestHash {
		return reject(CodeBadRelease, "manifest hash mismatch: the approval names %s, release %s has %s", p.ManifestHash, p.Version, r.ManifestHash), nil
	}
	if slices.Contains(r.Approvers, member) {
		return reject(CodeDuplicate, "duplicate approval: %s already approved release %s", member, p.Version), nil
	}
	if !r.Approved() {
		if v, err := a.checkNewerThanApproved(r.Release); err != nil || v.failed() {
			return v, err
		}
	}
	if !apply {
		return verdict{}, nil
	}
	g, err := a.governance()
	if err != nil {
		return verdict{}, err
	}
	r.Approvers = append(r.Approvers, member)
	a.s.log.Info("release approval", "version", r.Version, "height", ph.height, "member", member, "approvals", len(r.Approvers), "quorum", a.quorum())
	if !r.Approved() && len(r.Approvers) >= a.quorum() {
		if err := a.approve(g, seq, r, ph.height); err != nil {
			return verdict{}, err
		}
	}
	if err := a.govSet(govReleaseKey(seq), encodeReleaseRecord(r)); err != nil {
		return verdict{}, err
	}
	return verdict{}, a.saveGovernance()
}

func (a *applier) scheduleUpgrade(member Address, p UpgradeSchedule, ph govPhase, apply bool) (verdict, error) {
	r, _, ok, err := a.releaseByVersion(p.Version)
	if err != nil {
		return verdict{}, err
	}
	if !ok {
		return reject(CodeUnknownRelease, "unknown release %s: it was never proposed", p.Version), nil
	}
	if !r.Approved() {
		return reject(CodeNotApproved, "release %s is not approved (%d of %d approvals)", p.Version, len(r.Approvers), a.quorum()), nil
	}
	if v, err := a.checkNotDowngrade(p.Version, "schedule of release"); err != nil || v.failed() {
		return v, err
	}
	if ph.commit {
		if p.ActivationHeight <= ph.height+MinActivationLead {
			return reject(CodeTooSoon, "activation height %d is too soon: block %d needs it above %d", p.ActivationHeight, ph.height, ph.height+MinActivationLead), nil
		}
	} else if p.ActivationHeight < ph.height+MinScheduleLead {
		return reject(CodeTooSoon, "activation height %d is too soon: the head is %d, it must be at least %d", p.ActivationHeight, ph.height, ph.height+MinScheduleLead), nil
	}
	g, err := a.governance()
	if err != nil {
		return verdict{}, err
	}
	if s := g.schedule; s != nil {
		switch {
		case s.Version == p.Version && s.ActivationHeight == p.ActivationHeight:
			return reject(CodeDuplicate, "release %s is already scheduled at height %d", s.Version, s.ActivationHeight), nil
		case !s.Reached(ph.height):
			return reject(CodeConflict, "another upgrade is scheduled: release %s at height %d; abort it first", s.Version, s.ActivationHeight), nil
		case s.Version == p.Version:
			return reject(CodeConflict, "release %s is already in force since height %d", s.Version, s.ActivationHeight), nil
		}
	}
	approved, err := a.approvedReleases()
	if err != nil {
		return verdict{}, err
	}
	if newest := approved[len(approved)-1]; newest.Version != p.Version {
		rbs, err := a.rollbacks()
		if err != nil {
			return verdict{}, err
		}
		if !slices.ContainsFunc(rbs, func(rb *RollbackRecord) bool { return rb.To == p.Version }) {
			return reject(CodeDowngrade, "downgrade: release %s is older than approved release %s, and no rollback to it is approved", p.Version, newest.Version), nil
		}
	}
	if slices.Contains(g.scheduleVotes, ScheduleVote{Member: member, Version: p.Version, ActivationHeight: p.ActivationHeight}) {
		return reject(CodeDuplicate, "duplicate vote: %s already voted to schedule release %s at height %d", member, p.Version, p.ActivationHeight), nil
	}
	if !apply {
		return verdict{}, nil
	}
	g.scheduleVotes = slices.DeleteFunc(g.scheduleVotes, func(v ScheduleVote) bool { return v.Member == member })
	g.scheduleVotes = append(g.scheduleVotes, ScheduleVote{Member: member, Version: p.Version, ActivationHeight: p.ActivationHeight})
	var voters []Address
	for _, v := range g.scheduleVotes {
		if v.Version == p.Version && v.ActivationHeight == p.ActivationHeight {
			voters = append(voters, v.Member)
		}
	}
	a.s.log.Info("upgrade schedule vote", "version", p.Version, "activation", p.ActivationHeight, "member", member, "votes", len(voters), "quorum", a.quorum())
	if len(voters) >= a.quorum() {
		g.schedule = &Schedule{
			Version: p.Version, NodeMREnclave: r.NodeMREnclave(), ActivationHeight: p.ActivationHeight,
			ScheduledAt: ph.height, Approvers: voters,
		}
		// Votes for other schedules and abort votes against the previous
		// schedule are moot now.
		g.scheduleVotes, g.abortVotes = nil, nil
		a.s.log.Info("upgrade scheduled", "version", p.Version, "activation", p.ActivationHeight, "node_mrenclave", r.NodeMREnclave(), "height", ph.height)
	}
	return verdict{}, a.saveGovernance()
}

func (a *applier) abortUpgrade(member Address, p UpgradeAbort, ph govPhase, apply bool) (verdict, error) {
	g, err := a.governance()
	if err != nil {
		return verdict{}, err
	}
	s := g.schedule
	if s == nil {
		return reject(CodeConflict, "nothing is scheduled: no upgrade to %s to abort", p.Version), nil
	}
	if s.Version != p.Version {
		return reject(CodeConflict, "the scheduled upgrade is to release %s, not %s", s.Version, p.Version), nil
	}
	if slices.ContainsFunc(g.abortVotes, func(v AbortVote) bool { return v.Member == member }) {
		return reject(CodeDuplicate, "duplicate vote: %s already voted to abort the upgrade to %s", member, p.Version), nil
	}
	if !apply {
		return verdict{}, nil
	}
	g.abortVotes = append(g.abortVotes, AbortVote{Member: member, Reason: p.Reason})
	a.s.log.Info("upgrade abort vote", "version", p.Version, "member", member, "votes", len(g.abortVotes), "quorum", a.quorum(), "phase", ph)
	if len(g.abortVotes) >= a.quorum() {
		rec := &AbortRecord{
			Version: s.Version, NodeMREnclave: s.NodeMREnclave, ActivationHeight: s.ActivationHeight,
			ScheduledAt: s.ScheduledAt, Height: ph.height, Reason: g.abortVotes[0].Reason,
		}
		for _, v := range g.abortVotes {
			rec.Approvers = append(rec.Approvers, v.Member)
		}
		if err := a.govSet(govAbortKey(g.aborts), encodeAbortRecord(rec)); err != nil {
			return verdict{}, err
		}
		g.aborts++
		g.schedule, g.abortVotes = nil, nil
		a.s.log.Warn("scheduled upgrade aborted", "version", rec.Version, "activation", rec.ActivationHeight, "height", ph.height, "reason", rec.Reason)
	}
	return verdict{}, a.saveGovernance()
}

func (a *applier) approveRollback(member Address, p RollbackApproval, ph govPhase, apply bool) (verdict, error) {
	for _, v := range []string{p.From, p.To} {
		r, _, ok, err := a.releaseByVersion(v)
		if err != nil {
			return verdict{}, err
		}
		if !ok || !r.Approved() {
			return reject(CodeNotApproved, "release %s is not approved: a rollback is between approved releases", v), nil
		}
	}
	rbs, err := a.rollbacks()
	if err != nil {
		return verdict{}, err
	}
	for _, rb := range rbs {
		if rb.From == p.From && rb.To == p.To {
			return reject(CodeDuplicate, "rollback from %s to %s is already recorded at height %d", p.From, p.To, rb.Height), nil
		}
	}
	g, err := a.governance()
	if err != nil {
		return verdict{}, err
	}
	vote := RollbackVote{Member: member, From: p.From, To: p.To}
	if slices.Contains(g.rollbackVotes, vote) {
		return reject(CodeDuplicate, "duplicate vote: %s already voted for the rollback from %s to %s", member, p.From, p.To), nil
	}
	if !apply {
		return verdict{}, nil
	}
	g.rollbackVotes = slices.DeleteFunc(g.rollbackVotes, func(v RollbackVote) bool { return v.Member == member })
	g.rollbackVotes = append(g.rollbackVotes, vote)
	var voters []Address
	for _, v := range g.rollbackVotes {
		if v.From == p.From && v.To == p.To {
			voters = append(voters, v.Member)
		}
	}
	a.s.log.Info("rollback vote", "from", p.From, "to", p.To, "member", member, "votes", len(voters), "quorum", a.quorum())
	if len(voters) >= a.quorum() {
		rec := &RollbackRecord{From: p.From, To: p.To, Height: ph.height, Approvers: voters}
		if err := a.govSet(govRollbackKey(g.rollbacks), encodeRollbackRecord(rec)); err != nil {
			return verdict{}, err
		}
		g.rollbacks++
		g.rollbackVotes = slices.DeleteFunc(g.rollbackVotes, func(v RollbackVote) bool { return v.From == p.From && v.To == p.To })
		a.s.log.Warn("rollback approved", "from", p.From, "to", p.To, "height", ph.height)
	}
	return verdict{}, a.saveGovernance()
}

// upgradeHaltReason returns why a block at height may not be applied on
// this node: the schedule in force activates before it and this node's
// MRENCLAVE is not the scheduled one. A store opened without a
// measurement counts as another MRENCLAVE.
func (a *applier) upgradeHaltReason(height uint64) (string, error) {
	g, err := a.governance()
	if err != nil {
		return "", err
	}
	return upgradeHaltReason(g.schedule, a.s.self, height), nil
}
