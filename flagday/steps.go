package flagday

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/snapshot"
)

// preflight checks the release and the network before anything changes
// (CheckPreflight: the release is approved on chain, is not a downgrade
// from the release the chain runs (ErrDowngrade), differs in node
// MRENCLAVE from the running one, every node is healthy on one version,
// every agent is coordinated and holds no unfinished upgrade), then has
// every agent stage and verify the release, pushing it to one that lags.
func (c *Coordinator) preflight(ctx context.Context) (string, error) {
	rec := c.j.get()
	g, checks := readPreflight(ctx, c.opt.Topology, c.admins, c.agents)
	rep := CheckPreflight(PreflightInput{Version: rec.Version, Want: agentapi.FlagDayCoordinated, Governance: g, Hosts: checks})
	if err := rep.Err(); err != nil {
		return "", err
	}
	sr, _, err := releaseOf(g, rec.Version)
	if err != nil {
		return "", err
	}
	// Every agent stages it (they follow the chain); push it if one lags.
	raw, err := sr.Marshal()
	if err != nil {
		return "", err
	}
	for _, h := range c.opt.Topology.Hosts {
		inst, err := c.agents[h.ID].Stage(ctx, raw)
		if err != nil {
			return "", fmt.Errorf("host %d cannot stage %s: %w", h.ID, rec.Version, err)
		}
		if inst.NodeMREnclave != rep.To {
			return "", fmt.Errorf("host %d staged MRENCLAVE %s, the release says %s", h.ID, inst.NodeMREnclave.Short(), rep.To.Short())
		}
	}
	_ = c.j.update(func(r *Record) { r.FromMREnclave, r.ToMREnclave, r.FromVersion = rep.From, rep.To, rep.FromVersion })
	return fmt.Sprintf("release %s approved (node MRENCLAVE %s -> %s); %d nodes healthy on %s; staged and verified on every host",
		rec.Version, rep.From.Short(), rep.To.Short(), len(checks), rep.FromVersion), nil
}

// ErrDowngrade is wrapped by the preflight's error (and named by a plan)
// when the flag day's release is not newer than the release the chain
// runs and no approved rollback allows it: the chain refuses to schedule
// it (ledger code downgrade) and agents refuse to hand keys to it.
var ErrDowngrade = release.ErrDowngrade

// checkNotDowngrade refuses a flag day to version unless it is newer than
// the chain's running release, or an approved rollback record allows
// exactly it (the ledger's rule for schedules).
func checkNotDowngrade(g *nodeapi.Governance, version string) error {
	cur := g.RunningRelease
	if cur == "" {
		return nil // the genesis names no release and no upgrade took effect yet
	}
	c, err := release.CompareVersions(version, cur)
	if err != nil {
		return fmt.Errorf("compare release %s with the running release %s: %w", version, cur, err)
	}
	if c > 0 {
		return nil
	}
	for _, rb := range g.Rollbacks {
		if rb.To == version {
			return nil
		}
	}
	rel := "older than"
	if c == 0 {
		rel = "the same as"
	}
	return fmt.Errorf("%w: release %s is %s the release the network runs (%s): the chain refuses to schedule it and agents refuse to hand keys to it; "+
		"to go back, a Node Operators Group quorum must first approve the rollback: teeup release approve-rollback --from %s --to %s",
		ErrDowngrade, version, rel, cur, cur, version)
}

