package statetransfer

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func acts(kinds ...ActionKind) []Action {
	out := make([]Action, 0, len(kinds))
	for _, k := range kinds {
		out = append(out, Action{Kind: k})
	}
	return out
}

func TestPlan(t *testing.T) {
	m := &Marker{Staged: SnapshotName(10, 2), Index: 10, Term: 2}
	cases := []struct {
		name    string
		obs     Observation
		want    []Action
		outcome Outcome
		err     error
	}{
		{"clean", Observation{Ledger: true}, nil, OutcomeUnchanged, nil},
		{"new node", Observation{}, nil, OutcomeUnchanged, nil},
		{"leftovers without marker", Observation{Ledger: true, Old: true, Incoming: []string{"snap-x.partial", "snap-y"}},
			append(acts(ActRemoveOld), Action{ActRemoveIncoming, "snap-x.partial"}, Action{ActRemoveIncoming, "snap-y"}), OutcomeUnchanged, nil},
		{"swap half done without marker", Observation{Old: true}, acts(ActRestoreOld), OutcomeRestored, nil},
		{"marker before commit", Observation{Ledger: true, Marker: m, Staged: true},
			acts(ActPrepare, ActRetireLedger, ActPromoteStaged, ActRemoveOld, ActRemoveMarker), OutcomeInstalled, nil},
		{"marker before commit, stale old", Observation{Ledger: true, Old: true, Marker: m, Staged: true},
			acts(ActRemoveOld, ActPrepare, ActRetireLedger, ActPromoteStaged, ActRemoveOld, ActRemoveMarker), OutcomeInstalled, nil},
		{"after commit", Observation{Old: true, Marker: m, Staged: true},
			acts(ActPromoteStaged, ActRemoveOld, ActRemoveMarker), OutcomeInstalled, nil},
		{"first state", Observation{Marker: m, Staged: true}, acts(ActPrepare, ActPromoteStaged, ActRemoveMarker), OutcomeInstalled, nil},
		{"promoted, old left", Observation{Ledger: true, Old: true, Marker: m}, acts(ActRemoveOld, ActRemoveMarker), OutcomeUnchanged, nil},
		{"promoted", Observation{Ledger: true, Marker: m}, acts(ActRemoveMarker), OutcomeUnchanged, nil},
		{"staged copy vanished after commit", Observation{Old: true, Marker: m}, acts(ActRestoreOld, ActRemoveMarker), OutcomeRestored, nil},
		{"nothing at all", Observation{Marker: m}, nil, 0, ErrNoLedger},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, outcome, err := Plan(tc.obs)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) || outcome != tc.outcome {
				t.Fatalf("plan %v (%v), want %v (%v)", got, outcome, tc.want, tc.outcome)
			}
		})
	}
}

// fixture lays out a data dir with a live ledger "old" and a staged
// snapshot "new"; each ledger is a directory holding a file named after it.
type fixture struct {
	t *testing.T
	p Paths
	m Marker
}

func newFixture(t *testing.T) *fixture {
	root := t.TempDir()
	p := Paths{Ledger: filepath.Join(root, "ledger"), Incoming: filepath.Join(root, "incoming")}
	f := &fixture{t: t, p: p, m: Marker{Staged: SnapshotName(10, 2), Index: 10, Term: 2, Raft: []byte("raft")}}
	writeFiles(t, p.Ledger, map[string]string{"STATE": "old"})
	dir, err := BeginReceive(p, f.m.Staged)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"STATE": "new"})
	if err := Stage(p, f.m.Staged); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) state() string {
	b, err := os.ReadFile(filepath.Join(f.p.Ledger, "STATE"))
	if err != nil {
		f.t.Fatalf("live ledger: %v", err)
	}
	return string(b)
}

func (f *fixture) prepare(dir string, m Marker) error {
	// Idempotent, as the real one: (re)write the raft record.
	return os.WriteFile(filepath.Join(dir, "RAFT"), m.Raft, 0o600)
}

