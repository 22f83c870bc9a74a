package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
)

// The flag-day ingress rule: client ingress, closed ahead of a scheduled
// upgrade, reopens by a rule of the chain and not by an operator call.
//
//   - A node of the scheduled release reopens once its chain records the
//     schedule ready (a readiness quorum committed; see ledger.Readiness).
//   - A node of the old release reopens once its chain records the
//     schedule aborted (by failure votes or NOG abort votes); it continues
//     past the activation height then.
//
// Only ingress that the upgrade closed (its reason is the schedule's) is
// reopened: ingress an operator closed for another reason stays closed.

// checkFlagDayIngress runs after applied entries: it reopens ingress by
// the flag-day rule.
func (n *Node) checkFlagDayIngress() {
	if n.ingress.isOpen() {
		return
	}
	reason := n.ingress.reason()
	fd, err := n.flagDayView("", 0)
	if err != nil {
		n.log.Error("read the flag-day state", "err", err)
		return
	}
	if fd.Version == "" || reason != upgradeIngressReason(ledger.Schedule{Version: fd.Version, ActivationHeight: fd.ActivationHeight}) {
		return
	}
	var why string
	switch {
	case fd.ThisNodeRuns && fd.Outcome == nodeapi.FlagDayReady:
		why = fmt.Sprintf("flag day ready on chain at height %d", fd.ReadyAt)
	case !fd.ThisNodeRuns && fd.Outcome == nodeapi.FlagDayAborted:
		why = "flag day aborted on chain: " + fd.AbortReason
	default:
		return
	}
	if err := n.ingress.set(true, ""); err != nil {
		n.log.Error("reopen client ingress after the flag day", "err", err)
		return
	}
	n.log.Info("client ingress reopened by the flag-day rule", "version", fd.Version, "activation_height", fd.ActivationHeight, "why", why)
}

// flagDayView returns the chain's view of the flag day (version, h): with
// an empty version, the schedule in force, else the newest readiness
// state or abort record.
func (n *Node) flagDayView(version string, h uint64) (*nodeapi.FlagDay, error) {
	head, _ := n.store.Head()
	fd := &nodeapi.FlagDay{Outcome: nodeapi.FlagDayNone, Height: head}
	sched, inForce, err := n.store.ActiveSchedule()
	if err != nil {
		return nil, err
	}
	aborts, err := n.store.Aborts()
	if err != nil {
		return nil, err
	}
	if version == "" {
		switch {
		case inForce:
			version, h = sched.Version, sched.ActivationHeight
		default:
			rs, err := n.store.Readinesses()
			if err != nil {
				return nil, err
			}
			if len(rs) > 0 {
				version, h = rs[len(rs)-1].Version, rs[len(rs)-1].ActivationHeight
			}
			if len(aborts) > 0 && aborts[len(aborts)-1].ActivationHeight >= h {
				version, h = aborts[len(aborts)-1].Version, aborts[len(aborts)-1].ActivationHeight
			}
		}
	}
	if version == "" {
		return fd, nil
	}
	fd.Version, fd.ActivationHeight = version, h
	fd.InForce = inForce && sched.Version == version && sched.ActivationHeight == h
	if fd.InForce {
		fd.NodeMREnclave = sched.NodeMREnclave
		fd.Outcome = nodeapi.FlagDayPending
	}
	for _, a := range aborts {
		if a.Version == version && a.ActivationHeight == h {
			fd.NodeMREnclave, fd.Outcome, fd.AbortReason = a.NodeMREnclave, nodeapi.FlagDayAborted, a.Reason
		}
	}
	r, ok, err := n.store.Readiness(version, h)
	if err != nil {
		return nil, err
	}
	if ok {
		fd.NodeMREnclave = r.NodeMREnclave
		fd.Deadline, fd.Members, fd.Quorum = r.Deadline(), r.Members, r.Quorum
		fd.ReadyAt, fd.ExpiredAt, fd.Absent, fd.AbortedAt = r.ReadyAt, r.ExpiredAt, r.Absent, r.AbortedAt
		for _, x := range r.Records {
			rec := nodeapi.ReadinessRecord{Node: x.Member, Signer: x.Signer.String(), Height: x.Height, TxID: x.TxID.String(), MREnclave: x.Measurement}
			for _, p := range x.Peers {
				rec.Peers = append(rec.Peers, nodeapi.PeerResult{Node: p.Node, OK: p.OK})
			}
			for _, id := range x.TestTxs {
				rec.TestTxs = append(rec.TestTxs, id.String())
			}
			fd.Records = append(fd.Records, rec)
		}
		for _, f := range r.Failures {
			fd.Failures = append(fd.Failures, nodeapi.FailureVote{Node: f.Member, Signer: f.Signer.String(), Reason: f.Reason, Height: f.Height, TxID: f.TxID.String()})
		}
		switch {
		case fd.Outcome == nodeapi.FlagDayAborted:
		case r.Ready():
			fd.Outcome = nodeapi.FlagDayReady
		case r.ExpiredAt != 0:
			fd.Outcome = nodeapi.FlagDayExpired
		}
	} else if fd.InForce {
		fd.Deadline = h + ledger.ReadinessDeadline
	}
	fd.ThisNodeRuns = fd.NodeMREnclave == n.identity.UniqueID
	return fd, nil
}