// schedule votes the upgrade on chain with the coordinator's Node
// Operators Group keys until the schedule is in force, and records H.
func (c *Coordinator) schedule(ctx context.Context) (string, error) {
	rec := c.j.get()
	g, err := c.governance(ctx)
	if err != nil {
		return "", err
	}
	if g.Schedule != nil && g.Schedule.Version == rec.Version {
		_ = c.j.update(func(r *Record) { r.ActivationHeight = g.Schedule.ActivationHeight })
		return fmt.Sprintf("already scheduled at height %d", g.Schedule.ActivationHeight), nil
	}
	if len(c.nogKeys) < g.Quorum {
		return "", fmt.Errorf("scheduling needs %d Node Operators Group votes; the coordinator holds %d keys (the others vote with 'teeup release schedule')", g.Quorum, len(c.nogKeys))
	}
	a, err := c.anyAdmin(ctx)
	if err != nil {
		return "", err
	}
	h := g.Height + c.opt.ActivationIn
	// Reuse a height other members already voted for.
	for _, v := range g.PendingSchedules {
		if v.Version == rec.Version {
			h = v.ActivationHeight
		}
	}
	payload := ledger.EncodeUpgradeSchedule(ledger.UpgradeSchedule{Version: rec.Version, ActivationHeight: h})
	for i := 0; i < g.Quorum; i++ {
		member, err := memberAddress(c.nogKeys[i])
		if err != nil {
			return "", err
		}
		if votedForSchedule(g, member, rec.Version, h) {
			continue // this member's vote is already on chain (an earlier, interrupted run)
		}
		if _, err := c.submitGovernance(ctx, a, c.nogKeys[i], ledger.TxScheduleUpgrade, payload); err != nil {
			// The vote may have lost a race with an identical one, or the
			// schedule may have come into force meanwhile: the chain says.
			if now, gerr := c.governance(ctx); gerr == nil && (votedForSchedule(now, member, rec.Version, h) || (now.Schedule != nil && now.Schedule.Version == rec.Version)) {
				continue
			}
			return "", fmt.Errorf("schedule vote %d: %w", i+1, err)
		}
	}
	err = c.poll(ctx, 200*time.Millisecond, func() (bool, string, error) {
		g, err := c.governance(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		return g.Schedule != nil && g.Schedule.Version == rec.Version, "waiting for the schedule to come into force", nil
	})
	if err != nil {
		return "", err
	}
	g, err = c.governance(ctx)
	if err != nil {
		return "", err
	}
	_ = c.j.update(func(r *Record) { r.ActivationHeight = g.Schedule.ActivationHeight })
	return fmt.Sprintf("upgrade to %s scheduled on chain at height %d by %d votes (head %d)", rec.Version, g.Schedule.ActivationHeight, len(g.Schedule.Approvers), g.Height), nil
}

// memberAddress is the ledger address of a Node Operators Group key.
func memberAddress(key ed25519.PrivateKey) (string, error) {
	a, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// votedForSchedule reports whether member's vote to schedule version at
// height h is pending on chain, or counted in the schedule in force.
func votedForSchedule(g *nodeapi.Governance, member, version string, h uint64) bool {
	for _, v := range g.PendingSchedules {
		if v.Member == member && v.Version == version && v.ActivationHeight == h {
			return true
		}
	}
	if s := g.Schedule; s != nil && s.Version == version && s.ActivationHeight == h {
		return slices.Contains(s.Approvers, member)
	}
	return false
}

// closeIngress verifies (scheduled) or makes (manual) every node refuse
// new client requests, and records when ingress closed.
func (c *Coordinator) closeIngress(ctx context.Context) (string, error) {
	rec := c.j.get()
	if rec.Mode == Manual {
		for _, h := range c.opt.Topology.Hosts {
			if _, err := c.admins[h.ID].SetIngress(ctx, false, "flag day to "+rec.Version); err != nil {
				return "", fmt.Errorf("node %d: close ingress: %w", h.ID, err)
			}
		}
	}
	err := c.poll(ctx, 100*time.Millisecond, func() (bool, string, error) {
		sts, err := c.statuses(ctx)
		c.table.render(sts, nil /* agents act only from upgrade-hosts on */, rec.ActivationHeight)
		if err != nil {
			return false, err.Error(), nil
		}
		var open []string
		for id, st := range sts {
			if st.Ingress != nodeapi.IngressClosed {
				open = append(open, fmt.Sprintf("node %d at height %d", id, st.Height))
			}
		}
		sort.Strings(open)
		if len(open) > 0 {
			return false, "ingress still open on " + strings.Join(open, ", "), nil
		}
		return true, "", nil
	})
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	_ = c.j.update(func(r *Record) {
		if r.IngressClosedAt.IsZero() {
			r.IngressClosedAt = now
		}
	})
	return fmt.Sprintf("client ingress closed on all %d nodes", len(c.opt.Topology.Hosts)), nil
}

// haltAtHeight makes sure no transaction is in flight and every node
// stands at the same height H with the same block hash. In manual mode it
// first sets the network-wide halt height.
func (c *Coordinator) haltAtHeight(ctx context.Context) (string, error) {
	rec := c.j.get()
	if rec.Mode == Manual && rec.ActivationHeight == 0 {
		// Let admitted transactions drain into blocks, then halt one block on.
		if err := c.poll(ctx, 100*time.Millisecond, func() (bool, string, error) {
			sts, err := c.statuses(ctx)
			if err != nil {
				return false, err.Error(), nil
			}
			for id, st := range sts {
				if st.Pending > 0 {
					return false, fmt.Sprintf("node %d has %d transactions in flight", id, st.Pending), nil
				}
			}
			return true, "", nil
		}); err != nil {
			return "", err
		}
		sts, err := c.statuses(ctx)
		if err != nil {
			return "", err
		}
		var max uint64
		for _, st := range sts {
			max = maxU(max, st.Height)
		}
		h := max + 2
		a, err := c.anyAdmin(ctx)
		if err != nil {
			return "", err
		}
		if _, err := a.Halt(ctx, h); err != nil {
			return "", fmt.Errorf("set halt height %d: %w", h, err)
		}
		_ = c.j.update(func(r *Record) { r.ActivationHeight = h })
		rec = c.j.get()
	}
	H := rec.ActivationHeight
	var hash string
	err := c.poll(ctx, 100*time.Millisecond, func() (bool, string, error) {
		sts, err := c.statuses(ctx)
		c.table.render(sts, nil /* agents act only from upgrade-hosts on */, H)
		if err != nil {
			return false, err.Error(), nil
		}
		hashes := map[string][]uint64{}
		for id, st := range sts {
			if st.MREnclave == rec.ToMREnclave {
				return true, "", nil // resumed after this step: hosts already upgraded
			}
			if st.Height != H || !st.Halted {
				return false, fmt.Sprintf("node %d at height %d (halted %t), waiting for %d", id, st.Height, st.Halted, H), nil
			}
			if st.Pending > 0 {
				return false, "", fmt.Errorf("node %d halted at %d with %d transactions still pending: something was in flight", id, H, st.Pending)
			}
			hashes[st.HeadHash] = append(hashes[st.HeadHash], id)
		}
		if len(hashes) != 1 {
			return false, "", fmt.Errorf("nodes disagree on block %d: %v", H, hashes)
		}
		for h := range hashes {
			hash = h
		}
		return true, "", nil
	})
	if err != nil {
		return "", err
	}
	if hash == "" {
		return fmt.Sprintf("hosts already upgraded past height %d", H), nil
	}
	_ = c.j.update(func(r *Record) {
		for _, h := range c.opt.Topology.Hosts {
			hr := r.host(h.ID)
			hr.HeightAtHalt, hr.HashAtHalt, hr.MREnclave = H, hash, r.FromMREnclave
		}
	})
	return fmt.Sprintf("all %d nodes halted at height %d, block hash %s, nothing pending", len(c.opt.Topology.Hosts), H, hash[:16]), nil
}

// upgradeHosts has every host's agent snapshot the ledger and the
// distribution state file and hand the keys over to the new enclave, in
// parallel, and waits for all of them.
func (c *Coordinator) upgradeHosts(ctx context.Context) (string, error) {
	rec := c.j.get()
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := map[uint64]error{}
	results := map[uint64]*agentapi.UpgradeRecord{}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sts, _ := c.statuses(ctx)
				c.table.render(sts, c.agentStatuses(ctx), rec.ActivationHeight)
			}
		}
	}()
	for _, h := range c.opt.Topology.Hosts {
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			r, err := c.upgradeHost(ctx, id, rec.Version)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var ae *agentapi.Error
				if errors.As(err, &ae) && ae.Upgrade != nil {
					results[id] = ae.Upgrade
				}
				errs[id] = err
				return
			}
			results[id] = r
		}(h.ID)
	}
	wg.Wait()
	close(done)
	_ = c.j.update(func(r *Record) {
		for id, u := range results {
			hr := r.host(id)
			hr.Upgrade = u
			if u.Snapshot != "" {
				hr.Snapshot = c.snapshotInfo(id, u.Snapshot)
			}
		}
	})
	if len(errs) > 0 {
		var parts []string
		for id, err := range errs {
			parts = append(parts, fmt.Sprintf("host %d: %v", id, err))
		}
		sort.Strings(parts)
		return "", errors.New(strings.Join(parts, "; "))
	}
	var slowest time.Duration
	for _, u := range results {
		slowest = max(slowest, u.UpdatedAt.Sub(u.StartedAt))
	}
	return fmt.Sprintf("every host snapshotted and handed its keys to %s (slowest host %s)", rec.Version, slowest.Round(time.Millisecond)), nil
}

