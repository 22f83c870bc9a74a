package ledger

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashSafety crashes a store at arbitrary moments while it applies
// entries (a crash clone of an in-memory file system keeps what was synced
// and a random part of what was not) and checks that every crashed database
// reopens with exactly the state the reference run had at its applied index
// (the applied index and the state move together), and with an applied
// index no lower than the last one followed by a synced write to the same
// database. Applies are not synced themselves: the node's raft storage
// syncs every write to the same database, and that makes every apply
// before it durable (one write-ahead log); the test stands in for raft
// with a synced LogData after every other entry.
func TestCrashSafety(t *testing.T) {
	_, entries := scenario(t, 6)
	cmds := make([]*Command, len(entries))
	for i, e := range entries {
		cmd, err := OpenEntry(testLedgerKey(), testChain, e)
		if err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}

	// Reference: the database digest after each index.
	ref := make([]Hash, len(cmds)+1)
	{
		o := testOptions(testGenesis(3))
		o.fs = vfs.NewMem()
		s, err := Open("db", o)
		if err != nil {
			t.Fatal(err)
		}
		ref[0] = dbDigest(t, s.DB())
		for i, cmd := range cmds {
			if _, err := s.Apply(uint64(i+1), cmd); err != nil {
				t.Fatal(err)
			}
			ref[i+1] = dbDigest(t, s.DB())
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	fs := vfs.NewCrashableMem()
	o := testOptions(testGenesis(3))
	o.fs = fs
	s, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	errc := make(chan error, 1)
	var synced atomic.Uint64 // applied index made durable by a synced write
	go func() {
		for i, cmd := range cmds {
			if _, err := s.Apply(uint64(i+1), cmd); err != nil {
				errc <- err
				return
			}
			if i%2 == 1 || i == len(cmds)-1 {
				if err := s.DB().LogData(nil, pebble.Sync); err != nil {
					errc <- err
					return
				}
				synced.Store(uint64(i + 1))
			}
		}
		errc <- nil
	}()
	type crash struct {
		fs  *vfs.MemFS
		min uint64 // made durable before the crash
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var crashes []crash
	var applyErr error
	for running := true; running; {
		select {
		case applyErr = <-errc:
			running = false
		default:
		}
		min := synced.Load()
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rng})
		crashes = append(crashes, crash{fs: clone, min: min})
	}
	if applyErr != nil {
		t.Fatal(applyErr)
	}
	if len(crashes) < 3 {
		t.Fatalf("only %d crash points", len(crashes))
	}
	seen := map[uint64]bool{}
	for i, c := range crashes {
		o := testOptions(testGenesis(3))
		o.fs = c.fs
		cs, err := Open("db", o)
		if err != nil {
			t.Fatalf("crash %d: reopen: %v", i, err)
		}
		applied := cs.AppliedIndex()
		if applied < c.min {
			t.Fatalf("crash %d: applied index %d, but %d was synced", i, applied, c.min)
		}
		if got := dbDigest(t, cs.DB()); got != ref[applied] {
			t.Fatalf("crash %d: state at applied index %d differs from the reference", i, applied)
		}
		seen[applied] = true
		if err := cs.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !seen[uint64(len(cmds))] {
		t.Fatal("no crash point after the last entry")
	}
	t.Logf("%d crash points, %d distinct applied indexes of %d", len(crashes), len(seen), len(cmds))
}
