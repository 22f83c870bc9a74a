package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/tee"
)

// fakeHost models one host's observable state: which node runs, where the
// keys are, whether distribution runs, the ledger's content.
type fakeHost struct {
	nodeRunning     string // version running, "" when stopped
	distRunning     bool
	distVersion     string            // the release whose distribution binary runs
	snapshots       map[string]string // name → ledger content
	ledger          string
	oldKeys         bool            // old version's sealed keys on disk
	newKeys         bool            // new version's sealed keys on disk
	held            map[string]bool // keys held by the agent per upgrade
	failAt          string          // method name that fails while failCount > 0
	failCount       int
	calls           []string
	newNodeMigrates bool
	committedAfter  int // transactions the new version committed after the snapshot
}

var errInjected = errors.New("injected failure")

func (h *fakeHost) hit(name string) error {
	h.calls = append(h.calls, name)
	if h.failAt == name && h.failCount > 0 {
		h.failCount--
		return errInjected
	}
	return nil
}

func (h *fakeHost) StopDistribution(context.Context) error {
	if err := h.hit("StopDistribution"); err != nil {
		return err
	}
	h.distRunning = false
	return nil
}

func (h *fakeHost) StartDistribution(_ context.Context, inst Installation) error {
	if err := h.hit("StartDistribution"); err != nil {
		return err
	}
	h.distRunning = true
	h.distVersion = inst.Version
	return nil
}

func (h *fakeHost) Snapshot(_ context.Context, name string, _ Installation) error {
	if err := h.hit("Snapshot"); err != nil {
		return err
	}
	if _, ok := h.snapshots[name]; !ok {
		h.snapshots[name] = h.ledger
	}
	return nil
}

func (h *fakeHost) HoldKeys(_ context.Context, id string, from Installation) error {
	if err := h.hit("HoldKeys"); err != nil {
		return err
	}
	if h.held[id] {
		return nil
	}
	if h.nodeRunning != from.Version || !h.oldKeys {
		return fmt.Errorf("old node not running (running %q)", h.nodeRunning)
	}
	h.held[id] = true
	return nil
}

func (h *fakeHost) StopNode(context.Context) error {
	if err := h.hit("StopNode"); err != nil {
		return err
	}
	h.nodeRunning = ""
	return nil
}

func (h *fakeHost) StartNode(_ context.Context, inst Installation, id string) error {
	if err := h.hit("StartNode"); err != nil {
		return err
	}
	h.nodeRunning = inst.Version
	if inst.Version == "2.0.0" && !h.newKeys {
		if !h.held[id] {
			return errors.New("new node has no keys and the agent holds none")
		}
		h.newKeys = true
		if h.newNodeMigrates {
			h.ledger += "+migrated"
		}
	}
	return nil
}

func (h *fakeHost) AwaitServing(_ context.Context, inst Installation) error {
	if err := h.hit("AwaitServing"); err != nil {
		return err
	}
	if h.nodeRunning != inst.Version {
		return fmt.Errorf("running %q, want %q", h.nodeRunning, inst.Version)
	}
	return nil
}

func (h *fakeHost) RestoreSnapshot(_ context.Context, name string) error {
	if err := h.hit("RestoreSnapshot"); err != nil {
		return err
	}
	if h.nodeRunning != "" {
		return errors.New("node running")
	}
	content, ok := h.snapshots[name]
	if !ok {
		return errors.New("no such snapshot")
	}
	h.ledger = content
	return nil
}

func (h *fakeHost) CommittedSince(context.Context, string) (Loss, error) {
	if err := h.hit("CommittedSince"); err != nil {
		return Loss{}, err
	}
	return Loss{Transactions: h.committedAfter, FromHeight: 11, ToHeight: 12}, nil
}

func (h *fakeHost) Finalize(_ context.Context, _ Installation, id string) error {
	if err := h.hit("Finalize"); err != nil {
		return err
	}
	h.oldKeys = false
	delete(h.held, id)
	return nil
}

var (
	v1 = Installation{Version: "1.0.0", NodeMREnclave: tee.Measurement{1}}
	v2 = Installation{Version: "2.0.0", NodeMREnclave: tee.Measurement{2}}
)

func newFake() *fakeHost {
	return &fakeHost{nodeRunning: "1.0.0", distRunning: true, snapshots: map[string]string{}, ledger: "ledger@H",
		oldKeys: true, held: map[string]bool{}, newNodeMigrates: true}
}