// upgradeHost asks host id's agent to upgrade to version. An agent that
// cannot be reached (killed, or restarting: restarted, it resumes its
// journalled upgrade) is asked again until ctx ends; the request is
// idempotent. An answer from the agent, success or refusal, is final.
func (c *Coordinator) upgradeHost(ctx context.Context, id uint64, version string) (*agentapi.UpgradeRecord, error) {
	for {
		r, err := c.agents[id].Upgrade(ctx, agentapi.UpgradeRequest{Version: version, NoRollback: true})
		var unreachable *url.Error
		if err == nil || !errors.As(err, &unreachable) || ctx.Err() != nil {
			return r, err
		}
		c.j.event(Event{Step: StepUpgrade, Host: id, Kind: "observe", Detail: fmt.Sprintf("agent unreachable, asking again: %v", err)})
		select {
		case <-ctx.Done():
			return r, err
		case <-time.After(time.Second):
		}
	}
}

// snapshotInfo summarises a host's snapshot from its manifest (the
// snapshot lives in the agent's directory, which holds its socket).
func (c *Coordinator) snapshotInfo(id uint64, name string) *SnapshotInfo {
	for _, h := range c.opt.Topology.Hosts {
		if h.ID != id {
			continue
		}
		if h.AgentSocket == "" {
			// A remote host: its snapshot is on its own machine (the
			// agent's journal names it).
			return &SnapshotInfo{Name: name}
		}
		dir := layout.AgentOfSocket(h.AgentSocket).Snapshot(name)
		m, err := snapshot.Open(dir)
		if err != nil {
			return &SnapshotInfo{Name: name, Dir: dir}
		}
		info := &SnapshotInfo{Name: name, Dir: dir, Files: len(m.Files), Labels: m.Labels}
		for _, f := range m.Files {
			info.Bytes += f.Size
		}
		if raw, err := os.ReadFile(filepath.Join(dir, snapshot.ManifestFile)); err == nil {
			info.Checksum = sha256Hex(raw)
		}
		return info
	}
	return nil
}

