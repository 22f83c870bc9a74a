package node

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/internal/httplimit"
	"github.com/teeup/teeup/internal/unixsock"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
)

const maxRequestBody = 64 << 10

// clientHTTPLimits maps the configured client limits onto httplimit's,
// refusals answered as API errors.
func clientHTTPLimits(c Config) httplimit.Config {
	l := c.ClientLimits.HTTPLimits(maxRequestBody)
	l.Reject = func(w http.ResponseWriter, _ *http.Request, status int, reason httplimit.Reason, msg string) {
		code := nodeapi.CodeRateLimited
		if reason == httplimit.ReasonTooLarge {
			code = nodeapi.CodeTooLarge
		}
		writeErr(w, status, code, msg, "")
	}
	return l
}

// clientServer returns the client API's server and wraps ln in its
// connection limits and attested TLS.
func (n *Node) clientServer(ln net.Listener) (*http.Server, net.Listener, error) {
	lim, err := httplimit.New(clientHTTPLimits(n.cfg))
	if err != nil {
		return nil, nil, fmt.Errorf("client API: %w", err)
	}
	srv := lim.Server(n.clientMux())
	srv.ErrorLog = slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)
	return srv, tls.NewListener(lim.Listener(ln), attest.ServerConfig(n.creds, nil)), nil
}

// startAdmin starts the admin API on its unix socket (and, with
// admin_listen, over TCP for remote operators: startRemoteAdmin), at first
// with only the status and stop endpoints (the node is starting, perhaps
// waiting for the ledger key); startServers installs the whole API.
func (n *Node) startAdmin() (func(), error) {
	early := n.earlyAdminMux()
	n.admin.Store(&early)
	ln, err := unixsock.Listen(n.cfg.AdminSocket)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	srv := &http.Server{
		Handler: remoteadmin.CheckNodeID(n.cfg.NodeID,
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*n.admin.Load()).ServeHTTP(w, r) })),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin API stopped", "err", err)
		}
	}()
	stopRemote, err := n.startRemoteAdmin()
	if err != nil {
		shutdown(srv)
		return nil, err
	}
	return func() { stopRemote(); shutdown(srv) }, nil
}

// earlyAdminMux serves status and stop while the node is not running.
func (n *Node) earlyAdminMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+nodeapi.PathStatus, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, n.Status()) })
	mux.HandleFunc("POST "+nodeapi.PathStop, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{})
		go n.requestStop()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusServiceUnavailable, nodeapi.CodeUnavailable, "the node is not running yet: "+n.Phase(), "")
	})
	return mux
}

// startServers starts the client API (attested TLS), the whole admin API,
// the handover endpoint and, if configured, metrics. It returns the
// functions that stop them.
func (n *Node) startServers(ctx context.Context) ([]func(), error) {
	var stops []func()
	fail := func(err error) ([]func(), error) {
		for _, stop := range stops {
			stop()
		}
		return nil, err
	}
	stopServer := func(s *http.Server) func() { return func() { shutdown(s) } }

	clientLn, err := net.Listen("tcp", n.cfg.ClientListen)
	if err != nil {
		return fail(fmt.Errorf("client API: listen %s: %w", n.cfg.ClientListen, err))
	}
	client, clientTLS, err := n.clientServer(clientLn)
	if err != nil {
		clientLn.Close()
		return fail(err)
	}
	go func() {
		if err := client.Serve(clientTLS); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("client API stopped", "err", err)
		}
	}()
	stops = append(stops, stopServer(client))

	full := n.adminMux()
	n.admin.Store(&full)
	stops = append(stops, func() {
		early := n.earlyAdminMux()
		n.admin.Store(&early)
	})

	hl, err := n.startHandoverServer(ctx)
	if err != nil {
		return fail(err)
	}
	stops = append(stops, func() { hl.Close() })

	if n.cfg.MetricsListen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(n.metricsCollector())
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ln, err := net.Listen("tcp", n.cfg.MetricsListen)
		if err != nil {
			return fail(fmt.Errorf("metrics: listen %s: %w", n.cfg.MetricsListen, err))
		}
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = ms.Serve(ln) }()
		stops = append(stops, stopServer(ms))
	}
	return stops, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg, txID string) {
	writeJSON(w, status, nodeapi.Error{Code: code, Message: msg, TxID: txID})
}

// decodeBody decodes a JSON request body of at most maxRequestBody bytes
// into v. On failure it answers the request itself (413 for a body over
// the bound, 400 otherwise) and returns false.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeErr(w, http.StatusRequestEntityTooLarge, nodeapi.CodeTooLarge, httplimit.TooLargeMessage(tooLarge.Limit), "")
		return false
	}
	writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "request body: "+err.Error(), "")
	return false
}

