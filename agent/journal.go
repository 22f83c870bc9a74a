package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/teeup/teeup/agent/selfupgrade"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/internal/fsutil"
)

// Journal record types are shared with the agent API.
type (
	Installation  = agentapi.Installation
	Phase         = agentapi.Phase
	StepTiming    = agentapi.StepTiming
	UpgradeRecord = agentapi.UpgradeRecord
)

// Upgrade modes and phases (see agentapi).
const (
	ModeManual    = agentapi.ModeManual
	ModeScheduled = agentapi.ModeScheduled

	PhaseStarted             = agentapi.PhaseStarted
	PhaseDistributionStopped = agentapi.PhaseDistributionStopped
	PhaseSnapshotTaken       = agentapi.PhaseSnapshotTaken
	PhaseKeysHeld            = agentapi.PhaseKeysHeld
	PhaseOldStopped          = agentapi.PhaseOldStopped
	PhaseNewStarted          = agentapi.PhaseNewStarted
	PhaseNewServing          = agentapi.PhaseNewServing
	PhaseCompleted           = agentapi.PhaseCompleted
	PhaseFinalized           = agentapi.PhaseFinalized
	PhaseRolledBack          = agentapi.PhaseRolledBack
)

// upgradeOrder lists the phases a successful upgrade passes through.
var upgradeOrder = []Phase{PhaseStarted, PhaseDistributionStopped, PhaseSnapshotTaken, PhaseKeysHeld,
	PhaseOldStopped, PhaseNewStarted, PhaseNewServing, PhaseCompleted}

func phaseIndex(p Phase) int {
	for i, q := range upgradeOrder {
		if q == p {
			return i
		}
	}
	return -1
}

// Journal is the agent's durable state.
type Journal struct {
	Installed Installation    `json:"installed"`
	Upgrade   *UpgradeRecord  `json:"upgrade,omitempty"`
	History   []UpgradeRecord `json:"history,omitempty"`
	// Agent is the agent's own latest self-upgrade (selfupgrade.go).
	Agent *selfupgrade.Record `json:"agent_upgrade,omitempty"`
}

// journalStore persists the journal atomically after every change.
type journalStore struct {
	path string
	mu   sync.Mutex
	j    Journal
}

// ErrCorruptJournal means the journal file does not parse: the agent
// refuses to guess what state an upgrade is in.
var ErrCorruptJournal = errors.New("journal is corrupt")

// openJournal opens the journal file at path; existed reports whether it
// was there.
func openJournal(path string) (*journalStore, bool, error) {
	s := &journalStore{path: path}
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read journal: %w", err)
	}
	if err := json.Unmarshal(raw, &s.j); err != nil {
		return nil, false, fmt.Errorf("%s: %w (refusing to guess what state the upgrade is in): %w", s.path, ErrCorruptJournal, err)
	}
	return s, true, nil
}

// get returns a deep copy of the journal.
func (s *journalStore) get() Journal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneJournal(s.j)
}

func cloneJournal(j Journal) Journal {
	raw, _ := json.Marshal(j)
	var c Journal
	_ = json.Unmarshal(raw, &c)
	return c
}

// update applies f to a copy and persists it; the in-memory journal only
// changes if the write succeeded.
func (s *journalStore) update(f func(j *Journal) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := cloneJournal(s.j)
	if err := f(&next); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := fsutil.WriteFileAtomic(s.path, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	s.j = next
	return nil
}