func (f *fixture) clean() {
	f.t.Helper()
	for _, p := range []string{f.p.Old(), f.p.MarkerPath()} {
		if _, err := os.Stat(p); err == nil {
			f.t.Fatalf("%s left behind", p)
		}
	}
	ents, _ := os.ReadDir(f.p.Incoming)
	if len(ents) != 0 {
		f.t.Fatalf("incoming not empty: %v", ents)
	}
}

var errCrash = errors.New("crash")

// TestRecoverCrashAfterEveryAction kills the install after each action's
// effect (before anything records it) and recovers: the result is always
// exactly the old state or the new one, and once the marker is written it
// is the new one.
func TestRecoverCrashAfterEveryAction(t *testing.T) {
	for crashAt := 1; crashAt <= 6; crashAt++ {
		f := newFixture(t)
		if err := WriteMarker(f.p, f.m); err != nil {
			t.Fatal(err)
		}
		n := 0
		_, _, err := Recover(f.p, RecoverOptions{Prepare: f.prepare, AfterAction: func(a Action) error {
			n++
			if n == crashAt {
				return errCrash
			}
			return nil
		}})
		if crashAt <= 5 && !errors.Is(err, errCrash) {
			t.Fatalf("crash %d: %v", crashAt, err)
		}
		outcome, m, err := Recover(f.p, RecoverOptions{Prepare: f.prepare})
		if err != nil {
			t.Fatalf("crash %d: recover: %v", crashAt, err)
		}
		if got := f.state(); got != "new" {
			t.Fatalf("crash after action %d: live ledger is %q", crashAt, got)
		}
		if b, err := os.ReadFile(filepath.Join(f.p.Ledger, "RAFT")); err != nil || string(b) != "raft" {
			t.Fatalf("crash after action %d: raft state not prepared: %v", crashAt, err)
		}
		_ = outcome
		_ = m
		f.clean()
	}
}

func TestRecoverWithoutMarkerKeepsOldState(t *testing.T) {
	f := newFixture(t)
	outcome, m, err := Recover(f.p, RecoverOptions{Prepare: f.prepare})
	if err != nil || outcome != OutcomeUnchanged || m != nil {
		t.Fatalf("outcome %v, marker %v, err %v", outcome, m, err)
	}
	if f.state() != "old" {
		t.Fatal("the staged snapshot replaced the ledger without a marker")
	}
	f.clean()
}

func TestRecoverReportsInstall(t *testing.T) {
	f := newFixture(t)
	if err := WriteMarker(f.p, f.m); err != nil {
		t.Fatal(err)
	}
	outcome, m, err := Recover(f.p, RecoverOptions{Prepare: f.prepare})
	if err != nil || outcome != OutcomeInstalled || m == nil || m.Index != 10 || m.Term != 2 {
		t.Fatalf("outcome %v, marker %+v, err %v", outcome, m, err)
	}
	f.clean()
}

func TestBeginReceiveRefusesWhileInstallPending(t *testing.T) {
	f := newFixture(t)
	if err := WriteMarker(f.p, f.m); err != nil {
		t.Fatal(err)
	}
	if _, err := BeginReceive(f.p, SnapshotName(20, 3)); !errors.Is(err, ErrInstallPending) {
		t.Fatalf("got %v, want ErrInstallPending", err)
	}
}

func TestBeginReceiveClearsOlderSnapshots(t *testing.T) {
	f := newFixture(t)
	dir, err := BeginReceive(f.p, SnapshotName(20, 3))
	if err != nil {
		t.Fatal(err)
	}
	if IsStaged(f.p, f.m.Staged) {
		t.Fatal("an older staged snapshot survived a new transfer")
	}
	if filepath.Dir(dir) != f.p.Incoming {
		t.Fatalf("receive dir %s", dir)
	}
}

func TestMarkerRejectsBadStagedName(t *testing.T) {
	f := newFixture(t)
	if err := WriteMarker(f.p, Marker{Staged: "../ledger"}); err == nil {
		t.Fatal("a marker naming a path was written")
	}
	if err := os.WriteFile(f.p.MarkerPath(), []byte(`{"staged":"../x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Recover(f.p, RecoverOptions{Prepare: f.prepare}); err == nil {
		t.Fatal("a marker naming a path was followed")
	}
}
