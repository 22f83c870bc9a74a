package flagday

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/tee"
)

// Mode is how the flag day is triggered.
type Mode string

const (
	// Scheduled: the upgrade is scheduled on chain at an activation height;
	// nodes close ingress and halt there on their own, agents upgrade.
	Scheduled Mode = "scheduled"
	// Manual: for networks that coordinate by call, as in the seed — the
	// coordinator closes ingress, halts the network and triggers every
	// agent now, without on-chain scheduling.
	Manual Mode = "manual"
)

// Step names, in the order a flag day runs them.
const (
	StepPreflight    = "preflight"
	StepSchedule     = "schedule"
	StepCloseIngress = "close-ingress"
	StepHalt         = "halt-at-height"
	StepUpgrade      = "upgrade-hosts"
	StepResume       = "resume-chain"
	StepVerifyChain  = "verify-chain"
	StepAttest       = "verify-attestation"
	StepPayments     = "test-payments"
	StepReopen       = "reopen-ingress"
	StepLive         = "live-period"
	StepFinalize     = "finalize"
)

// Outcome is how a flag day stands or ended.
type Outcome string

// Outcomes of a flag day.
const (
	OutcomeRunning     Outcome = "running"
	OutcomeCompleted   Outcome = "completed"
	OutcomeRollingBack Outcome = "rolling-back"
	OutcomeRolledBack  Outcome = "rolled-back"
	OutcomeFailed      Outcome = "failed"
)

// StepStatus is how far one step has come.
type StepStatus string

// Step statuses.
const (
	StepPending StepStatus = "pending"
	StepRunning StepStatus = "running"
	StepDone    StepStatus = "done"
	StepFailed  StepStatus = "failed"
	StepSkipped StepStatus = "skipped"
)

// StepState is one step's progress.
type StepState struct {
	Name     string        `json:"name"`
	Status   StepStatus    `json:"status"`
	Started  time.Time     `json:"started,omitempty"`
	Finished time.Time     `json:"finished,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Detail   string        `json:"detail,omitempty"`
}

// TestTx is an operator test payment made during the flag day.
type TestTx struct {
	Kind   string `json:"kind"` // self or cross
	TxID   string `json:"tx_id"`
	Height uint64 `json:"height"`
	Node   uint64 `json:"node"`
}

// HostResult is what the flag day recorded of one host.
type HostResult struct {
	ID             uint64                    `json:"id"`
	HeightAtHalt   uint64                    `json:"height_at_halt"`
	HashAtHalt     string                    `json:"hash_at_halt"`
	MREnclave      tee.Measurement           `json:"mrenclave"`
	Upgrade        *agentapi.UpgradeRecord   `json:"upgrade,omitempty"`
	Snapshot       *SnapshotInfo             `json:"snapshot,omitempty"`
	Attestation    []nodeapi.PeerAttestation `json:"attestation,omitempty"`
	FinalHeight    uint64                    `json:"final_height"`
	FinalMREnclave tee.Measurement           `json:"final_mrenclave"`
}

// SnapshotInfo summarises a host's snapshot.
type SnapshotInfo struct {
	Name     string            `json:"name"`
	Dir      string            `json:"dir"`
	Files    int               `json:"files"`
	Bytes    int64             `json:"bytes"`
	Checksum string            `json:"manifest_sha256"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Record is the journal of one flag day.
type Record struct {
	ID                string          `json:"id"`
	Mode              Mode            `json:"mode"`
	ChainID           string          `json:"chain_id"`
	Version           string          `json:"version"`
	FromVersion       string          `json:"from_version"`
	FromMREnclave     tee.Measurement `json:"from_mrenclave"`
	ToMREnclave       tee.Measurement `json:"to_mrenclave"`
	ActivationHeight  uint64          `json:"activation_height"`
	StartedAt         time.Time       `json:"started_at"`
	FinishedAt        time.Time       `json:"finished_at,omitempty"`
	Outcome           Outcome         `json:"outcome"`
	Error             string          `json:"error,omitempty"`
	Steps             []StepState     `json:"steps"`
	Hosts             []HostResult    `json:"hosts"`
	TestTxs           []TestTx        `json:"test_transactions,omitempty"`
	IngressClosedAt   time.Time       `json:"ingress_closed_at,omitempty"`
	IngressReopenedAt time.Time       `json:"ingress_reopened_at,omitempty"`
	Rollback          *RollbackInfo   `json:"rollback,omitempty"`
}

// RollbackInfo records a rollback.
type RollbackInfo struct {
	Reason      string    `json:"reason"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at,omitempty"`
	AbortHeight uint64    `json:"abort_height,omitempty"`
	// Discarded lists the hosts whose snapshot restore discarded
	// transactions the new version had committed.
	Discarded []HostLoss `json:"discarded_by_host,omitempty"`
}

// HostLoss is what one host's rollback discarded.
type HostLoss struct {
	Host uint64        `json:"host"`
	Loss agentapi.Loss `json:"loss"`
}

// Downtime is how long client ingress was closed.
func (r *Record) Downtime() time.Duration {
	if r.IngressClosedAt.IsZero() || r.IngressReopenedAt.IsZero() {
		return 0
	}
	return r.IngressReopenedAt.Sub(r.IngressClosedAt)
}

// step returns the state of a step.
func (r *Record) step(name string) *StepState {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

func (r *Record) host(id uint64) *HostResult {
	for i := range r.Hosts {
		if r.Hosts[i].ID == id {
			return &r.Hosts[i]
		}
	}
	r.Hosts = append(r.Hosts, HostResult{ID: id})
	return &r.Hosts[len(r.Hosts)-1]
}

// journal persists a Record and appends events.
type journal struct {
	dir layout.FlagDay
	mu  sync.Mutex
	rec Record
}

// LoadCurrent returns the newest flag day's record under root.
func LoadCurrent(root string) (*Record, layout.FlagDay, error) {
	days := layout.FlagDaysUnder(root)
	raw, err := os.ReadFile(days.Current())
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", os.ErrNotExist
	}
	if err != nil {
		return nil, "", err
	}
	dir := days.FlagDay(string(raw))
	rec, err := readRecord(dir)
	return rec, dir, err
}

// ErrCorruptJournal means a flag-day journal does not parse: an error,
// not a silent fresh start.
var ErrCorruptJournal = errors.New("flag-day journal is corrupt")

func readRecord(dir layout.FlagDay) (*Record, error) {
	raw, err := os.ReadFile(dir.Journal())
	if err != nil {
		return nil, fmt.Errorf("flag-day journal: %w", err)
	}
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", dir, ErrCorruptJournal, err)
	}
	return &r, nil
}

