package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/teeup/teeup/agent/selfupgrade"
	"github.com/teeup/teeup/handover"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/unixsock"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// The agent's self-upgrade: when the installed release ships another
// agent enclave than the running one, the agent moves to it without
// touching the node. Package selfupgrade decides; selfDriver performs.

// ErrSuccessorRejected means the agent the journal hands the host to
// (its held state sealed to it) does not verify against its signed
// release: the running agent refuses to run in its place.
var ErrSuccessorRejected = errors.New("the new agent binary does not verify against its signed release")

// successorTimeout bounds the new agent's run in handover mode.
const successorTimeout = 2 * time.Minute

// selfDriver performs the self-upgrade's actions for an agent.
type selfDriver struct {
	a *Agent
	// binary is the running executable.
	binary string
	// execImage replaces the process image with binary (the same
	// arguments); it returns only on failure.
	execImage func(binary string) error
	metrics   *metrics
	// retry spaces out attempts after a failed action (an exec that
	// fails, a successor that does not verify), so a persistent failure
	// costs one error per back-off, not one per poll interval.
	retry retryGate
}

// retryGate is an exponential back-off between attempts of an action
// that keeps failing: 500 ms after the first failure, doubling up to
// 30 s, reset by a success.
type retryGate struct {
	failures int
	next     time.Time
}

// ready reports whether an attempt may run at now.
func (g *retryGate) ready(now time.Time) bool { return !now.Before(g.next) }

// failed records a failed attempt at now and returns the wait before the
// next one.
func (g *retryGate) failed(now time.Time) time.Duration {
	g.failures++
	d := backoff(g.failures)
	g.next = now.Add(d)
	return d
}

// succeeded resets the back-off.
func (g *retryGate) succeeded() { g.failures, g.next = 0, time.Time{} }

func newSelfDriver(a *Agent, m *metrics) *selfDriver {
	bin, err := os.Executable()
	if err != nil {
		bin = os.Args[0]
	}
	return &selfDriver{a: a, binary: bin, metrics: m, execImage: func(b string) error {
		return syscall.Exec(b, append([]string{b}, os.Args[1:]...), os.Environ())
	}}
}

// observe is what the agent sees for a decision.
func (d *selfDriver) observe() selfupgrade.Observation {
	a := d.a
	j := a.journal.get()
	obs := selfupgrade.Observation{Self: a.identity.UniqueID, SelfBinary: d.binary, Now: time.Now()}
	if up := j.Upgrade; up != nil && up.Phase != PhaseFinalized && up.Phase != PhaseRolledBack {
		obs.NodeUpgradeActive = true
	}
	if j.Installed.ReleaseFile != "" {
		if sr, err := d.verifiedRelease(j.Installed.Version, j.Installed.ReleaseFile); err == nil {
			obs.Wanted = selfupgrade.Target{
				Version: sr.Manifest.Version, ReleaseFile: j.Installed.ReleaseFile,
				MREnclave: sr.Manifest.Agent.MREnclave, Binary: a.dir.AgentBinary(sr.Manifest.Version),
			}
		} else {
			a.log.Debug("self-upgrade: installed release does not verify", "err", err)
		}
	}
	return obs
}

func (d *selfDriver) verifiedRelease(version, file string) (*release.SignedRelease, error) {
	h := &realHost{network: d.a.network}
	return h.verifiedRelease(Installation{Version: version, ReleaseFile: file})
}

// verifyAgent checks a staged agent binary against its signed release:
// the release under the Key Management Group (manifest and the agent's
// enclave ID), the binary's SHA-256, MRENCLAVE and signature structure.
// It runs before every start of a new agent (handover mode, exec).
func (d *selfDriver) verifyAgent(t selfupgrade.Target) error {
	sr, err := d.verifiedRelease(t.Version, t.ReleaseFile)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSuccessorRejected, err)
	}
	if sr.Manifest.Agent.MREnclave != t.MREnclave {
		return fmt.Errorf("%w: release %s's agent is %s, the journal's %s", ErrSuccessorRejected, t.Version, sr.Manifest.Agent.MREnclave.Short(), t.MREnclave.Short())
	}
	id, err := release.VerifyBinary(t.Binary, sr.Manifest.Agent)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSuccessorRejected, t.Binary, err)
	}
	if id.UniqueID != t.MREnclave {
		return fmt.Errorf("%w: %s measures %s, want %s", ErrSuccessorRejected, t.Binary, id.UniqueID.Short(), t.MREnclave.Short())
	}
	return nil
}

