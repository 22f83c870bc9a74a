package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// quietLogger drops Pebble's log lines; Pebble logs from background
// goroutines that may outlive a test, so t.Logf cannot be used.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// openDB opens (creating if needed) a Pebble DB in dir.
func openDB(tb testing.TB, dir string) *pebble.DB {
	tb.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		tb.Fatalf("open pebble %s: %v", dir, err)
	}
	return db
}

// fixture is a live Pebble DB with a state file, and a snapshot root on the
// same file system.
type fixture struct {
	base   string
	dbDir  string
	db     *pebble.DB
	state  string
	root   string
	closed bool
}

// newFixture makes a DB holding keys keys in at least two sstables plus a
// few writes that exist only in the WAL and memtable, and a state file.
func newFixture(tb testing.TB, keys int) *fixture {
	tb.Helper()
	base := tb.TempDir()
	f := &fixture{
		base:  base,
		dbDir: filepath.Join(base, "node", "ledger"),
		state: filepath.Join(base, "node", "distribute.state"),
		root:  filepath.Join(base, "snapshots"),
	}
	if err := os.MkdirAll(filepath.Dir(f.dbDir), 0o700); err != nil {
		tb.Fatal(err)
	}
	f.db = openDB(tb, f.dbDir)
	tb.Cleanup(func() {
		if !f.closed {
			f.db.Close()
		}
	})
	half := keys / 2
	f.put(tb, 0, half, "v1")
	f.flush(tb)
	f.put(tb, half, keys, "v1")
	f.flush(tb)
	// Unflushed: only the WAL has these, so a snapshot must carry the WAL.
	f.put(tb, keys, keys+100, "wal")
	if err := os.WriteFile(f.state, []byte(`{"next_block":42}`+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return f
}

func key(i int) []byte { return fmt.Appendf(nil, "k%08d", i) }

// put writes keys [from, to) with values tagged tag.
func (f *fixture) put(tb testing.TB, from, to int, tag string) {
	tb.Helper()
	b := f.db.NewBatch()
	for i := from; i < to; i++ {
		if err := b.Set(key(i), fmt.Appendf(nil, "%s-%d-%s", tag, i, strings.Repeat("x", 64)), nil); err != nil {
			tb.Fatal(err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		tb.Fatal(err)
	}
}

func (f *fixture) flush(tb testing.TB) {
	tb.Helper()
	if err := f.db.Flush(); err != nil {
		tb.Fatal(err)
	}
}

func (f *fixture) checkpoint(dst string) error {
	return f.db.Checkpoint(dst, pebble.WithFlushedWAL())
}

func (f *fixture) close(tb testing.TB) {
	tb.Helper()
	if err := f.db.Close(); err != nil {
		tb.Fatal(err)
	}
	f.closed = true
}

// create takes a snapshot of the fixture with its state file.
func (f *fixture) create(tb testing.TB, name string) *Manifest {
	tb.Helper()
	m, err := Create(context.Background(), CreateOptions{
		Root:       f.root,
		Name:       name,
		Checkpoint: f.checkpoint,
		StateFile:  f.state,
		Labels:     map[string]string{"chain_id": "test", "height": "7"},
	})
	if err != nil {
		tb.Fatalf("Create: %v", err)
	}
	return m
}

// dump returns every key and value of db.
func dump(tb testing.TB, db *pebble.DB) map[string]string {
	tb.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]string)
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// dumpDir opens the DB in dir, dumps it and closes it.
func dumpDir(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	db := openDB(tb, dir)
	defer db.Close()
	return dump(tb, db)
}

// treeSums maps every regular file under dir (slash path) to its SHA-256,
// and every directory to "dir", computed independently of the package.
func treeSums(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(raw)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// siblings lists the names in dir that start with prefix.
func siblings(tb testing.TB, dir, prefix string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// copySnapshot makes an independent copy (no shared inodes) of a snapshot,
// so a test can damage it without touching the live DB's sstables.
func copySnapshot(tb testing.TB, src string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), filepath.Base(src))
	if err := CopyDir(context.Background(), src, dst); err != nil {
		tb.Fatal(err)
	}
	return dst
}

// firstFile returns the first manifest entry whose path has the suffix.
func firstFile(tb testing.TB, m *Manifest, suffix string) File {
	tb.Helper()
	for _, f := range m.Files {
		if strings.HasSuffix(f.Path, suffix) {
			return f
		}
	}
	tb.Fatalf("no file with suffix %q in manifest", suffix)
	return File{}
}

// firstFileWithPrefix returns the first manifest entry whose path starts
// with prefix.
func firstFileWithPrefix(tb testing.TB, m *Manifest, prefix string) File {
	tb.Helper()
	for _, f := range m.Files {
		if strings.HasPrefix(f.Path, prefix) {
			return f
		}
	}
	tb.Fatalf("no file with prefix %q in manifest", prefix)
	return File{}
}
