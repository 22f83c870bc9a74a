package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestRestore(t *testing.T) {
	f := newFixture(t, 3000)
	want := dump(t, f.db)
	m := f.create(t, "pre-v2")
	snap := filepath.Join(f.root, "pre-v2")

	// The live node moves on: overwrites, deletes, new keys, compaction,
	// and a newer state file.
	f.put(t, 0, 500, "after")
	f.put(t, 5000, 5500, "after")
	for i := 1000; i < 1200; i++ {
		if err := f.db.Delete(key(i), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	f.flush(t)
	if err := f.db.Compact(context.Background(), key(0), key(99999), false); err != nil {
		t.Fatal(err)
	}
	changed := dump(t, f.db)
	if maps.Equal(changed, want) {
		t.Fatal("live DB did not change")
	}
	if err := os.WriteFile(f.state, []byte(`{"next_block":99}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.close(t)

	previous, err := Restore(context.Background(), RestoreOptions{Snapshot: snap, LedgerDir: f.dbDir, StateFile: f.state})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !strings.HasPrefix(filepath.Base(previous), "ledger.pre-restore-") || filepath.Dir(previous) != filepath.Dir(f.dbDir) {
		t.Errorf("previous = %q, want ledger.pre-restore-* beside %s", previous, f.dbDir)
	}
	if left := siblings(t, filepath.Dir(f.dbDir), "ledger.restore-"); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}

	// Restored sstables are links of the snapshot's; other files are copies.
	for _, file := range m.Files {
		rel, ok := strings.CutPrefix(file.Path, "ledger/")
		if !ok {
			continue
		}
		a, err := os.Stat(filepath.Join(snap, filepath.FromSlash(file.Path)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.Stat(filepath.Join(f.dbDir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if isSST := strings.HasSuffix(rel, ".sst"); os.SameFile(a, b) != isSST {
			t.Errorf("%s: linked = %v, want %v", rel, !isSST, isSST)
		}
	}

	state, err := os.ReadFile(f.state)
	if err != nil || string(state) != `{"next_block":42}`+"\n" {
		t.Errorf("restored state file = %q, %v", state, err)
	}
	prevStates := siblings(t, filepath.Dir(f.state), "distribute.state.pre-restore-")
	if len(prevStates) != 1 {
		t.Fatalf("previous state files = %v, want one", prevStates)
	}
	if raw, _ := os.ReadFile(filepath.Join(filepath.Dir(f.state), prevStates[0])); string(raw) != `{"next_block":99}`+"\n" {
		t.Errorf("previous state file = %q", raw)
	}

	// The restored DB holds exactly the snapshot's keys, and is writable.
	db := openDB(t, f.dbDir)
	if got := dump(t, db); !maps.Equal(got, want) {
		t.Errorf("restored DB has %d keys, snapshot had %d (equal=%v)", len(got), len(want), maps.Equal(got, want))
	}
	// Several rounds of writes and flushes rotate the WAL, so Pebble
	// recycles (renames and overwrites) obsolete log files: a linked log
	// would change the snapshot.
	for round := range 5 {
		for i := round; i < 3000; i += 3 {
			if err := db.Set(key(i), fmt.Appendf(nil, "written after restore %d", round), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		for i := round; i < 3000; i += 7 {
			if err := db.Delete(key(i), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(context.Background(), key(0), key(99999), false); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// ...and the snapshot is unharmed by it.
	if _, err := Verify(context.Background(), snap); err != nil {
		t.Fatalf("snapshot after writing to the restored DB: %v", err)
	}
	// The previous ledger is intact.
	if got := dumpDir(t, previous); !maps.Equal(got, changed) {
		t.Errorf("previous ledger has %d keys, want the %d of the live DB before restore", len(got), len(changed))
	}

	// Restoring again (a rollback retried) gives the snapshot's state again.
	previous2, err := Restore(context.Background(), RestoreOptions{Snapshot: snap, LedgerDir: f.dbDir, StateFile: f.state})
	if err != nil {
		t.Fatalf("second Restore: %v", err)
	}
	if previous2 == previous || !exists(previous) || !exists(previous2) {
		t.Errorf("previous dirs %q, %q: want two distinct kept dirs", previous, previous2)
	}
	if got := dumpDir(t, f.dbDir); !maps.Equal(got, want) {
		t.Error("second restore does not hold the snapshot's keys")
	}
	if _, err := Verify(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRejects(t *testing.T) {
	f := newFixture(t, 1000)
	f.create(t, "snap")
	goodSnap := filepath.Join(f.root, "snap")
	corrupt := copySnapshot(t, goodSnap)
	if err := os.WriteFile(filepath.Join(corrupt, StateFileName), []byte(`{"next_block":41}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.close(t)
	nodeDir := filepath.Dir(f.dbDir)

	tests := []struct {
		name    string
		opts    RestoreOptions
		ctx     func() context.Context
		want    string
		wantErr error
	}{
		{name: "corrupt snapshot", opts: RestoreOptions{Snapshot: corrupt, LedgerDir: f.dbDir, StateFile: f.state}, want: StateFileName + ": sha256", wantErr: ErrCorrupt},
		{name: "not a snapshot", opts: RestoreOptions{Snapshot: nodeDir, LedgerDir: f.dbDir, StateFile: f.state}, wantErr: fs.ErrNotExist},
		{name: "no snapshot", opts: RestoreOptions{LedgerDir: f.dbDir, StateFile: f.state}, want: "no snapshot directory"},
		{name: "no ledger dir", opts: RestoreOptions{Snapshot: goodSnap, StateFile: f.state}, want: "no ledger directory"},
		{name: "state file required", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: f.dbDir}, want: "no state file path"},
		{name: "ledger dir is root", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: "/", StateFile: f.state}, want: "no name to restore under"},
		{name: "ledger dir is dot dot", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: "..", StateFile: f.state}, want: "has no name"},
		{name: "ledger dir is a file", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: f.state, StateFile: f.state}, want: "is not a directory"},
		{name: "ledger parent missing", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: filepath.Join(nodeDir, "absent", "ledger"), StateFile: f.state}, wantErr: fs.ErrNotExist},
		{name: "state file directory missing", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: f.dbDir, StateFile: filepath.Join(nodeDir, "absent", "distribute.state")}, want: "state file directory", wantErr: fs.ErrNotExist},
		{name: "state file directory is a file", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: f.dbDir, StateFile: filepath.Join(f.state, "distribute.state")}, want: "is not a directory"},
		{name: "state file is a directory", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: f.dbDir, StateFile: f.dbDir}, want: "is not a regular file"},
		{name: "cancelled", opts: RestoreOptions{Snapshot: goodSnap, LedgerDir: f.dbDir, StateFile: f.state}, ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := treeSums(t, nodeDir)
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			previous, err := Restore(ctx, tt.opts)
			if err == nil {
				t.Fatal("Restore succeeded")
			}
			if tt.want != "" && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want containing %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if previous != "" {
				t.Errorf("previous = %q after a refused restore", previous)
			}
			if after := treeSums(t, nodeDir); !reflect.DeepEqual(before, after) {
				t.Error("refused restore changed the node directory")
			}
		})
	}
	if _, err := Verify(context.Background(), goodSnap); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreFreshHostAndDiscard(t *testing.T) {
	f := newFixture(t, 1000)
	want := dump(t, f.db)
	f.create(t, "snap")
	snap := filepath.Join(f.root, "snap")
	f.close(t)

	// A host with no ledger yet.
	fresh := filepath.Join(t.TempDir(), "ledger")
	freshState := filepath.Join(filepath.Dir(fresh), "distribute.state")
	previous, err := Restore(context.Background(), RestoreOptions{Snapshot: snap, LedgerDir: fresh, StateFile: freshState})
	if err != nil || previous != "" {
		t.Fatalf("Restore to a fresh host: previous %q, err %v", previous, err)
	}
	if got := dumpDir(t, fresh); !maps.Equal(got, want) {
		t.Error("fresh restore does not hold the snapshot's keys")
	}
	if left := siblings(t, filepath.Dir(fresh), "distribute.state.pre-restore-"); len(left) != 0 {
		t.Errorf("kept a previous state file that did not exist: %v", left)
	}

	// DiscardPrevious: nothing is kept beside the restored ledger.
	previous, err = Restore(context.Background(), RestoreOptions{Snapshot: snap, LedgerDir: f.dbDir, StateFile: f.state, DiscardPrevious: true})
	if err != nil || previous != "" {
		t.Fatalf("Restore with DiscardPrevious: previous %q, err %v", previous, err)
	}
	if left := siblings(t, filepath.Dir(f.dbDir), "ledger."); len(left) != 0 {
		t.Errorf("left beside the ledger: %v", left)
	}
	if left := siblings(t, filepath.Dir(f.state), "distribute.state."); len(left) != 0 {
		t.Errorf("left beside the state file: %v", left)
	}
	if got := dumpDir(t, f.dbDir); !maps.Equal(got, want) {
		t.Error("restore does not hold the snapshot's keys")
	}
}