// atStart runs before the agent acts on anything: an agent whose held
// state moved to a successor hands the process to it (exec), and a
// successor installs the state it received. It returns once the running
// agent is the one to run; an error means the agent must not run.
func (d *selfDriver) atStart(ctx context.Context) error {
	for range 4 {
		rec := d.a.journal.get().Agent
		act := selfupgrade.Decide(rec, d.observe())
		switch act.Kind {
		case selfupgrade.Exec, selfupgrade.Install:
			if err := d.perform(ctx, rec, act); err != nil {
				return err
			}
		default:
			return nil // the rest happens while serving (follow)
		}
	}
	return nil
}

// follow performs self-upgrade decisions every interval until ctx ends.
func (d *selfDriver) follow(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !d.retry.ready(time.Now()) {
			continue
		}
		d.a.opMu.Lock()
		// Step after step without waiting for the next tick, until
		// there is nothing to do (or a step failed: its back-off).
		for ctx.Err() == nil {
			rec := d.a.journal.get().Agent
			act := selfupgrade.Decide(rec, d.observe())
			if act.Kind == selfupgrade.None {
				break
			}
			var phase selfupgrade.Phase
			var id string
			if rec != nil {
				phase, id = rec.Phase, rec.ID
			}
			if err := d.perform(ctx, rec, act); err != nil {
				if ctx.Err() == nil {
					wait := d.retry.failed(time.Now())
					d.a.log.Error("agent self-upgrade", "action", act.Kind.String(), "err", err, "retry_in", wait.String(), "failures", d.retry.failures)
				}
				break
			}
			d.retry.succeeded()
			if next := d.a.journal.get().Agent; next == nil || next.Phase == phase && next.ID == id {
				break // nothing moved
			}
		}
		d.a.opMu.Unlock()
	}
}

// perform runs one action: its effect, then its journal write.
func (d *selfDriver) perform(ctx context.Context, rec *selfupgrade.Record, act selfupgrade.Action) error {
	a := d.a
	start := time.Now()
	log := a.log.With("self_upgrade", act.Kind.String(), "to_version", act.Target.Version, "to_mrenclave", act.Target.MREnclave.Short())
	var err error
	switch act.Kind {
	case selfupgrade.Begin:
		return d.begin(rec, act.Target)
	case selfupgrade.Stage:
		err = d.stage(ctx, act.Target)
	case selfupgrade.Handover:
		err = d.handover(ctx, rec)
	case selfupgrade.Exec:
		if err := d.verifyAgent(act.Target); err != nil {
			if act.Then == selfupgrade.PhaseFailed {
				// The state is still intact for this agent: run on.
				return d.fail(rec, err)
			}
			return fmt.Errorf("refusing to run: the agent's held state is sealed to agent %s (release %s): %w", act.Target.MREnclave.Short(), act.Target.Version, err)
		}
		log.Info("agent self-upgrade: replacing this process with the new agent (the node keeps running)", "binary", act.Target.Binary, "from_mrenclave", a.identity.UniqueID.Short())
		d.metrics.selfExec.Inc()
		err := d.execImage(act.Target.Binary)
		return fmt.Errorf("exec %s: %w", act.Target.Binary, err)
	case selfupgrade.Install:
		if err := d.advance(rec, selfupgrade.PhaseInstalling, time.Since(rec.UpdatedAt)); err != nil {
			return err
		}
		if err := d.install(rec); err != nil {
			return err // installing again on the next start
		}
	case selfupgrade.Fail:
		return d.fail(rec, errors.New(act.Reason))
	default:
		return nil
	}
	if err != nil {
		return d.fail(rec, err)
	}
	if err := d.advance(rec, act.Then, time.Since(start)); err != nil {
		return err
	}
	if act.Kind == selfupgrade.Install {
		_ = os.Remove(a.dir.SuccessorState(rec.ID))
		log.Info("agent self-upgrade completed: this agent holds the state and supervises the running node", "from_mrenclave", rec.From.MREnclave.Short())
	}
	return nil
}

