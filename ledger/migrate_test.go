package ledger

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// schema1Ledger makes a schema-1 ledger with blocks of payments in a new
// directory, and returns the directory and the sealed entries applied.
func schema1Ledger(t *testing.T) (string, [][]byte) {
	t.Helper()
	_, entries := scenario(t, 5)
	dir := t.TempDir()
	s, err := Open(dir, Options{Genesis: testGenesis(3), LedgerKey: testLedgerKey(), TargetSchema: 1})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, s, entries)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, entries
}

// dirDigest hashes a closed ledger database.
func dirDigest(t *testing.T, dir string) Hash {
	t.Helper()
	db := rawDB(t, dir)
	defer db.Close()
	return dbDigest(t, db)
}

func schemaOf(t *testing.T, dir string) uint64 {
	t.Helper()
	db := rawDB(t, dir)
	defer db.Close()
	v, _, err := getFrom(db, keySchema)
	if err != nil {
		t.Fatal(err)
	}
	n, err := decodeU64("schema", v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func countPrefix(t *testing.T, dir, prefix string) int {
	t.Helper()
	db := rawDB(t, dir)
	defer db.Close()
	n := 0
	if err := scan(db, []byte(prefix), false, func(k, v []byte) (bool, error) { n++; return true, nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrate1To2BuildsTheIndex(t *testing.T) {
	dir, entries := schema1Ledger(t)
	if n := countPrefix(t, dir, prefixHistory); n != 0 {
		t.Fatalf("schema 1 Apply wrote %d history keys", n)
	}
	s1, err := Open(dir, Options{Genesis: testGenesis(3), TargetSchema: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.AccountHistory(addrOf(alice), 0); err == nil || !strings.Contains(err.Error(), "needs schema 2, the database is at 1") {
		t.Fatalf("AccountHistory at schema 1: %v", err)
	}
	s1.Close()

	from, to, steps, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey(), Target: schemaAccountHistory})
	if err != nil {
		t.Fatal(err)
	}
	if from != 1 || to != 2 || !reflect.DeepEqual(steps, []MigrationStep{{Version: 2, Name: "account-tx-index", Applied: true}}) {
		t.Fatalf("Migrate = %d, %d, %+v", from, to, steps)
	}

	// The migrated database is byte-identical to one that ran at schema 2
	// from the start, where Apply maintained the index.
	fresh := t.TempDir()
	schema2 := Options{Genesis: testGenesis(3), LedgerKey: testLedgerKey(), TargetSchema: schemaAccountHistory}
	fs, err := Open(fresh, schema2)
	if err != nil {
		t.Fatal(err)
	}
	feed(t, fs, entries)
	fs.Close()
	if dirDigest(t, dir) != dirDigest(t, fresh) {
		t.Fatal("migrated database differs from a schema-2 database fed the same entries")
	}

	s, err := Open(dir, schema2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Schema() != 2 {
		t.Fatalf("schema %d", s.Schema())
	}
	// Expected history, computed from the blocks.
	want := map[Address][]HistoryEntry{}
	head, _ := s.Head()
	if head != 5 {
		t.Fatalf("head %d", head)
	}
	for h := uint64(1); h <= head; h++ {
		txs, err := s.BlockTxs(h)
		if err != nil {
			t.Fatal(err)
		}
		for i, tx := range txs {
			p, _ := DecodePayment(tx.Payload)
			e := HistoryEntry{Height: h, Index: uint32(i), TxID: tx.ID(), From: tx.From, To: p.To, Amount: p.Amount}
			want[tx.From] = append([]HistoryEntry{e}, want[tx.From]...)
			if p.To != tx.From {
				want[p.To] = append([]HistoryEntry{e}, want[p.To]...)
			}
		}
	}
	total := 0
	for _, k := range []ed25519.PrivateKey{alice, bob, carol, dave} {
		got, err := s.AccountHistory(addrOf(k), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want[addrOf(k)]) {
			t.Fatalf("history of %s:\n got %+v\nwant %+v", addrOf(k), got, want[addrOf(k)])
		}
		total += len(got)
		if two, _ := s.AccountHistory(addrOf(k), 2); len(got) >= 2 && !reflect.DeepEqual(two, got[:2]) {
			t.Fatalf("limit 2: %+v", two)
		}
	}
	if total < 20 {
		t.Fatalf("only %d history entries", total)
	}
	// Apply keeps maintaining it.
	c := &chain{t: t, s: s, index: s.AppliedIndex(), clock: genesisTime.Add(1e6 * 1e9)}
	tx := c.pay(dave, carol, 1)
	c.commit()
	got, _ := s.AccountHistory(addrOf(carol), 1)
	if len(got) != 1 || got[0].TxID != tx.ID() || got[0].Height != 6 {
		t.Fatalf("new payment not indexed: %+v", got)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	dir, _ := schema1Ledger(t)
	if _, _, _, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey()}); err != nil {
		t.Fatal(err)
	}
	digest := dirDigest(t, dir)
	from, to, steps, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey()})
	if err != nil || from != 3 || to != 3 || len(steps) != 0 {
		t.Fatalf("re-run: %d %d %+v %v", from, to, steps, err)
	}
	if dirDigest(t, dir) != digest {
		t.Fatal("re-run changed the database")
	}
}

// filesDigest hashes every file of a directory, names and contents.
func filesDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestMigrateDryRunWritesNothing(t *testing.T) {
	dir, _ := schema1Ledger(t)
	before := filesDigest(t, dir)
	from, to, steps, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey(), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if from != 1 || to != 3 || !reflect.DeepEqual(steps, []MigrationStep{{Version: 2, Name: "account-tx-index"}, {Version: 3, Name: "encrypt-at-rest"}}) {
		t.Fatalf("dry run = %d %d %+v", from, to, steps)
	}
	if !reflect.DeepEqual(filesDigest(t, dir), before) {
		t.Fatal("dry run changed the directory")
	}
	if schemaOf(t, dir) != 1 {
		t.Fatal("dry run moved the schema")
	}
}

func TestMigrateFailuresLeaveSchema1Usable(t *testing.T) {
	boom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	failingUp := []Migration{
		{Version: 1, Name: "initial-layout"},
		{Version: 2, Name: "half-done", Up: func(ctx context.Context, db *pebble.DB, b *pebble.Batch) error {
			if err := b.Set([]byte(prefixHistory+"partial"), []byte{1}, nil); err != nil {
				return err
			}
			return boom
		}},
	}
	cases := []struct {
		name string
		ctx  context.Context
		opts MigrateOptions
		want string
	}{
		{"before hook fails", context.Background(), MigrateOptions{Key: testLedgerKey(), Before: func(m Migration) error {
			if m.Version == 2 {
				return boom
			}
			return nil
		}}, "boom"},
		{"migration fails after writing to its batch", context.Background(), MigrateOptions{Migrations: failingUp}, "boom"},
		{"no ledger key", context.Background(), MigrateOptions{}, "no ledger key"},
		{"wrong ledger key", context.Background(), MigrateOptions{Key: LedgerKey{9}}, "message authentication failed"},
		{"cancelled", cancelled, MigrateOptions{Key: testLedgerKey()}, "context canceled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := schema1Ledger(t)
			digest := dirDigest(t, dir)
			_, to, _, err := Migrate(tc.ctx, dir, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "stays at schema 1") {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if to != 1 {
				t.Fatalf("reached %d", to)
			}
			if dirDigest(t, dir) != digest {
				t.Fatal("a failed migration changed the database")
			}
			// Still usable at schema 1.
			s, err := Open(dir, Options{Genesis: testGenesis(3), LedgerKey: testLedgerKey(), TargetSchema: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := &chain{t: t, s: s, index: s.AppliedIndex(), clock: genesisTime.Add(1e6 * 1e9)}
			tx := c.pay(dave, carol, 1)
			if res := c.commit(); len(res.TxIDs) == 0 || res.TxIDs[len(res.TxIDs)-1] != tx.ID() {
				t.Fatalf("block %+v", res)
			}
		})
	}
}

func TestMigrateRejections(t *testing.T) {
	up := func(context.Context, *pebble.DB, *pebble.Batch) error { return nil }
	migrated := func(t *testing.T) string {
		dir, _ := schema1Ledger(t)
		if _, _, _, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey()}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	notLedger := func(t *testing.T) string {
		dir := t.TempDir()
		db := rawDB(t, dir)
		db.Set([]byte("r/x"), []byte{1}, pebble.Sync)
		db.Close()
		return dir
	}
	cases := []struct {
		name string
		dir  func(t *testing.T) string
		opts MigrateOptions
		want string
	}{
		{"downgrade", migrated, MigrateOptions{Target: 1}, "downgrade"},
		{"downgrade explains the way back", migrated, MigrateOptions{Target: 1}, "restore a snapshot to go back"},
		{"target beyond the registry", migrated, MigrateOptions{Target: 4}, "target schema 4 is not in the registry"},
		{"database newer than the registry", migrated, MigrateOptions{Migrations: DefaultMigrations()[:1]}, "database schema 3 is newer than this binary supports (1)"},
		{"empty registry", migrated, MigrateOptions{Migrations: []Migration{}}, "registry is empty"},
		{"registry gap", migrated, MigrateOptions{Migrations: []Migration{{Version: 1, Name: "a"}, {Version: 3, Name: "c", Up: up}}}, "entry 1 has version 3, want 2"},
		{"registry without name", migrated, MigrateOptions{Migrations: []Migration{{Version: 1}}}, "version 1 has no name"},
		{"registry without Up", migrated, MigrateOptions{Migrations: []Migration{{Version: 1, Name: "a"}, {Version: 2, Name: "b"}}}, `version 2 "b" has no Up`},
		{"missing directory", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, MigrateOptions{}, "no such file or directory"},
		{"empty directory", func(t *testing.T) string { return t.TempDir() }, MigrateOptions{}, "database does not exist"},
		{"not a ledger", notLedger, MigrateOptions{}, "not a teeup ledger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			desc, _ := pebble.Peek(dir, vfs.Default)
			hasDB := desc != nil && desc.Exists
			var logical Hash
			if hasDB {
				logical = dirDigest(t, dir)
			}
			var files map[string]string
			if _, err := os.Stat(dir); err == nil {
				files = filesDigest(t, dir)
			}
			_, _, _, err := Migrate(context.Background(), dir, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if hasDB && dirDigest(t, dir) != logical {
				t.Fatal("a refused migration changed the database")
			}
			if !hasDB && files != nil && !reflect.DeepEqual(filesDigest(t, dir), files) {
				t.Fatal("a refused migration wrote files")
			}
		})
	}
}

func TestMigrateWhileOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Genesis: testGenesis(1), TargetSchema: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, _, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey()}); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("Migrate of an open ledger: %v", err)
	}
}

func TestMigrateEmptyLedgerAndCustomTarget(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Genesis: testGenesis(1), TargetSchema: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	var ran []int
	ms := append(DefaultMigrations(), Migration{Version: 4, Name: "four", Up: func(ctx context.Context, db *pebble.DB, b *pebble.Batch) error {
		if _, ok := LedgerKeyFromContext(ctx); !ok {
			return errors.New("no key in the context")
		}
		return b.Set([]byte(GovernancePrefix+"four"), []byte{4}, nil)
	}})
	before := func(m Migration) error { ran = append(ran, m.Version); return nil }
	from, to, steps, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey(), Migrations: ms, Target: 2, Before: before})
	if err != nil || from != 1 || to != 2 || len(steps) != 1 || !reflect.DeepEqual(ran, []int{2}) {
		t.Fatalf("to 2: %d %d %+v %v %v", from, to, steps, ran, err)
	}
	from, to, steps, err = Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey(), Migrations: ms, Before: before})
	if err != nil || from != 2 || to != 4 || len(steps) != 2 || steps[1].Name != "four" || !reflect.DeepEqual(ran, []int{2, 3, 4}) {
		t.Fatalf("to 4: %d %d %+v %v %v", from, to, steps, ran, err)
	}
	if schemaOf(t, dir) != 4 || countPrefix(t, dir, GovernancePrefix) != 1 {
		t.Fatal("migration 4 not committed")
	}
	// This binary's Open refuses a database newer than it knows.
	if _, err := Open(dir, Options{Genesis: testGenesis(1)}); err == nil || !strings.Contains(err.Error(), "database schema 4 is newer than this binary supports (3)") {
		t.Fatalf("Open: %v", err)
	}
}

func TestMigrateMissingDirCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	if _, _, _, err := Migrate(context.Background(), dir, MigrateOptions{}); err == nil {
		t.Fatal("Migrate of a missing directory succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Migrate left %s behind: %v", dir, err)
	}
}

func TestMigrateEmptyDirWritesNothing(t *testing.T) {
	dir := t.TempDir()
	if _, _, _, err := Migrate(context.Background(), dir, MigrateOptions{}); err == nil || !strings.Contains(err.Error(), "database does not exist") {
		t.Fatalf("Migrate of an empty directory: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Migrate wrote %d files into an empty directory", len(entries))
	}
}

// TestMigrateUpToDateWritesNothing: a ledger already at the target schema
// is found so read-only (every restart, an enclave-only flag day): not a
// byte of its directory changes — a writable open would flush what it
// replays, start a new log and wait for the compactions it starts.
func TestMigrateUpToDateWritesNothing(t *testing.T) {
	dir, _ := schema1Ledger(t)
	if _, _, _, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey()}); err != nil {
		t.Fatal(err)
	}
	before := filesDigest(t, dir)
	from, to, steps, err := Migrate(context.Background(), dir, MigrateOptions{Key: testLedgerKey()})
	if err != nil || from != 3 || to != 3 || len(steps) != 0 {
		t.Fatalf("up to date: %d %d %+v %v", from, to, steps, err)
	}
	if !reflect.DeepEqual(filesDigest(t, dir), before) {
		t.Fatal("Migrate of an up-to-date ledger changed its directory")
	}
}