// resumeChain (manual mode) clears the halt height on the new network.
func (c *Coordinator) resumeChain(ctx context.Context) (string, error) {
	var last error
	err := c.poll(ctx, 300*time.Millisecond, func() (bool, string, error) {
		a, err := c.anyAdmin(ctx)
		if err != nil {
			last = err
			return false, err.Error(), nil
		}
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = a.Halt(hctx, 0)
		cancel()
		if err != nil {
			last = err
			return false, "clearing the halt height: " + err.Error(), nil
		}
		return true, "", nil
	})
	if err != nil {
		return "", fmt.Errorf("%w (last: %v)", err, last)
	}
	return "halt height cleared on the new network", nil
}

// verifyChain checks that every node runs the new enclave, agrees on
// block H and commits blocks past it.
func (c *Coordinator) verifyChain(ctx context.Context) (string, error) {
	rec := c.j.get()
	H := rec.ActivationHeight
	var hashAtH string
	err := c.poll(ctx, 200*time.Millisecond, func() (bool, string, error) {
		sts, err := c.statuses(ctx)
		c.table.render(sts, c.agentStatuses(ctx), H)
		if err != nil {
			return false, err.Error(), nil
		}
		hashes := map[string]bool{}
		for id, st := range sts {
			if st.MREnclave != rec.ToMREnclave {
				return false, fmt.Sprintf("node %d runs %s", id, st.MREnclave.Short()), nil
			}
			if st.Height <= H {
				return false, fmt.Sprintf("node %d at height %d, waiting for blocks past %d", id, st.Height, H), nil
			}
			b, err := c.admins[id].Block(ctx, H)
			if err != nil {
				return false, err.Error(), nil
			}
			hashes[b.Hash] = true
			hashAtH = b.Hash
		}
		if len(hashes) != 1 {
			return false, "", fmt.Errorf("nodes disagree on block %d after the upgrade", H)
		}
		return true, "", nil
	})
	if err != nil {
		return "", err
	}
	if want := c.j.get().Hosts; len(want) > 0 && want[0].HashAtHalt != "" && want[0].HashAtHalt != hashAtH {
		return "", fmt.Errorf("block %d hash changed across the upgrade: %s before, %s after", H, want[0].HashAtHalt[:16], hashAtH[:16])
	}
	return fmt.Sprintf("every node runs MRENCLAVE %s, agrees on block %d and commits past it", rec.ToMREnclave.Short(), H), nil
}