// begin journals a new self-upgrade to t.
func (d *selfDriver) begin(prev *selfupgrade.Record, t selfupgrade.Target) error {
	a := d.a
	now := time.Now().UTC()
	rec := selfupgrade.Record{
		ID:    fmt.Sprintf("agent-to-%s-%s", t.Version, now.Format("20060102T150405.000000000")),
		From:  selfupgrade.Target{MREnclave: a.identity.UniqueID, Binary: d.binary},
		To:    t,
		Phase: selfupgrade.PhaseStarted, StartedAt: now, UpdatedAt: now,
	}
	if prev != nil && prev.Phase == selfupgrade.PhaseFailed && prev.To.MREnclave == t.MREnclave {
		rec.Attempts = prev.Attempts
	}
	if prev != nil && prev.Phase == selfupgrade.PhaseCompleted && prev.To.MREnclave == a.identity.UniqueID {
		rec.From = prev.To
	}
	if err := a.journal.update(func(j *Journal) error { j.Agent = &rec; return nil }); err != nil {
		return err
	}
	d.metrics.selfPhase.WithLabelValues(string(rec.Phase)).Inc()
	a.log.Info("agent self-upgrade journalled: the installed release ships another agent", "id", rec.ID, "phase", rec.Phase,
		"from_mrenclave", rec.From.MREnclave.Short(), "to_mrenclave", t.MREnclave.Short(), "to_version", t.Version)
	return nil
}

// advance journals phase p for the record.
func (d *selfDriver) advance(rec *selfupgrade.Record, p selfupgrade.Phase, took time.Duration) error {
	err := d.a.journal.update(func(j *Journal) error {
		if j.Agent == nil || j.Agent.ID != rec.ID {
			return fmt.Errorf("journal: self-upgrade %s is not the current one", rec.ID)
		}
		j.Agent.Phase, j.Agent.Error, j.Agent.UpdatedAt = p, "", time.Now().UTC()
		j.Agent.Steps = append(j.Agent.Steps, selfupgrade.Step{Phase: p, Took: took})
		return nil
	})
	if err != nil {
		return err
	}
	d.metrics.selfPhase.WithLabelValues(string(p)).Inc()
	if took > 0 {
		d.metrics.selfStep.WithLabelValues(string(p)).Set(took.Seconds())
	}
	d.a.log.Info("agent self-upgrade phase", "id", rec.ID, "phase", p, "took", took.String())
	return nil
}

// fail journals the attempt failed, to be retried after a back-off.
func (d *selfDriver) fail(rec *selfupgrade.Record, cause error) error {
	var retry time.Time
	err := d.a.journal.update(func(j *Journal) error {
		if j.Agent == nil || j.Agent.ID != rec.ID {
			return fmt.Errorf("journal: self-upgrade %s is not the current one", rec.ID)
		}
		j.Agent.Attempts++
		retry = time.Now().Add(selfupgrade.Backoff(j.Agent.Attempts)).UTC()
		j.Agent.Phase, j.Agent.Error, j.Agent.RetryAt, j.Agent.UpdatedAt = selfupgrade.PhaseFailed, cause.Error(), retry, time.Now().UTC()
		return nil
	})
	_ = os.Remove(d.a.dir.SuccessorState(rec.ID))
	d.metrics.selfFailures.Inc()
	d.metrics.selfPhase.WithLabelValues(string(selfupgrade.PhaseFailed)).Inc()
	d.a.log.Error("agent self-upgrade failed; this agent runs on", "id", rec.ID, "err", cause, "retry_at", retry)
	return err
}