// clientMux serves the client API. While ingress is closed, payments and
// queries are refused with "closed for upgrade"; block reads stay open for
// distribution and monitoring.
func (n *Node) clientMux() http.Handler {
	mux := http.NewServeMux()
	gate := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ref := clientGate(n.ingress.isOpen(), n.ingress.reason, n.sync.current); ref != nil {
				ref.write(w)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST "+nodeapi.PathTx, gate(func(w http.ResponseWriter, r *http.Request) { n.handleSubmit(w, r) }))
	mux.HandleFunc("GET "+nodeapi.PathTx+"/{id}", gate(n.handleTxStatus))
	mux.HandleFunc("GET "+nodeapi.PathAccounts+"/{addr}", gate(n.handleAccount))
	mux.HandleFunc("GET "+nodeapi.PathBlocks+"/{height}", n.handleBlock)
	mux.HandleFunc("GET "+nodeapi.PathHead, n.handleHead)
	n.registerGovernanceHandlers(mux)                           // governance is public: the agent and clients read approved releases even while ingress is closed
	mux.HandleFunc("GET "+nodeapi.PathFlagDay, n.handleFlagDay) // so are readiness records: agents of hosts that missed the flag day ask peers
	return mux
}

// ingressRefusal is the client API's answer to a request it does not
// serve.
type ingressRefusal struct {
	status     int
	code       string // nodeapi.Code*
	message    string
	retryAfter string // seconds
}

func (r *ingressRefusal) write(w http.ResponseWriter) {
	w.Header().Set("Retry-After", r.retryAfter)
	writeErr(w, r.status, r.code, r.message, "")
}

// clientGate decides whether the client API serves a payment or query: not
// while ingress is closed (closedReason says why), and not while the node
// is not current (sync is its view, read only when ingress is open): a
// node that is behind or diverged would serve stale or wrong state, so
// the client is sent to another node. nil means serve.
func clientGate(open bool, closedReason func() string, sync func() syncView) *ingressRefusal {
	if !open {
		msg := "closed for upgrade: this network is not accepting client requests right now; retry later"
		if reason := closedReason(); reason != "" {
			msg += " (" + reason + ")"
		}
		return &ingressRefusal{http.StatusServiceUnavailable, nodeapi.CodeClosedForUpgrade, msg, "5"}
	}
	if v := sync(); !v.serving() {
		code := nodeapi.CodeCatchingUp
		if v.State == nodeapi.SyncDiverged {
			code = nodeapi.CodeDiverged
		}
		return &ingressRefusal{http.StatusServiceUnavailable, code, v.Reason, "2"}
	}
	return nil
}

// adminMux serves the admin API on the unix socket.
func (n *Node) adminMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+nodeapi.PathStatus, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, n.Status()) })
	mux.HandleFunc("POST "+nodeapi.PathIngress, n.handleIngress)
	mux.HandleFunc("POST "+nodeapi.PathHalt, n.handleHalt)
	mux.HandleFunc("POST "+nodeapi.PathStop, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{})
		go n.requestStop()
	})
	mux.HandleFunc("POST "+nodeapi.PathAdminTx, n.handleSubmit)
	mux.HandleFunc("POST "+nodeapi.PathCheckpoint, n.handleCheckpoint)
	mux.HandleFunc("POST "+nodeapi.PathAttestPeers, n.handleAttestPeers)
	mux.HandleFunc("POST "+nodeapi.PathLeadership, n.handleLeadership)
	mux.HandleFunc("GET "+nodeapi.PathTx+"/{id}", n.handleTxStatus)
	mux.HandleFunc("GET "+nodeapi.PathAccounts+"/{addr}", n.handleAccount)
	mux.HandleFunc("GET "+nodeapi.PathBlocks+"/{height}", n.handleBlock)
	mux.HandleFunc("GET "+nodeapi.PathHead, n.handleHead)
	n.registerGovernanceHandlers(mux)
	n.registerFlagDayHandlers(mux)
	return mux
}