func createJournal(root string, rec Record) (*journal, error) {
	days := layout.FlagDaysUnder(root)
	dir := days.FlagDay(rec.ID)
	if err := os.MkdirAll(dir.Dir(), 0o755); err != nil {
		return nil, fmt.Errorf("flag-day journal: %w", err)
	}
	j := &journal{dir: dir, rec: rec}
	if err := j.save(); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(days.Current(), []byte(rec.ID), 0o644); err != nil {
		return nil, err
	}
	return j, nil
}

func openJournal(dir layout.FlagDay) (*journal, error) {
	rec, err := readRecord(dir)
	if err != nil {
		return nil, err
	}
	return &journal{dir: dir, rec: *rec}, nil
}

func (j *journal) save() error {
	raw, err := json.MarshalIndent(j.rec, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(j.dir.Journal(), append(raw, '\n'), 0o644)
}

// update changes the record under the lock and persists it.
func (j *journal) update(f func(r *Record)) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	f(&j.rec)
	return j.save()
}

func (j *journal) get() Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	raw, _ := json.Marshal(j.rec)
	var c Record
	_ = json.Unmarshal(raw, &c)
	return c
}

// Event is one line of the JSON event log.
type Event struct {
	Time   time.Time `json:"time"`
	Step   string    `json:"step,omitempty"`
	Host   uint64    `json:"host,omitempty"`
	Kind   string    `json:"kind"` // step-start, step-done, step-failed, check, observe, rollback
	Detail string    `json:"detail,omitempty"`
}

func (j *journal) event(e Event) {
	if j == nil {
		return // operations without a journal (rollout) log nothing here
	}
	e.Time = time.Now().UTC()
	raw, err := json.Marshal(e)
	if err != nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := os.OpenFile(j.dir.Events(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(raw, '\n'))
}
