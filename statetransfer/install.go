package statetransfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/teeup/teeup/internal/fsutil"
)

// Paths are where a node keeps its live ledger and its incoming state.
type Paths struct {
	// Ledger is the live ledger directory (a Pebble database).
	Ledger string
	// Incoming holds snapshots being received, staged ones and the install
	// marker.
	Incoming string
}

// Old is where the live ledger is moved during an install: the rename to it
// is the install's commit point.
func (p Paths) Old() string { return p.Ledger + ".old" }

// MarkerPath is the install marker.
func (p Paths) MarkerPath() string { return filepath.Join(p.Incoming, markerName) }

// Staged is the directory of a staged snapshot.
func (p Paths) Staged(name string) string { return filepath.Join(p.Incoming, name) }

// Partial is where a snapshot is received before it is verified.
func (p Paths) Partial(name string) string { return filepath.Join(p.Incoming, name+partialSuffix) }

const (
	markerName    = "INSTALL"
	partialSuffix = ".partial"
)

// SnapshotName names the staged snapshot of raft index and term.
func SnapshotName(index, term uint64) string { return fmt.Sprintf("snap-%020d-%020d", index, term) }

// Marker records the decision to install a staged snapshot. Raft is an
// opaque record for the Prepare function (the raft state to write into the
// staged database before it becomes the live one).
type Marker struct {
	Staged string `json:"staged"`
	Index  uint64 `json:"index"`
	Term   uint64 `json:"term"`
	Raft   []byte `json:"raft"`
}

// WriteMarker atomically records the decision to install m.Staged.
func WriteMarker(p Paths, m Marker) error {
	if err := ValidName(m.Staged); err != nil {
		return err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("write install marker: %w", err)
	}
	if err := fsutil.WriteFileAtomic(p.MarkerPath(), raw, 0o600); err != nil {
		return fmt.Errorf("write install marker: %w", err)
	}
	return nil
}

func readMarker(p Paths) (*Marker, error) {
	raw, err := os.ReadFile(p.MarkerPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read install marker: %w", err)
	}
	var m Marker
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("read install marker %s: %w", p.MarkerPath(), err)
	}
	if err := ValidName(m.Staged); err != nil {
		return nil, fmt.Errorf("read install marker %s: %w", p.MarkerPath(), err)
	}
	return &m, nil
}

// Observation is what Plan decides from: what exists on disk.
type Observation struct {
	Ledger bool // the live ledger directory exists
	Old    bool // the .old ledger exists
	Marker *Marker
	Staged bool // the marker's staged directory exists
	// Incoming lists the other entries of the incoming directory.
	Incoming []string
}

// ActionKind is one step of a recovery.
type ActionKind int

// Recovery steps, each idempotent.
const (
	// ActPrepare writes the marker's raft state into the staged database.
	ActPrepare ActionKind = iota + 1
	// ActRetireLedger renames the live ledger to .old: the commit point.
	ActRetireLedger
	// ActPromoteStaged renames the staged snapshot to the live ledger.
	ActPromoteStaged
	// ActRestoreOld renames .old back to the live ledger (no install).
	ActRestoreOld
	// ActRemoveOld deletes the .old ledger.
	ActRemoveOld
	// ActRemoveMarker deletes the install marker.
	ActRemoveMarker
	// ActRemoveIncoming deletes an entry of the incoming directory.
	ActRemoveIncoming
)

// Action is a step with its argument.
type Action struct {
	Kind ActionKind
	Name string // for ActRemoveIncoming
}

// Point is the action's short name, e.g. for fault injection points.
func (a Action) Point() string {
	switch a.Kind {
	case ActPrepare:
		return "prepare"
	case ActRetireLedger:
		return "retire"
	case ActPromoteStaged:
		return "promote"
	case ActRestoreOld:
		return "restore-old"
	case ActRemoveOld:
		return "remove-old"
	case ActRemoveMarker:
		return "remove-marker"
	case ActRemoveIncoming:
		return "remove-incoming"
	default:
		return fmt.Sprintf("action-%d", a.Kind)
	}
}

// String names the action.
func (a Action) String() string {
	switch a.Kind {
	case ActPrepare:
		return "prepare staged raft state"
	case ActRetireLedger:
		return "retire live ledger"
	case ActPromoteStaged:
		return "promote staged snapshot"
	case ActRestoreOld:
		return "restore old ledger"
	case ActRemoveOld:
		return "remove old ledger"
	case ActRemoveMarker:
		return "remove install marker"
	case ActRemoveIncoming:
		return "remove incoming " + a.Name
	default:
		return fmt.Sprintf("action %d", a.Kind)
	}
}