func (n *Node) handleSubmit(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.SubmitRequest
	if !decodeBody(w, r, &req) {
		return
	}
	raw, err := hex.DecodeString(req.Tx)
	if err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "tx: not hex: "+err.Error(), "")
		return
	}
	tx, err := ledger.DecodeTx(raw)
	if err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "malformed transaction: "+err.Error(), "")
		return
	}
	rec, err := n.Submit(r.Context(), tx)
	if err != nil {
		var rej *rejection
		switch {
		case errors.As(err, &rej):
			writeJSON(w, http.StatusUnprocessableEntity, nodeapi.Error{Code: nodeapi.CodeRejected, Message: "rejected: " + rej.reason, TxID: tx.ID().String(), TxCode: string(rej.code)})
		case errors.Is(err, ErrPoolFull):
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusServiceUnavailable, nodeapi.CodePoolFull, err.Error(), tx.ID().String())
		case errors.Is(err, ErrAccountBusy):
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusTooManyRequests, nodeapi.CodeTooManyPending, err.Error(), tx.ID().String())
		case errors.Is(err, context.DeadlineExceeded):
			writeErr(w, http.StatusGatewayTimeout, nodeapi.CodeTimeout, "not committed in time; query the transaction status before resubmitting", tx.ID().String())
		default:
			writeErr(w, http.StatusServiceUnavailable, nodeapi.CodeUnavailable, err.Error(), tx.ID().String())
		}
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// rejection is a deterministic refusal of a transaction, with the
// ledger's code.
type rejection struct {
	code   ledger.Code
	reason string
}

func (r *rejection) Error() string { return "rejected: " + r.reason }

// Submit submits tx and waits until it is committed in a block or
// rejected. A payment is admitted before consensus by the leader's mempool
// (submitPayment) and travels only inside its block; any other transaction
// (governance, membership, readiness, abort and failure votes) is its own
// raft entry, admitted by every node when it applies, then committed by a
// block. A lost proposal (leader change) is re-proposed: the ledger
// recognises the same transaction, so it is never applied twice.
func (n *Node) Submit(ctx context.Context, tx *ledger.Tx) (*nodeapi.Receipt, error) {
	if tx.ChainID != n.genesis.ChainID {
		return nil, &rejection{ledger.CodeWrongChain, fmt.Sprintf("wrong chain id %q, this is %q", tx.ChainID, n.genesis.ChainID)}
	}
	if tx.Kind == ledger.TxPayment {
		p, err := n.precheckPayment(tx)
		if err != nil {
			return nil, err
		}
		return n.submitPayment(ctx, tx, p, nil)
	}
	if err := tx.VerifySignature(); err != nil {
		return nil, &rejection{ledger.CodeBadSignature, err.Error()}
	}
	id := tx.ID()
	if st, ok, err := n.store.TxStatus(id); err == nil && ok && st.State == ledger.StateCommitted {
		return committedReceipt(id, st), nil
	}
	k := n.keys.Load()
	data, err := ledger.SealEntry(k.LedgerKey, n.genesis.ChainID, &ledger.Command{Kind: ledger.CmdSubmitTx, Tx: tx})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n.cfg.SubmitTimeout))
	defer cancel()
	ch := n.waiters.add(id)
	defer n.waiters.remove(id, ch)
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case o := <-ch:
			if !o.committed {
				return nil, &rejection{o.code, o.reason}
			}
			st, ok, err := n.store.TxStatus(id)
			if err != nil || !ok || st.State != ledger.StateCommitted {
				// The block committed it; its status (with the code)
				// is written in the same batch, so this is corruption
				// or a read failure: report the commit without a code.
				n.log.Warn("committed transaction without a readable status", "tx", id.String(), "err", err)
				st = ledger.TxStatus{State: ledger.StateCommitted, Height: o.height}
			}
			return committedReceipt(id, st), nil
		case <-retry.C:
			if st, ok, err := n.store.TxStatus(id); err == nil && ok {
				switch st.State {
				case ledger.StateCommitted:
					return committedReceipt(id, st), nil
				case ledger.StatePending:
					retry.Reset(time.Second)
					continue // admitted; its block will wake us
				}
			}
			if n.raft.Leader() != 0 {
				pctx, pcancel := context.WithTimeout(ctx, time.Second)
				if err := n.raft.Propose(pctx, data); err != nil {
					n.log.Debug("propose transaction", "tx", id.String(), "err", err)
				}
				pcancel()
			}
			retry.Reset(3 * time.Second)
		}
	}
}

// committedReceipt is the receipt of a committed transaction with its
// status's code (ok, or no_effect for a governance transaction that had
// none).
func committedReceipt(id ledger.Hash, st ledger.TxStatus) *nodeapi.Receipt {
	return &nodeapi.Receipt{TxID: id.String(), Status: ledger.StateCommitted, Height: st.Height, Code: string(st.Code)}
}