// registerFlagDayHandlers adds the flag-day admin API to a mux.
func (n *Node) registerFlagDayHandlers(mux *http.ServeMux) {
	mux.HandleFunc("GET "+nodeapi.PathFlagDay, n.handleFlagDay)
	mux.HandleFunc("POST "+nodeapi.PathFlagDayReadiness, n.handleReadiness)
	mux.HandleFunc("POST "+nodeapi.PathFlagDayFailure, n.handleFailure)
	mux.HandleFunc("POST "+nodeapi.PathFlagDayTestPayments, n.handleTestPayments)
}

// handleTestPayments sends the operator's self and cross test payments.
func (n *Node) handleTestPayments(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.TestPaymentsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	seed, err := hex.DecodeString(req.TestKeySeed)
	if err != nil || len(seed) != ed25519.SeedSize {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "test_key_seed: 64 hex digits expected", "")
		return
	}
	key := ed25519.NewKeyFromSeed(seed)
	self, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error(), "")
		return
	}
	to := []ledger.Address{self}
	if req.CrossTo != "" {
		cross, err := ledger.ParseAddress(req.CrossTo)
		if err != nil {
			writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "cross_to: "+err.Error(), "")
			return
		}
		to = append(to, cross)
	}
	_, last, err := n.account(self)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	txs := make([]*ledger.Tx, len(to))
	for i, addr := range to {
		txs[i] = ledger.NewPayment(n.genesis.ChainID, key, addr, 1, last+uint64(i)+1)
	}
	// The cross payment follows the self payment as soon as the leader
	// admitted it: both may commit in one block.
	recs, err := n.submitInOrder(r.Context(), txs)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, nodeapi.CodeUnavailable, "test "+err.Error(), "")
		return
	}
	var out nodeapi.TestPaymentsResponse
	for _, rec := range recs {
		out.Receipts = append(out.Receipts, *rec)
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleFlagDay(w http.ResponseWriter, r *http.Request) {
	var h uint64
	version := r.URL.Query().Get("version")
	if version != "" {
		var err error
		if h, err = strconv.ParseUint(r.URL.Query().Get("height"), 10, 64); err != nil {
			writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "height: "+err.Error(), "")
			return
		}
	}
	fd, err := n.flagDayView(version, h)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, fd)
}

