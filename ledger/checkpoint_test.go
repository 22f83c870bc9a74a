package ledger

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckpoint(t *testing.T) {
	c := openChain(t, testGenesis(1))
	for i := 0; i < 5; i++ {
		c.pay(alice, bob, 1)
		c.pay(bob, carol, 2)
		c.commit()
	}
	// Push what we have into sstables, then write more that only the WAL
	// and memtable hold: the checkpoint must have both.
	if err := c.s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	c.pay(carol, dave, 3)
	c.commit()
	pending := c.pay(alice, dave, 4)

	cp := filepath.Join(t.TempDir(), "checkpoint")
	if err := c.s.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	// Sstables are hard links, not copies (checked before anything opens
	// the checkpoint, whose compactions may replace them).
	ssts, err := filepath.Glob(filepath.Join(cp, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ssts) == 0 {
		t.Fatal("checkpoint has no sstables")
	}
	for _, dst := range ssts {
		src := filepath.Join(c.s.Dir(), filepath.Base(dst))
		si, err := os.Stat(src)
		if err != nil {
			t.Fatalf("checkpoint sstable %s is not in the source: %v", filepath.Base(dst), err)
		}
		di, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(si, di) {
			t.Fatalf("%s is a copy, not a hard link", dst)
		}
	}

	height, hash := c.s.Head()
	digest := dbDigest(t, c.s.DB())
	applied := c.s.AppliedIndex()
	people := []Address{addrOf(alice), addrOf(bob), addrOf(carol), addrOf(dave)}
	balances := map[Address]Account{}
	for _, a := range people {
		balances[a], _ = c.s.Account(a)
	}

	// The source keeps going; the checkpoint does not see it.
	c.commit()

	s, err := Open(cp, testOptions(testGenesis(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h, hh := s.Head(); h != height || hh != hash || s.AppliedIndex() != applied {
		t.Fatalf("checkpoint head %d %s applied %d, want %d %s %d", h, hh, s.AppliedIndex(), height, hash, applied)
	}
	if dbDigest(t, s.DB()) != digest {
		t.Fatal("checkpoint content differs from the source at checkpoint time")
	}
	for _, a := range people {
		if got, _ := s.Account(a); got != balances[a] {
			t.Fatalf("account %s: %+v in the checkpoint, %+v in the source", a, got, balances[a])
		}
	}
	if st, _, _ := s.TxStatus(pending.ID()); st.State != StatePending || s.PoolSize() != 1 {
		t.Fatalf("pending tx %+v, pool %d", st, s.PoolSize())
	}

	if err := c.s.Checkpoint(cp); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("checkpoint into an existing directory: %v", err)
	}
}