func (n *Node) handleTxStatus(w http.ResponseWriter, r *http.Request) {
	id, err := ledger.ParseHash(r.PathValue("id"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "transaction id: "+err.Error(), "")
		return
	}
	st, ok, err := n.store.TxStatus(id)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), id.String())
		return
	}
	if !ok {
		// Not on chain: a payment rejected at admission, or waiting in
		// the leader's mempool, that this node remembers (in memory).
		st, ok = n.recent.get(id)
		if !ok && n.mempoolHas(id) {
			st, ok = ledger.TxStatus{State: ledger.StatePending, Code: ledger.CodeOK}, true
		}
	}
	if !ok {
		writeErr(w, http.StatusNotFound, nodeapi.CodeNotFound, "unknown transaction "+id.String(), id.String())
		return
	}
	writeJSON(w, http.StatusOK, nodeapi.TxStatus{TxID: id.String(), Status: st.State, Height: st.Height, Code: string(st.Code), Reason: st.Reason})
}

func (n *Node) handleAccount(w http.ResponseWriter, r *http.Request) {
	addr, err := ledger.ParseAddress(r.PathValue("addr"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "address: "+err.Error(), "")
		return
	}
	a, last, err := n.account(addr)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, nodeapi.Account{Address: addr.String(), Balance: a.Balance, Nonce: last})
}

func (n *Node) handleHead(w http.ResponseWriter, r *http.Request) {
	h, hash := n.store.Head()
	writeJSON(w, http.StatusOK, nodeapi.Head{Height: h, Hash: hash.String()})
}

func (n *Node) handleBlock(w http.ResponseWriter, r *http.Request) {
	h, err := strconv.ParseUint(r.PathValue("height"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "height: "+err.Error(), "")
		return
	}
	b, err := n.store.Block(h)
	if errors.Is(err, ledger.ErrNotFound) {
		writeErr(w, http.StatusNotFound, nodeapi.CodeNotFound, fmt.Sprintf("no block at height %d", h), "")
		return
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, nodeapi.Block{
		Height: b.Header.Height, Hash: b.Hash().String(), PrevHash: b.Header.PrevHash.String(),
		Time: time.Unix(0, b.Header.Time).UTC(), TxCount: b.Header.TxCount, Proposer: b.Header.Proposer,
		Raw: hex.EncodeToString(b.Encode()),
	})
}

func (n *Node) handleIngress(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.IngressRequest
	if !decodeBody(w, r, &req) {
		return
	}
	reason := strings.TrimSpace(req.Reason)
	if err := n.ingress.set(req.Open, reason); err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, err.Error(), "")
		return
	}
	n.log.Info("client ingress changed", "open", req.Open, "reason", reason)
	writeJSON(w, http.StatusOK, n.Status())
}

// handleHalt proposes a network-wide halt height and waits until it is
// committed: from then on no node commits a block past it.
func (n *Node) handleHalt(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.HaltRequest
	if !decodeBody(w, r, &req) {
		return
	}
	head, _ := n.store.Head()
	if req.Height != 0 && req.Height < head {
		writeErr(w, http.StatusConflict, nodeapi.CodeBadRequest, fmt.Sprintf("halt height %d is below the current height %d", req.Height, head), "")
		return
	}
	if err := n.proposeAndWait(r.Context(), &ledger.Command{Kind: ledger.CmdHalt, HaltHeight: req.Height}, func() bool { return n.store.HaltHeight() == req.Height }); err != nil {
		writeErr(w, http.StatusServiceUnavailable, nodeapi.CodeUnavailable, "halt: "+err.Error(), "")
		return
	}
	n.log.Info("halt height committed", "height", req.Height)
	writeJSON(w, http.StatusOK, n.Status())
}