// nodeKeyTx signs a governance transaction of kind with this node's
// identity key, at the key's next nonce.
func (n *Node) nodeKeyTx(kind ledger.TxKind, payload []byte) (*ledger.Tx, error) {
	key := n.keys.Load().NodeKey
	addr, err := ledger.AddressOf(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	acct, err := n.store.Account(addr)
	if err != nil {
		return nil, err
	}
	// Not n.account: a governance transaction enters the replicated pool
	// at once, ahead of any payment waiting in a mempool.
	return ledger.NewGovernanceTx(n.genesis.ChainID, kind, payload, acct.Nonce+acct.Pending+1, key)
}

func (n *Node) handleReadiness(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.ReadinessRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p := ledger.ReadinessReport{Member: n.cfg.NodeID, Version: req.Version, ActivationHeight: req.ActivationHeight, Measurement: n.identity.UniqueID}
	for _, pr := range req.Peers {
		p.Peers = append(p.Peers, ledger.PeerResult{Node: pr.Node, OK: pr.OK})
	}
	for _, s := range req.TestTxs {
		id, err := ledger.ParseHash(s)
		if err != nil {
			writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "test tx: "+err.Error(), "")
			return
		}
		p.TestTxs = append(p.TestTxs, id)
	}
	payload := ledger.EncodeReadinessReport(p)
	if _, err := ledger.DecodeReadinessReport(payload); err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error(), "")
		return
	}
	tx, err := n.nodeKeyTx(ledger.TxReadiness, payload)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	n.log.Info("recording flag-day readiness", "version", req.Version, "activation_height", req.ActivationHeight, "tx", tx.ID().String())
	n.writeSubmitResult(w, tx, func(ctx context.Context) (*nodeapi.Receipt, error) { return n.Submit(ctx, tx) })
}

func (n *Node) handleFailure(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.FailureRequest
	if !decodeBody(w, r, &req) {
		return
	}
	payload := ledger.EncodeUpgradeFailure(ledger.UpgradeFailure{Member: n.cfg.NodeID, Version: req.Version, ActivationHeight: req.ActivationHeight, Reason: req.Reason})
	if _, err := ledger.DecodeUpgradeFailure(payload); err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, err.Error(), "")
		return
	}
	tx, err := n.nodeKeyTx(ledger.TxUpgradeFailure, payload)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	n.log.Warn("voting flag-day failure", "version", req.Version, "activation_height", req.ActivationHeight, "reason", req.Reason, "tx", tx.ID().String())
	n.writeSubmitResult(w, tx, func(ctx context.Context) (*nodeapi.Receipt, error) { return n.submitAdmitted(ctx, tx) })
}

// writeSubmitResult answers a request that submitted tx through submit.
func (n *Node) writeSubmitResult(w http.ResponseWriter, tx *ledger.Tx, submit func(context.Context) (*nodeapi.Receipt, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n.cfg.SubmitTimeout))
	defer cancel()
	rec, err := submit(ctx)
	if err != nil {
		var rej *rejection
		switch {
		case errors.As(err, &rej):
			writeJSON(w, http.StatusUnprocessableEntity, nodeapi.Error{Code: nodeapi.CodeRejected, Message: "rejected: " + rej.reason, TxID: tx.ID().String(), TxCode: string(rej.code)})
		case ctx.Err() != nil:
			writeErr(w, http.StatusGatewayTimeout, nodeapi.CodeTimeout, "not admitted in time; query the transaction status before resubmitting", tx.ID().String())
		default:
			writeErr(w, http.StatusServiceUnavailable, nodeapi.CodeUnavailable, err.Error(), tx.ID().String())
		}
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// submitAdmitted proposes tx and waits until it is admitted (pending or
// committed) or rejected: for transactions that take effect when
// admitted.
func (n *Node) submitAdmitted(ctx context.Context, tx *ledger.Tx) (*nodeapi.Receipt, error) {
	id := tx.ID()
	k := n.keys.Load()
	data, err := ledger.SealEntry(k.LedgerKey, n.genesis.ChainID, &ledger.Command{Kind: ledger.CmdSubmitTx, Tx: tx})
	if err != nil {
		return nil, err
	}
	var next time.Time
	for {
		wake := n.applied.wait()
		if st, ok, err := n.store.TxStatus(id); err == nil && ok {
			switch st.State {
			case ledger.StatePending, ledger.StateCommitted:
				return &nodeapi.Receipt{TxID: id.String(), Status: st.State, Height: st.Height, Code: string(st.Code)}, nil
			case ledger.StateRejected:
				return nil, &rejection{st.Code, st.Reason}
			}
		}
		if time.Now().After(next) && n.raft.Leader() != 0 {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			if err := n.raft.Propose(pctx, data); err != nil {
				n.log.Debug("propose transaction", "tx", id.String(), "err", err)
			}
			pcancel()
			next = time.Now().Add(3 * time.Second)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		case <-time.After(500 * time.Millisecond):
		}
	}
}
