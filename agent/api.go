package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/remoteadmin"
)

// mux is the agent API on its unix socket: the routes, refusing a request
// addressed to another node's agent.
func (a *Agent) mux() http.Handler { return remoteadmin.CheckNodeID(a.cfg.NodeID, a.routes()) }

// routes are the agent API's endpoints (the unix socket and, with
// admin_listen, the remote listener serve them).
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathStatus, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.status()) })
	mux.HandleFunc("POST "+agentapi.PathStage, a.handleStage)
	mux.HandleFunc("POST "+agentapi.PathUpgrade, a.handleUpgrade)
	mux.HandleFunc("POST "+agentapi.PathRollback, a.handleRollback)
	mux.HandleFunc("POST "+agentapi.PathFinalize, a.handleFinalize)
	mux.HandleFunc("POST "+agentapi.PathDistribution, a.handleDistribution)
	mux.HandleFunc("POST "+agentapi.PathRollout, a.handleRollout)
	mux.HandleFunc("GET "+PathFlagDay, func(w http.ResponseWriter, r *http.Request) { a.flagDay.handle(w, r) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, apiError(err))
}

// apiError is err as the API reports it: its message, the code of its
// sentinel, and what a refused rollback would lose.
func apiError(err error) agentapi.Error {
	e := agentapi.Error{Message: err.Error(), Code: agentapi.CodeOf(err)}
	var le *agentapi.LossError
	if errors.As(err, &le) {
		l := le.Loss
		e.Loss = &l
	}
	return e
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func (a *Agent) status() agentapi.Status {
	j := a.journal.get()
	st := agentapi.Status{
		NodeID: a.cfg.NodeID, Version: buildinfo.Version, MREnclave: a.identity.UniqueID,
		Installed: j.Installed, Staged: a.staged(), FlagDayMode: agentapi.FlagDayCoordinatorFree,
	}
	if a.cfg.FlagDay.Coordinated {
		st.FlagDayMode = agentapi.FlagDayCoordinated
	}
	if j.Upgrade != nil {
		rec := *j.Upgrade
		st.Upgrade = &rec
	}
	st.AgentUpgrade = j.Agent
	if pid, exe, ok := a.host.node.running(); ok {
		st.NodePID, st.NodeBinary = pid, exe
	}
	if r, ok := a.host.node.refusedStart(); ok {
		st.NodeRefused = startRefusal(r, j)
	}
	if a.host.dist != nil {
		if pid, _, ok := a.host.dist.running(); ok {
			st.DistributePID = pid
		}
	}
	return st
}

// startRefusal describes a refused node start for the status.
func startRefusal(r refusal, j Journal) *agentapi.StartRefusal {
	out := &agentapi.StartRefusal{Binary: r.spec.Binary, Error: r.err.Error(), Since: r.since.UTC(), Cause: agentapi.CauseBinaryRejected}
	if errors.Is(r.err, ErrReleaseRejected) {
		out.Cause = agentapi.CauseReleaseRejected
	}
	insts := []Installation{j.Installed}
	if j.Upgrade != nil {
		insts = append(insts, j.Upgrade.From, j.Upgrade.To)
	}
	for _, inst := range insts {
		if inst.NodeBinary == r.spec.Binary {
			out.Version = inst.Version
			break
		}
	}
	return out
}

func (a *Agent) handleStage(w http.ResponseWriter, r *http.Request) {
	var req agentapi.StageRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	inst, err := a.stage(r.Context(), req.Release)
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeJSON(w, http.StatusOK, inst)
}

// handleUpgrade performs a handover upgrade now, on this host only
// (manual mode: 'teeup upgrade local', or one host's part of a manual
// flag day). The release must be staged and approved on chain after the
// running one. On failure before the new node serves, it rolls back.
func (a *Agent) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	var req agentapi.UpgradeRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	rec, err := a.upgradeNow(r.Context(), req.Version, agentapi.ModeManual, 0, !req.NoRollback)
	if err != nil {
		resp := apiError(err)
		if rec != nil {
			resp.Upgrade = rec
		}
		writeJSON(w, http.StatusConflict, resp)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// upgradeNow runs a whole upgrade to a staged version.
func (a *Agent) upgradeNow(ctx context.Context, version string, mode Mode, activation uint64, rollbackOnFailure bool) (*UpgradeRecord, error) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.inflightMu.Lock()
	a.inflight = cancel
	a.inflightMu.Unlock()
	defer func() {
		a.inflightMu.Lock()
		a.inflight = nil
		a.inflightMu.Unlock()
	}()
	j := a.journal.get()
	if up := j.Upgrade; up != nil && up.To.Version == version && (up.Phase == PhaseCompleted || up.Phase == PhaseFinalized) && j.Installed.Version == version {
		return up, nil // already done (by the watcher, or an earlier call)
	}
	if up := j.Upgrade; mode == agentapi.ModeScheduled && up != nil && up.To.Version == version && up.Phase == PhaseRolledBack {
		// The watcher decided to upgrade before taking the lock; a rollback
		// finished meanwhile. After a rollback the coordinator decides what
		// next: do not start the upgrade again.
		return up, nil
	}
	if up := j.Upgrade; up != nil && !up.Terminal() && up.Phase != PhaseCompleted {
		if up.To.Version != version {
			return up, fmt.Errorf("%w (to %s, phase %s)", ErrUpgradeInProgress, up.To.Version, up.Phase)
		}
		// The same upgrade again: resume it (idempotent).
	} else {
		target, err := a.stagedInstallation(version)
		if err != nil {
			return nil, err
		}
		if err := a.checkAllowed(ctx, j.Installed, target); err != nil {
			return nil, err
		}
		if _, err := a.upgrader.Begin(target, mode, activation); err != nil {
			return nil, err
		}
	}
	rec, err := a.upgrader.Resume(ctx)
	if err == nil {
		a.host.stopServing(rec.ID)
		return rec, nil
	}
	if !rollbackOnFailure {
		return rec, err
	}
	rb, rbErr := a.upgrader.Rollback(context.WithoutCancel(ctx), err.Error(), false)
	if rbErr != nil {
		return rb, fmt.Errorf("%v; rollback also failed: %w", err, rbErr)
	}
	return rb, fmt.Errorf("%w (rolled back to %s)", err, rb.From.Version)
}

func (a *Agent) stagedInstallation(version string) (Installation, error) {
	for _, v := range a.staged() {
		if v == version {
			raw, err := os.ReadFile(a.dir.Release(v).Manifest())
			if err != nil {
				return Installation{}, err
			}
			return a.stage(context.Background(), raw)
		}
	}
	return Installation{}, fmt.Errorf("release %s is not staged on this host (stage it first: 'teeup upgrade stage')", version)
}

func (a *Agent) handleRollback(w http.ResponseWriter, r *http.Request) {
	var req agentapi.RollbackRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	// Preempt an upgrade attempt still running (it stops at its next step
	// or wait), then roll back.
	a.inflightMu.Lock()
	if a.inflight != nil {
		a.inflight()
	}
	a.inflightMu.Unlock()
	a.opMu.Lock()
	defer a.opMu.Unlock()
	rec, err := a.upgrader.Rollback(r.Context(), req.Reason, req.Force)
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *Agent) handleFinalize(w http.ResponseWriter, r *http.Request) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	rec, err := a.upgrader.Finalize(r.Context())
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (a *Agent) handleDistribution(w http.ResponseWriter, r *http.Request) {
	var req agentapi.DistributionRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	var err error
	if req.Running {
		err = a.host.StartDistribution(r.Context(), a.journal.get().Installed)
	} else {
		err = a.host.StopDistribution(r.Context())
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, a.status())
}

// handleRollout installs a staged release whose node MRENCLAVE equals the
// installed one: nothing in an enclave changes, so no keys move and no
// flag day is needed. The release must still be approved on chain after
// the running one. The node keeps running; distribution restarts on the
// release's verified binary.
func (a *Agent) handleRollout(w http.ResponseWriter, r *http.Request) {
	var req agentapi.RolloutRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	inst, err := a.rollout(r.Context(), req.Version)
	if err != nil {
		writeErr(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, inst)
}

func (a *Agent) rollout(ctx context.Context, version string) (*Installation, error) {
	a.opMu.Lock()
	defer a.opMu.Unlock()
	j := a.journal.get()
	if j.Installed.Version == version {
		return &j.Installed, nil
	}
	if up := j.Upgrade; up != nil && !up.Terminal() && up.Phase != PhaseCompleted {
		return nil, fmt.Errorf("%w (to %s, phase %s)", ErrUpgradeInProgress, up.To.Version, up.Phase)
	}
	target, err := a.stagedInstallation(version)
	if err != nil {
		return nil, err
	}
	if target.NodeMREnclave != j.Installed.NodeMREnclave {
		return nil, fmt.Errorf("release %s changes the node enclave (%s -> %s): it needs a key handover and a flag day, not a rollout",
			version, j.Installed.NodeMREnclave.Short(), target.NodeMREnclave.Short())
	}
	if err := a.checkAllowed(ctx, j.Installed, target); err != nil {
		return nil, err
	}
	// The node binary is byte-identical (same MRENCLAVE): keep the running
	// process, record the new release.
	target.NodeBinary = j.Installed.NodeBinary
	if err := a.journal.update(func(jj *Journal) error { jj.Installed = target; return nil }); err != nil {
		return nil, err
	}
	if a.host.dist != nil {
		if err := a.host.StartDistribution(ctx, target); err != nil {
			return nil, fmt.Errorf("rollout %s: restart distribution: %w", version, err)
		}
	}
	a.log.Info("non-enclave release rolled out", "version", version, "distribute", target.DistributeBinary)
	return &target, nil
}