// Outcome says what the state on disk will be once a plan has run.
type Outcome int

// Outcomes of a plan.
const (
	// OutcomeUnchanged: the live ledger stays as it is (leftovers removed).
	OutcomeUnchanged Outcome = iota + 1
	// OutcomeInstalled: the staged snapshot becomes the live ledger.
	OutcomeInstalled
	// OutcomeRestored: an interrupted swap without a marker is undone.
	OutcomeRestored
)

// ErrNoLedger means neither a live, an old nor a staged ledger exists where
// a marker says one should: the data directory was tampered with.
var ErrNoLedger = errors.New("no ledger to recover")

// Plan decides, from what is on disk, the steps that bring the ledger to a
// consistent state. It is pure. Before the commit point (the live ledger
// renamed to .old) a crash keeps the old state; after it, the staged one.
func Plan(o Observation) ([]Action, Outcome, error) {
	var acts []Action
	cleanup := func() {
		for _, name := range o.Incoming {
			acts = append(acts, Action{Kind: ActRemoveIncoming, Name: name})
		}
	}
	if o.Marker == nil {
		switch {
		case o.Ledger:
			if o.Old {
				acts = append(acts, Action{Kind: ActRemoveOld})
			}
			cleanup()
			return acts, OutcomeUnchanged, nil
		case o.Old:
			acts = append(acts, Action{Kind: ActRestoreOld})
			cleanup()
			return acts, OutcomeRestored, nil
		default:
			cleanup()
			return acts, OutcomeUnchanged, nil // a new node: the ledger is created from the genesis
		}
	}
	switch {
	case o.Staged && o.Ledger:
		// Before the commit point. A leftover .old from an earlier install
		// must go first, or the retire would fail.
		if o.Old {
			acts = append(acts, Action{Kind: ActRemoveOld})
		}
		acts = append(acts, Action{Kind: ActPrepare}, Action{Kind: ActRetireLedger}, Action{Kind: ActPromoteStaged},
			Action{Kind: ActRemoveOld}, Action{Kind: ActRemoveMarker})
		cleanup()
		return acts, OutcomeInstalled, nil
	case o.Staged && !o.Ledger && o.Old:
		// After the commit point: finish.
		acts = append(acts, Action{Kind: ActPromoteStaged}, Action{Kind: ActRemoveOld}, Action{Kind: ActRemoveMarker})
		cleanup()
		return acts, OutcomeInstalled, nil
	case o.Staged && !o.Ledger && !o.Old:
		// No ledger yet: the snapshot is the first state.
		acts = append(acts, Action{Kind: ActPrepare}, Action{Kind: ActPromoteStaged}, Action{Kind: ActRemoveMarker})
		cleanup()
		return acts, OutcomeInstalled, nil
	case !o.Staged && o.Ledger:
		// The promote happened (or the staged copy vanished before the
		// commit point): the live ledger is the state.
		if o.Old {
			acts = append(acts, Action{Kind: ActRemoveOld})
		}
		acts = append(acts, Action{Kind: ActRemoveMarker})
		cleanup()
		return acts, OutcomeUnchanged, nil
	case !o.Staged && !o.Ledger && o.Old:
		acts = append(acts, Action{Kind: ActRestoreOld}, Action{Kind: ActRemoveMarker})
		cleanup()
		return acts, OutcomeRestored, nil
	default:
		return nil, 0, fmt.Errorf("%w: install marker for %s, but no live, old or staged ledger", ErrNoLedger, o.Marker.Staged)
	}
}

// Observe reads what Plan needs from disk.
func Observe(p Paths) (Observation, error) {
	var o Observation
	var err error
	if o.Ledger, err = isDir(p.Ledger); err != nil {
		return o, err
	}
	if o.Old, err = isDir(p.Old()); err != nil {
		return o, err
	}
	if o.Marker, err = readMarker(p); err != nil {
		return o, err
	}
	ents, err := os.ReadDir(p.Incoming)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return o, fmt.Errorf("observe %s: %w", p.Incoming, err)
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == markerName:
		case o.Marker != nil && name == o.Marker.Staged:
			o.Staged = true
		default:
			o.Incoming = append(o.Incoming, name)
		}
	}
	sort.Strings(o.Incoming)
	return o, nil
}