func newTestUpgrader(t *testing.T, dir string, h Host) *Upgrader {
	t.Helper()
	j, existed, err := openJournal(layout.Agent(dir).Journal())
	if err != nil {
		t.Fatal(err)
	}
	if !existed {
		if err := j.update(func(jj *Journal) error { jj.Installed = v1; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return newUpgrader(j, h, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// keysSafe checks the invariant: some party always holds the keys.
func keysSafe(h *fakeHost) bool {
	held := false
	for _, v := range h.held {
		held = held || v
	}
	return h.oldKeys || h.newKeys || held
}

func TestUpgradeHappyPath(t *testing.T) {
	h := newFake()
	u := newTestUpgrader(t, t.TempDir(), h)
	if _, err := u.Begin(v2, ModeManual, 0); err != nil {
		t.Fatal(err)
	}
	rec, err := u.Resume(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rec.Phase != PhaseCompleted || h.nodeRunning != "2.0.0" || !h.distRunning || !h.newKeys {
		t.Fatalf("after upgrade: phase %s, running %q, dist %t, new keys %t", rec.Phase, h.nodeRunning, h.distRunning, h.newKeys)
	}
	if h.distVersion != "2.0.0" {
		t.Fatalf("distribution restarted on release %q's binary, want the new release's", h.distVersion)
	}
	if !h.oldKeys {
		t.Fatal("old keys deleted before finalization")
	}
	if got := u.journal.get().Installed.Version; got != "2.0.0" {
		t.Fatalf("installed %s", got)
	}
	if len(rec.Steps) != len(upgradeOrder)-1 {
		t.Fatalf("%d step timings, want %d", len(rec.Steps), len(upgradeOrder)-1)
	}
	if _, err := u.Finalize(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.oldKeys {
		t.Fatal("finalize kept the old keys")
	}
	if _, err := u.Rollback(context.Background(), "too late", false); !errors.Is(err, ErrFinalized) {
		t.Fatalf("rollback after finalize = %v", err)
	}
}

// TestCrashAtEveryStep fails each step once — as a crash would interrupt
// it — then resumes with a fresh Upgrader on the same journal (a restarted
// agent). Every case must end completed with the keys safe throughout.
func TestCrashAtEveryStep(t *testing.T) {
	for _, step := range []string{"StopDistribution", "Snapshot", "HoldKeys", "StopNode", "StartNode", "AwaitServing", "StartDistribution"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			h := newFake()
			h.failAt, h.failCount = step, 1
			u := newTestUpgrader(t, dir, h)
			if _, err := u.Begin(v2, ModeManual, 0); err != nil {
				t.Fatal(err)
			}
			_, err := u.Resume(context.Background())
			if !errors.Is(err, errInjected) {
				t.Fatalf("Resume = %v, want the injected failure", err)
			}
			if !keysSafe(h) {
				t.Fatal("keys lost after the crash")
			}
			if got := u.journal.get().Upgrade.Error; !strings.Contains(got, "injected") {
				t.Fatalf("journal error = %q", got)
			}
			// A restarted agent reads the journal and resumes.
			u2 := newTestUpgrader(t, dir, h)
			rec, err := u2.Resume(context.Background())
			if err != nil {
				t.Fatalf("resume after crash: %v", err)
			}
			if rec.Phase != PhaseCompleted || h.nodeRunning != "2.0.0" || !h.newKeys || !keysSafe(h) {
				t.Fatalf("phase %s running %q newKeys %t", rec.Phase, h.nodeRunning, h.newKeys)
			}
		})
	}
}

// TestRollbackFromEveryPhase stops the upgrade after each phase and rolls
// back: the old version runs on the snapshot's ledger with its own keys.
func TestRollbackFromEveryPhase(t *testing.T) {
	for _, stopAfter := range upgradeOrder[:len(upgradeOrder)-1] {
		t.Run(string(stopAfter), func(t *testing.T) {
			h := newFake()
			u := newTestUpgrader(t, t.TempDir(), h)
			if _, err := u.Begin(v2, ModeScheduled, 100); err != nil {
				t.Fatal(err)
			}
			// Fail the step after stopAfter, so the journal stops there.
			next := map[Phase]string{PhaseStarted: "StopDistribution", PhaseDistributionStopped: "Snapshot", PhaseSnapshotTaken: "HoldKeys",
				PhaseKeysHeld: "StopNode", PhaseOldStopped: "StartNode", PhaseNewStarted: "AwaitServing", PhaseNewServing: "StartDistribution"}[stopAfter]
			h.failAt, h.failCount = next, 1
			if _, err := u.Resume(context.Background()); err == nil {
				t.Fatal("resume succeeded despite the failure")
			}
			if got := u.journal.get().Upgrade.Phase; got != stopAfter {
				t.Fatalf("journal phase %s, want %s", got, stopAfter)
			}
			rec, err := u.Rollback(context.Background(), "test", false)
			if err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if rec.Phase != PhaseRolledBack || h.nodeRunning != "1.0.0" || !h.oldKeys || !h.distRunning {
				t.Fatalf("after rollback: phase %s running %q oldKeys %t dist %t", rec.Phase, h.nodeRunning, h.oldKeys, h.distRunning)
			}
			if h.distVersion != "1.0.0" {
				t.Fatalf("distribution after rollback runs release %q's binary, want the old release's", h.distVersion)
			}
			if h.ledger != "ledger@H" {
				t.Fatalf("ledger after rollback = %q, want the snapshot's", h.ledger)
			}
			if got := u.journal.get().Installed.Version; got != "1.0.0" {
				t.Fatalf("installed after rollback = %s", got)
			}
			// Idempotent.
			if _, err := u.Rollback(context.Background(), "again", false); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBeginRejections(t *testing.T) {
	h := newFake()
	dir := t.TempDir()
	u := newTestUpgrader(t, dir, h)
	if _, err := u.Begin(Installation{Version: "1.0.1", NodeMREnclave: v1.NodeMREnclave}, ModeManual, 0); !errors.Is(err, ErrSameEnclave) {
		t.Fatalf("Begin(same MRENCLAVE) = %v", err)
	}
	if _, err := u.Begin(v2, ModeManual, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Begin(v2, ModeManual, 0); !errors.Is(err, ErrUpgradeInProgress) {
		t.Fatalf("second Begin = %v", err)
	}
	if _, err := u.Finalize(context.Background()); !errors.Is(err, ErrNotCompleted) {
		t.Fatalf("Finalize before completion = %v", err)
	}
}

func TestCorruptJournalRefused(t *testing.T) {
	dir := t.TempDir()
	j, _, err := openJournal(layout.Agent(dir).Journal())
	if err != nil {
		t.Fatal(err)
	}
	if err := j.update(func(jj *Journal) error { jj.Installed = v1; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := writeCorrupt(dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openJournal(layout.Agent(dir).Journal()); !errors.Is(err, ErrCorruptJournal) {
		t.Fatalf("openJournal(corrupt) = %v", err)
	}
}

func writeCorrupt(dir string) error {
	return os.WriteFile(layout.Agent(dir).Journal(), []byte("{\"installed\": {"), 0o600)
}

func TestRollbackRefusesToLoseTransactions(t *testing.T) {
	h := newFake()
	u := newTestUpgrader(t, t.TempDir(), h)
	if _, err := u.Begin(v2, ModeManual, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.committedAfter = 3
	_, err := u.Rollback(context.Background(), "regret", false)
	var le *agentapi.LossError
	if !errors.Is(err, ErrWouldLoseTransactions) || !errors.As(err, &le) || le.Loss != (Loss{FromHeight: 11, ToHeight: 12, Transactions: 3}) {
		t.Fatalf("Rollback = %v, want a LossError for 3 transactions in blocks 11..12", err)
	}
	// Through the API the refusal keeps its code and its loss.
	if e := apiError(err); e.Code != agentapi.CodeWouldLoseTransactions || e.Loss == nil || *e.Loss != le.Loss || !errors.Is(&e, ErrWouldLoseTransactions) {
		t.Fatalf("API error %+v", e)
	}
	if h.nodeRunning != "2.0.0" || u.journal.get().Upgrade.Phase != PhaseCompleted {
		t.Fatal("a refused rollback changed the host")
	}
	rec, err := u.Rollback(context.Background(), "regret", true)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Phase != PhaseRolledBack || rec.Discarded == nil || *rec.Discarded != le.Loss {
		t.Fatalf("forced rollback record: %+v", rec)
	}
}