// A snapshot taken without a state file restores "no state file": the
// current one is moved aside, not deleted.
func TestRestoreSnapshotWithoutState(t *testing.T) {
	f := newFixture(t, 500)
	_, err := Create(context.Background(), CreateOptions{
		Root: f.root, Name: "nostate", Checkpoint: f.checkpoint,
		StateFile: filepath.Join(f.base, "absent"), AllowMissingState: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.close(t)
	if _, err := Restore(context.Background(), RestoreOptions{Snapshot: filepath.Join(f.root, "nostate"), LedgerDir: f.dbDir, StateFile: f.state}); err != nil {
		t.Fatal(err)
	}
	if exists(f.state) {
		t.Error("state file still in place; the snapshot had none")
	}
	kept := siblings(t, filepath.Dir(f.state), "distribute.state.pre-restore-")
	if len(kept) != 1 {
		t.Fatalf("kept state files = %v", kept)
	}
	if raw, _ := os.ReadFile(filepath.Join(filepath.Dir(f.state), kept[0])); string(raw) != `{"next_block":42}`+"\n" {
		t.Errorf("kept state file = %q", raw)
	}
	// Without a state file path, a stateless snapshot restores fine too.
	if _, err := Restore(context.Background(), RestoreOptions{Snapshot: filepath.Join(f.root, "nostate"), LedgerDir: f.dbDir}); err != nil {
		t.Fatal(err)
	}
}

// An interrupted Restore leaves LedgerDir.restore-*; the next one removes it.
func TestRestoreRemovesLeftovers(t *testing.T) {
	f := newFixture(t, 500)
	f.create(t, "snap")
	f.close(t)
	leftover := f.dbDir + ".restore-123"
	if err := os.MkdirAll(filepath.Join(leftover, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	staleState := f.state + ".restore-tmp"
	if err := os.WriteFile(staleState, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	unrelated := f.dbDir + "-other.restore-1"
	if err := os.Mkdir(unrelated, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), RestoreOptions{Snapshot: filepath.Join(f.root, "snap"), LedgerDir: f.dbDir, StateFile: f.state}); err != nil {
		t.Fatal(err)
	}
	if exists(leftover) {
		t.Error("leftover restore directory not removed")
	}
	if exists(staleState) {
		t.Error("stale temporary state file not removed")
	}
	if raw, err := os.ReadFile(f.state); err != nil || string(raw) != `{"next_block":42}`+"\n" {
		t.Errorf("state file = %q, %v", raw, err)
	}
	if !exists(unrelated) {
		t.Error("unrelated directory removed")
	}
}