func isDir(path string) (bool, error) {
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("observe %s: %w", path, err)
	}
	if !info.IsDir() {
		return false, fmt.Errorf("observe %s: not a directory", path)
	}
	return true, nil
}

// PrepareFunc writes the marker's raft state into the staged database dir.
// It must be idempotent.
type PrepareFunc func(stagedDir string, m Marker) error

// RecoverOptions configures Recover.
type RecoverOptions struct {
	Prepare PrepareFunc
	// AfterAction, if set, runs after each action's effect (tests inject
	// crashes here by returning an error).
	AfterAction func(Action) error
}

// Recover brings the ledger to a consistent state after a crash or to
// complete a decided install: it observes, plans and runs the plan. It
// returns the outcome and, when a snapshot was installed, its marker.
func Recover(p Paths, opts RecoverOptions) (Outcome, *Marker, error) {
	o, err := Observe(p)
	if err != nil {
		return 0, nil, err
	}
	acts, outcome, err := Plan(o)
	if err != nil {
		return 0, nil, err
	}
	for _, a := range acts {
		if err := run(p, o.Marker, a, opts.Prepare); err != nil {
			return 0, nil, fmt.Errorf("recover ledger: %s: %w", a, err)
		}
		if opts.AfterAction != nil {
			if err := opts.AfterAction(a); err != nil {
				return 0, nil, err
			}
		}
	}
	if outcome == OutcomeInstalled {
		return outcome, o.Marker, nil
	}
	return outcome, nil, nil
}

func run(p Paths, m *Marker, a Action, prepare PrepareFunc) error {
	parent := filepath.Dir(p.Ledger)
	switch a.Kind {
	case ActPrepare:
		if prepare == nil {
			return errors.New("no prepare function")
		}
		return prepare(p.Staged(m.Staged), *m)
	case ActRetireLedger:
		return renameSynced(p.Ledger, p.Old(), parent)
	case ActPromoteStaged:
		if err := renameSynced(p.Staged(m.Staged), p.Ledger, parent); err != nil {
			return err
		}
		return fsutil.SyncDir(p.Incoming)
	case ActRestoreOld:
		return renameSynced(p.Old(), p.Ledger, parent)
	case ActRemoveOld:
		return os.RemoveAll(p.Old())
	case ActRemoveMarker:
		if err := os.Remove(p.MarkerPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return fsutil.SyncDir(p.Incoming)
	case ActRemoveIncoming:
		if a.Name == "" || a.Name == "." || a.Name == ".." || filepath.Base(a.Name) != a.Name {
			return fmt.Errorf("bad incoming entry %q", a.Name)
		}
		return os.RemoveAll(filepath.Join(p.Incoming, a.Name))
	default:
		return fmt.Errorf("unknown action %d", a.Kind)
	}
}

func renameSynced(from, to, dir string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}

// ErrInstallPending means an install marker exists: the node must restart
// (and install) before it accepts another snapshot.
var ErrInstallPending = errors.New("a snapshot install is pending")

// BeginReceive prepares to receive snapshot name: it removes every other
// entry of the incoming directory (older partial or staged snapshots) and
// returns the directory to receive into. It refuses while an install is
// pending.
func BeginReceive(p Paths, name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	if err := os.MkdirAll(p.Incoming, 0o700); err != nil {
		return "", fmt.Errorf("receive state: %w", err)
	}
	if _, err := os.Stat(p.MarkerPath()); err == nil {
		return "", ErrInstallPending
	}
	ents, err := os.ReadDir(p.Incoming)
	if err != nil {
		return "", fmt.Errorf("receive state: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(p.Incoming, e.Name())); err != nil {
			return "", fmt.Errorf("receive state: %w", err)
		}
	}
	return p.Partial(name), nil
}

// Stage makes a received and verified snapshot available for install: its
// partial directory is renamed to its staged name.
func Stage(p Paths, name string) error {
	if err := renameSynced(p.Partial(name), p.Staged(name), p.Incoming); err != nil {
		return fmt.Errorf("stage snapshot %s: %w", name, err)
	}
	return nil
}

// IsStaged reports whether snapshot name is staged.
func IsStaged(p Paths, name string) bool {
	ok, err := isDir(p.Staged(name))
	return err == nil && ok
}