// verifyAttestation has every node attest every other afresh over mutual
// attested TLS and checks the whole matrix presents the new MRENCLAVE.
func (c *Coordinator) verifyAttestation(ctx context.Context) (string, error) {
	rec := c.j.get()
	matrix, bad, err := c.attestationMatrix(ctx)
	if err != nil {
		return "", err
	}
	_ = c.j.update(func(r *Record) {
		for id, row := range matrix {
			r.host(id).Attestation = row
		}
	})
	c.table.renderMatrix(matrix)
	if len(bad) > 0 {
		return "", fmt.Errorf("attestation failures: %s", strings.Join(bad, "; "))
	}
	n := len(c.opt.Topology.Hosts)
	return fmt.Sprintf("%d of %d ordered node pairs attest each other with MRENCLAVE %s", n*(n-1), n*(n-1), rec.ToMREnclave.Short()), nil
}

func (c *Coordinator) attestationMatrix(ctx context.Context) (map[uint64][]nodeapi.PeerAttestation, []string, error) {
	rec := c.j.get()
	matrix := map[uint64][]nodeapi.PeerAttestation{}
	var bad []string
	for _, h := range c.opt.Topology.Hosts {
		row, err := c.admins[h.ID].AttestPeers(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("node %d: attest peers: %w", h.ID, err)
		}
		matrix[h.ID] = row
		for _, pa := range row {
			switch {
			case !pa.OK:
				bad = append(bad, fmt.Sprintf("%d->%d: %s", pa.From, pa.To, pa.Error))
			case pa.MREnclave != rec.ToMREnclave:
				bad = append(bad, fmt.Sprintf("%d->%d presented %s", pa.From, pa.To, pa.MREnclave.Short()))
			}
		}
	}
	return matrix, bad, nil
}

// testPayments sends a self payment and a cross payment on the operator
// test accounts through the admin path (ingress is still closed) and
// checks every node committed them.
func (c *Coordinator) testPayments(ctx context.Context) (string, error) {
	hosts := c.opt.Topology.Hosts
	self, cross := c.opKeys[0], c.opKeys[1]
	crossAddr, err := ledger.AddressOf(cross.Public().(ed25519.PublicKey))
	if err != nil {
		return "", err
	}
	selfAddr, err := ledger.AddressOf(self.Public().(ed25519.PublicKey))
	if err != nil {
		return "", err
	}
	// Both payments come from the self account: their nonces follow from
	// one read of it. The second goes through another node, which may not
	// have applied the first one's block yet when it is asked.
	acct, err := c.admins[hosts[0].ID].Account(ctx, selfAddr.String())
	if err != nil {
		return "", fmt.Errorf("self payment: %w", err)
	}
	var txs []TestTx
	for i, p := range []struct {
		kind string
		from ed25519.PrivateKey
		to   ledger.Address
	}{{"self", self, selfAddr}, {"cross", self, crossAddr}} {
		h := hosts[i%len(hosts)]
		a := c.admins[h.ID]
		tx := ledger.NewPayment(c.opt.Topology.ChainID, p.from, p.to, 1, acct.Nonce+uint64(i)+1)
		r, err := a.Submit(ctx, tx.Encode())
		if err != nil {
			return "", fmt.Errorf("%s payment through node %d: %w", p.kind, h.ID, err)
		}
		txs = append(txs, TestTx{Kind: p.kind, TxID: r.TxID, Height: r.Height, Node: h.ID})
	}
	// Every node must have committed both.
	for _, t := range txs {
		for _, h := range hosts {
			err := c.poll(ctx, 100*time.Millisecond, func() (bool, string, error) {
				var st nodeapi.TxStatus
				if err := c.admins[h.ID].Get(ctx, nodeapi.PathTx+"/"+t.TxID, &st); err != nil {
					return false, err.Error(), nil
				}
				return st.Status == ledger.StateCommitted && st.Height == t.Height, "node " + fmt.Sprint(h.ID) + " has not committed " + t.TxID[:12], nil
			})
			if err != nil {
				return "", fmt.Errorf("%s payment %s: %w", t.Kind, t.TxID[:12], err)
			}
		}
	}
	_ = c.j.update(func(r *Record) { r.TestTxs = txs })
	return fmt.Sprintf("self payment %s (height %d) and cross payment %s (height %d) committed on every node",
		txs[0].TxID[:12], txs[0].Height, txs[1].TxID[:12], txs[1].Height), nil
}

