package ledger

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestOpenInitialises(t *testing.T) {
	g := testGenesis(1)
	s, err := Open(t.TempDir(), Options{Genesis: g, LedgerKey: testLedgerKey(), SelfMeasurement: [32]byte{4}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b0, err := GenesisBlock(g)
	if err != nil {
		t.Fatal(err)
	}
	height, hash := s.Head()
	if height != 0 || hash != b0.Hash() || s.AppliedIndex() != 0 || s.HaltHeight() != 0 || s.PoolSize() != 0 {
		t.Fatalf("head %d %s applied %d", height, hash, s.AppliedIndex())
	}
	stored, err := s.Block(0)
	if err != nil || !bytes.Equal(stored.Encode(), b0.Encode()) {
		t.Fatalf("block 0: %v", err)
	}
	for _, a := range g.Accounts {
		got, err := s.Account(a.Address)
		if err != nil || got != (Account{Balance: a.Balance}) {
			t.Fatalf("account %s: %+v %v", a.Address, got, err)
		}
	}
	if got, _ := s.Account(addrOf(dave)); got != (Account{}) {
		t.Fatalf("unknown account %+v", got)
	}
	gh, _ := g.Hash()
	if s.Schema() != NewestSchema(DefaultMigrations()) || s.ChainID() != testChain || s.GenesisHash() != gh || s.SelfMeasurement() != [32]byte{4} {
		t.Fatal("accessors")
	}
	if s.Params().MaxPool != DefaultMaxPool {
		t.Fatalf("params %+v", s.Params())
	}
	if nodes, err := s.Nodes(); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes %v %v", nodes, err)
	}
}

// rawDB opens a ledger directory directly with Pebble.
func rawDB(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, pebbleOptions(nil, discardIfNil(nil), false))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestOpenRejections(t *testing.T) {
	type tcase struct {
		name    string
		prepare func(t *testing.T, dir string) // makes the existing database, if any
		opts    func() Options
		want    string
	}
	makeLedger := func(schema int) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			s, err := Open(dir, Options{Genesis: testGenesis(1), LedgerKey: testLedgerKey(), TargetSchema: schema})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	rewrite := func(schema int, edit func(db *pebble.DB) error) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			makeLedger(schema)(t, dir)
			db := rawDB(t, dir)
			if err := edit(db); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	defaults := func() Options { return testOptions(testGenesis(1)) }
	cases := []tcase{
		{name: "no genesis", opts: func() Options { return Options{} }, want: "no genesis"},
		{name: "invalid genesis", opts: func() Options {
			g := testGenesis(1)
			g.ChainID = "BAD"
			return Options{Genesis: g}
		}, want: "invalid genesis"},
		{name: "unknown target schema", opts: func() Options { return Options{Genesis: testGenesis(1), TargetSchema: 4} }, want: "target schema 4 is not one this binary knows (1 to 3)"},
		{name: "negative target schema", opts: func() Options { return Options{Genesis: testGenesis(1), TargetSchema: -1} }, want: "target schema -1"},
		{name: "other chain", prepare: makeLedger(0), opts: func() Options {
			g := testGenesis(1)
			g.ChainID = "other-chain"
			return testOptions(g)
		}, want: `database belongs to chain "test-chain", the genesis is for chain "other-chain"`},
		{name: "other genesis of the same chain", prepare: makeLedger(0), opts: func() Options {
			g := testGenesis(1)
			g.Accounts[0].Balance++
			return testOptions(g)
		}, want: "wrong genesis file"},
		{name: "schema older than the binary needs", prepare: makeLedger(1), opts: defaults,
			want: "schema is 1, this binary needs 3: run 'teeup-node migrate'"},
		{name: "schema newer than the target", prepare: makeLedger(2), opts: func() Options { return Options{Genesis: testGenesis(1), TargetSchema: 1} },
			want: "schema is 2, this binary needs 1: run 'teeup-node migrate'"},
		{name: "no ledger key for a new ledger that seals its records", opts: func() Options { return Options{Genesis: testGenesis(1)} }, want: "initialise ledger at schema 3: no ledger key"},
		{name: "schema newer than the binary", prepare: rewrite(3, func(db *pebble.DB) error { return db.Set(keySchema, u64(99), pebble.Sync) }), opts: defaults,
			want: "database schema 99 is newer than this binary supports (3)"},
		{name: "corrupt schema record", prepare: rewrite(3, func(db *pebble.DB) error { return db.Set(keySchema, []byte{1}, pebble.Sync) }), opts: defaults,
			want: "corrupt schema version"},
		{name: "missing head", prepare: rewrite(3, func(db *pebble.DB) error { return db.Delete(keyHead, pebble.Sync) }), opts: defaults,
			want: "meta record m/head is missing"},
		{name: "corrupt head", prepare: rewrite(3, func(db *pebble.DB) error { return db.Set(keyHead, []byte{1, 2}, pebble.Sync) }), opts: defaults,
			want: "corrupt ledger: m/head"},
		{name: "not a ledger", prepare: func(t *testing.T, dir string) {
			db := rawDB(t, dir)
			if err := db.Set([]byte("r/hardstate"), []byte{1}, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, opts: defaults, want: "not a teeup ledger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			var before Hash
			if tc.prepare != nil {
				db := rawDB(t, dir)
				before = dbDigest(t, db)
				db.Close()
			}
			s, err := Open(dir, tc.opts())
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("got %v, want an error naming the dir and containing %q", err, tc.want)
			}
			if tc.prepare != nil {
				db := rawDB(t, dir)
				defer db.Close()
				if dbDigest(t, db) != before {
					t.Fatal("a refused Open changed the database")
				}
			}
		})
	}
}

func TestLedgerNeverTouchesRaftPrefix(t *testing.T) {
	c := openChain(t, testGenesis(1))
	raft := map[string][]byte{
		RaftPrefix + "hardstate":  {1, 2, 3},
		RaftPrefix + "entry/0001": {4},
		RaftPrefix + "\xff":       {5},
	}
	for k, v := range raft {
		if err := c.s.DB().Set([]byte(k), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	c.pay(alice, bob, 3)
	c.commit()
	c.mustAccept(&Command{Kind: CmdHalt, HaltHeight: 9})
	got := map[string][]byte{}
	if err := scan(c.s.DB(), []byte(RaftPrefix), false, func(k, v []byte) (bool, error) {
		got[string(k)] = append([]byte(nil), v...)
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(raft) {
		t.Fatalf("r/ holds %d keys, want %d", len(got), len(raft))
	}
	for k, v := range raft {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%q changed", k)
		}
	}
	// Every ledger key uses a ledger prefix.
	it, err := c.s.DB().NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := string(it.Key())
		switch k[:2] {
		case prefixMeta, prefixBlock, prefixAccount, prefixStatus, prefixPool, prefixNode, prefixNodeKeyHistory, prefixHistory, RaftPrefix:
		default:
			t.Fatalf("key %q outside the documented prefixes", k)
		}
	}
}