// stage fetches the target's agent binary and signature structure into
// the agent directory (layout.Agent.AgentBinary) and verifies them; a
// staged binary that verifies is reused.
func (d *selfDriver) stage(ctx context.Context, t selfupgrade.Target) error {
	a := d.a
	if d.verifyAgent(t) == nil {
		return nil
	}
	sr, err := d.verifiedRelease(t.Version, t.ReleaseFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.dir.Agents(), 0o700); err != nil {
		return fmt.Errorf("stage agent %s: %w", t.Version, err)
	}
	tmp, err := os.MkdirTemp(a.dir.Agents(), "."+t.Version+".partial-")
	if err != nil {
		return fmt.Errorf("stage agent %s: %w", t.Version, err)
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, layout.AgentProgram)
	if err := (release.Fetcher{Mode: 0o755}).Fetch(ctx, sr.Manifest.Agent.URL, bin); err != nil {
		return fmt.Errorf("stage agent %s: download: %w", t.Version, err)
	}
	if err := (release.Fetcher{}).Fetch(ctx, sr.Manifest.Agent.SigStructURL(), layout.SigStruct(bin)); err != nil {
		return fmt.Errorf("stage agent %s: download signature structure: %w", t.Version, err)
	}
	if _, err := release.VerifyBinary(bin, sr.Manifest.Agent); err != nil {
		return fmt.Errorf("stage agent %s: downloaded binary rejected: %w", t.Version, err)
	}
	dir := filepath.Dir(t.Binary)
	if err := os.RemoveAll(dir); err != nil { // one that no longer verifies
		return fmt.Errorf("stage agent %s: %w", t.Version, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("stage agent %s: %w", t.Version, err)
	}
	if err := fsutil.SyncDir(a.dir.Agents()); err != nil {
		return err
	}
	a.faults.CrashPoint("agent.after-stage-agent")
	return d.verifyAgent(t)
}

// heldState unseals everything the agent holds sealed to itself: the
// files of its held-keys directory.
func (d *selfDriver) heldState() (selfupgrade.State, error) {
	a := d.a
	var st selfupgrade.State
	ents, err := os.ReadDir(a.dir.HeldKeysDir())
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("held state: %w", err)
	}
	for _, e := range ents {
		id, ok := layout.HeldKeysID(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		blob, err := os.ReadFile(a.dir.HeldKeys(id))
		if err != nil {
			return st, fmt.Errorf("held state: %w", err)
		}
		plain, err := tee.Unseal(a.enclave, blob, heldKeysAD(id))
		if err != nil {
			return st, fmt.Errorf("held state %s: %w", e.Name(), err)
		}
		st.Entries = append(st.Entries, selfupgrade.Entry{Name: e.Name(), Data: plain})
	}
	return st, nil
}

// handover runs the new agent in handover mode and serves it the held
// state: the new agent answers the challenge with a local report and its
// network-signed enclave ID (handover.SuccessorPeer: exactly the release's
// agent measurement), receives the state encrypted to its one-time key,
// seals it to itself in the agent directory and exits.
func (d *selfDriver) handover(ctx context.Context, rec *selfupgrade.Record) error {
	a := d.a
	if err := d.verifyAgent(rec.To); err != nil {
		return err
	}
	st, err := d.heldState()
	if err != nil {
		return err
	}
	secret, err := st.MarshalBinary()
	if err != nil {
		return err
	}
	own, err := a.ownEnclaveID()
	if err != nil {
		return err
	}
	p, err := handover.NewProvider(handover.ProviderConfig{
		Enclave: a.enclave, ChainID: a.network.ChainID, KMG: a.network.KMG,
		Role: release.RoleAgent, ID: own, Secret: secret,
		AcceptRequester: handover.SuccessorPeer(rec.To.MREnclave, a.identity.Debug).AcceptRequester,
	})
	if err != nil {
		return fmt.Errorf("handover to the new agent: %w", err)
	}
	bundle := a.dir.SuccessorState(rec.ID)
	_ = os.Remove(bundle)
	ln, err := unixsock.Listen(a.dir.SuccessorSocket())
	if err != nil {
		return fmt.Errorf("handover to the new agent: %w", err)
	}
	defer ln.Close()
	hctx, cancel := context.WithTimeout(ctx, successorTimeout)
	defer cancel()
	delivered := make(chan struct{}, 1)
	go d.serveSuccessor(hctx, ln, p, delivered)

	logf, err := os.OpenFile(a.dir.SuccessorLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("handover to the new agent: %w", err)
	}
	defer logf.Close()
	args := []string{"successor", "--genesis", a.cfg.Genesis, "--platform", a.cfg.Platform, "--dir", a.cfg.Dir,
		"--socket", a.dir.SuccessorSocket(), "--release", rec.To.ReleaseFile, "--from", a.identity.UniqueID.String(), "--id", rec.ID}
	if a.cfg.EnclaveDebug {
		args = append(args, "--enclave-debug")
	}
	cmd := exec.CommandContext(hctx, rec.To.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	a.log.Info("agent self-upgrade: new agent started in handover mode", "id", rec.ID, "binary", rec.To.Binary)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("new agent in handover mode: %w (see %s: %s)", err, a.dir.SuccessorLog(), tailLine(a.dir.SuccessorLog()))
	}
	select {
	case <-delivered:
	default:
		return fmt.Errorf("the new agent exited without receiving the state (see %s: %s)", a.dir.SuccessorLog(), tailLine(a.dir.SuccessorLog()))
	}
	if _, err := os.Stat(bundle); err != nil {
		return fmt.Errorf("the new agent stored no state: %w", err)
	}
	a.faults.CrashPoint("agent.after-successor-handover")
	a.log.Info("agent self-upgrade: the new agent proved itself and holds the state", "id", rec.ID, "entries", len(st.Entries))
	return nil
}

// serveSuccessor serves the held state on ln to whoever proves to be the
// successor, until ctx ends or ln closes.
func (d *selfDriver) serveSuccessor(ctx context.Context, ln net.Listener, p *handover.Provider, delivered chan<- struct{}) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if err := handover.Serve(ctx, c, p); err != nil {
				d.a.log.Warn("agent self-upgrade: handover refused", "err", err)
				return
			}
			select {
			case delivered <- struct{}{}:
			default:
			}
		}()
	}
}