// reopen opens client ingress on every node.
func (c *Coordinator) reopen(ctx context.Context) (string, error) {
	for _, h := range c.opt.Topology.Hosts {
		if _, err := c.admins[h.ID].SetIngress(ctx, true, ""); err != nil {
			return "", fmt.Errorf("node %d: reopen ingress: %w", h.ID, err)
		}
	}
	now := time.Now().UTC()
	_ = c.j.update(func(r *Record) { r.IngressReopenedAt = now })
	rec := c.j.get()
	return fmt.Sprintf("client ingress reopened on all nodes; downtime %s", rec.Downtime().Round(time.Millisecond)), nil
}

// livePeriod watches the network for the live period: heights must keep
// advancing on every node, hashes agree, attestation stays intact.
func (c *Coordinator) livePeriod(ctx context.Context) (string, error) {
	rec := c.j.get()
	start := time.Now()
	first, err := c.statuses(ctx)
	if err != nil {
		return "", err
	}
	deadline := start.Add(c.opt.LivePeriod)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		sts, err := c.statuses(ctx)
		c.table.render(sts, nil, rec.ActivationHeight)
		if err != nil {
			return "", fmt.Errorf("during the live period: %w", err)
		}
		for id, st := range sts {
			if st.MREnclave != rec.ToMREnclave || st.Ingress != nodeapi.IngressOpen {
				return "", fmt.Errorf("during the live period node %d runs %s with ingress %s", id, st.MREnclave.Short(), st.Ingress)
			}
		}
	}
	last, err := c.statuses(ctx)
	if err != nil {
		return "", err
	}
	var minAdv uint64 = ^uint64(0)
	for id, st := range last {
		adv := st.Height - first[id].Height
		if st.Height <= first[id].Height {
			return "", fmt.Errorf("node %d did not advance during the live period (height %d)", id, st.Height)
		}
		minAdv = min(minAdv, adv)
	}
	// Agreement on a common height.
	var common uint64 = ^uint64(0)
	for _, st := range last {
		common = min(common, st.Height)
	}
	hashes := map[string]bool{}
	for id := range last {
		b, err := c.admins[id].Block(ctx, common)
		if err != nil {
			return "", err
		}
		hashes[b.Hash] = true
	}
	if len(hashes) != 1 {
		return "", fmt.Errorf("after the live period nodes disagree on block %d", common)
	}
	_, bad, err := c.attestationMatrix(ctx)
	if err != nil {
		return "", err
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("attestation broke during the live period: %s", strings.Join(bad, "; "))
	}
	_ = c.j.update(func(r *Record) {
		for id, st := range last {
			hr := r.host(id)
			hr.FinalHeight, hr.FinalMREnclave = st.Height, st.MREnclave
		}
	})
	return fmt.Sprintf("live for %s: every node advanced (at least %d blocks), agrees on block %d, attestation intact", c.opt.LivePeriod, minAdv, common), nil
}

// finalize deletes the old version's keys on every host.
func (c *Coordinator) finalize(ctx context.Context) (string, error) {
	for _, h := range c.opt.Topology.Hosts {
		if _, err := c.agents[h.ID].Finalize(ctx); err != nil {
			return "", fmt.Errorf("host %d: %w", h.ID, err)
		}
	}
	return "old version's sealed keys deleted on every host (no rollback from here)", nil
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// agentStatuses reads every agent's status, tolerating failures.
func (c *Coordinator) agentStatuses(ctx context.Context) map[uint64]*agentapi.Status {
	out := map[uint64]*agentapi.Status{}
	for _, h := range c.opt.Topology.Hosts {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.agents[h.ID].Status(sctx)
		cancel()
		if err == nil {
			out[h.ID] = st
		}
	}
	return out
}