// proposeAndWait proposes cmd (re-proposing while it has not taken effect)
// until done holds or 20 seconds pass.
func (n *Node) proposeAndWait(ctx context.Context, cmd *ledger.Command, done func() bool) error {
	k := n.keys.Load()
	data, err := ledger.SealEntry(k.LedgerKey, n.genesis.ChainID, cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for !done() {
		if n.raft.Leader() != 0 {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			_ = n.raft.Propose(pctx, data)
			pcancel()
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		_ = n.waitUntil(wctx, done)
		wcancel()
		if ctx.Err() != nil {
			return fmt.Errorf("not committed in time (is a quorum of nodes up?): %w", ctx.Err())
		}
	}
	return nil
}

// Status reports the node's state for operators. Before the node runs it
// reports only its identity and what it is doing (Phase).
func (n *Node) Status() nodeapi.Status {
	st := nodeapi.Status{
		NodeID: n.cfg.NodeID, Version: buildinfo.Version, Phase: n.Phase(),
		MREnclave: n.identity.UniqueID, MRSigner: n.identity.SignerID, SVN: n.identity.SecurityVersion,
		Debug: n.identity.Debug, ClientAddr: n.cfg.ClientListen, PeerAddr: n.cfg.PeerListen,
		StartedAt: n.startedAt,
	}
	if n.genesis != nil {
		st.ChainID = n.genesis.ChainID
	}
	if n.platform != nil {
		st.Simulated = n.platform.Simulated
	}
	if k := n.keys.Load(); k != nil {
		st.NodeKey = ledger.Address(k.NodeKey.Public().(ed25519.PublicKey)).String()
	}
	store, r := n.storeRef.Load(), n.raftRef.Load()
	if store == nil || r == nil || n.Phase() != phaseRunning {
		st.Ingress = n.ingress.state()
		st.Sync = nodeapi.Sync{State: nodeapi.SyncCatchingUp, CatchingUp: true, Reason: "the node is not running yet: " + n.Phase()}
		return st
	}
	h, hash := store.Head()
	st.Height, st.HeadHash, st.Pending = h, hash.String(), store.PoolSize()+n.mempoolSize()
	st.Ingress, st.HaltHeight = n.ingress.state(), store.HaltHeight()
	st.Leader, st.Term, st.AppliedIndex, st.SchemaVersion = r.Leader(), r.Term(), store.AppliedIndex(), store.Schema()
	st.Halted = n.haltedAt(h)
	for _, p := range n.tr.Peers() {
		st.Peers = append(st.Peers, nodeapi.Peer{ID: p.ID, Addr: p.Addr, Connected: p.Live(5 * time.Second),
			MREnclave: p.Identity.UniqueID, LastSeen: p.LastSeen, LastError: p.LastError, Height: p.Status.Height})
	}
	st.Upgrade = n.upgradeState()
	st.Sync = n.sync.current().Sync
	return st
}

func (n *Node) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.CheckpointRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !filepath.IsAbs(req.Dir) {
		writeErr(w, http.StatusBadRequest, nodeapi.CodeBadRequest, "checkpoint dir must be an absolute path", "")
		return
	}
	if err := n.store.Checkpoint(req.Dir); err != nil {
		writeErr(w, http.StatusInternalServerError, nodeapi.CodeInternal, "checkpoint: "+err.Error(), "")
		return
	}
	h, hash := n.store.Head()
	n.log.Info("ledger checkpoint written", "dir", req.Dir, "height", h, "head", hash.String())
	writeJSON(w, http.StatusOK, struct{}{})
}

// handleLeadership hands leadership away (maintenance of the leader's
// host, or tests).
func (n *Node) handleLeadership(w http.ResponseWriter, r *http.Request) {
	var req nodeapi.LeadershipRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if !n.raft.IsLeader() {
		writeErr(w, http.StatusConflict, nodeapi.CodeNotLeader, fmt.Sprintf("node %d does not lead (the leader is %d)", n.cfg.NodeID, n.raft.Leader()), "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	to := req.To
	if to == 0 {
		var err error
		if to, err = n.raft.TransferLeadership(ctx, "requested by an operator"); err != nil {
			writeErr(w, http.StatusConflict, nodeapi.CodeUnavailable, err.Error(), "")
			return
		}
	} else {
		n.raft.TransferLeadershipTo(ctx, to, "requested by an operator")
	}
	if err := n.waitUntil(ctx, func() bool { return n.raft.Leader() == to }); err != nil {
		writeErr(w, http.StatusGatewayTimeout, nodeapi.CodeTimeout, fmt.Sprintf("node %d did not take over leadership in time (leader: %d)", to, n.raft.Leader()), "")
		return
	}
	writeJSON(w, http.StatusOK, nodeapi.LeadershipResponse{To: to})
}

// handleAttestPeers attests every peer afresh over mutual attested TLS.
func (n *Node) handleAttestPeers(w http.ResponseWriter, r *http.Request) {
	var out []nodeapi.PeerAttestation
	for _, gn := range n.genesis.Nodes {
		if gn.ID == n.cfg.NodeID {
			continue
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		id, err := n.tr.Probe(ctx, gn.ID)
		cancel()
		pa := nodeapi.PeerAttestation{From: n.cfg.NodeID, To: gn.ID, OK: err == nil, MREnclave: id.UniqueID}
		if err != nil {
			pa.Error = err.Error()
		}
		out = append(out, pa)
	}
	writeJSON(w, http.StatusOK, out)
}