// install seals every entry of the received state to this agent,
// replacing the held-keys files (idempotent: the bundle stays until the
// journal says completed).
func (d *selfDriver) install(rec *selfupgrade.Record) error {
	a := d.a
	blob, err := os.ReadFile(a.dir.SuccessorState(rec.ID))
	if err != nil {
		return fmt.Errorf("install handed-over state: %w", err)
	}
	secret, err := tee.Unseal(a.enclave, blob, successorAD(rec.ID))
	if err != nil {
		return fmt.Errorf("install handed-over state: %w", err)
	}
	var st selfupgrade.State
	if err := st.UnmarshalBinary(secret); err != nil {
		return fmt.Errorf("install handed-over state: %w", err)
	}
	if err := os.MkdirAll(a.dir.HeldKeysDir(), 0o700); err != nil {
		return fmt.Errorf("install handed-over state: %w", err)
	}
	for _, e := range st.Entries {
		id, ok := layout.HeldKeysID(e.Name)
		if !ok {
			return fmt.Errorf("install handed-over state: %q is not a held key file", e.Name)
		}
		sealed, err := tee.Seal(a.enclave, tee.SealUnique, e.Data, heldKeysAD(id))
		if err != nil {
			return fmt.Errorf("install handed-over state: %w", err)
		}
		if err := fsutil.WriteFileAtomic(a.dir.HeldKeys(id), sealed, 0o600); err != nil {
			return fmt.Errorf("install handed-over state: %w", err)
		}
	}
	a.faults.CrashPoint("agent.after-install-state")
	return nil
}

// successorAD is the additional data of the state bundle of self-upgrade
// id, sealed by the new agent to itself.
func successorAD(id string) []byte { return []byte("teeup agent successor state v1|" + id) }
