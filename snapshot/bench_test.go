package snapshot

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// newBenchDB fills a Pebble DB with about size bytes of incompressible
// values and compacts it, so the benchmark measures a settled DB.
func newBenchDB(b *testing.B, size int64) (*fixture, int64) {
	b.Helper()
	base := b.TempDir()
	f := &fixture{base: base, dbDir: filepath.Join(base, "ledger"), root: filepath.Join(base, "snapshots")}
	f.db = openDB(b, f.dbDir)
	b.Cleanup(func() { f.db.Close() })
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	const valueSize = 1 << 10
	value := make([]byte, valueSize)
	n := int(size / valueSize)
	for i := 0; i < n; {
		batch := f.db.NewBatch()
		for j := 0; j < 1000 && i < n; j, i = j+1, i+1 {
			for k := 0; k < valueSize; k += 8 {
				v := rng.Uint64()
				for l := range 8 {
					value[k+l] = byte(v >> (8 * l))
				}
			}
			if err := batch.Set(key(i), value, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
	}
	f.flush(b)
	if err := f.db.Compact(context.Background(), key(0), key(n+1), true); err != nil {
		b.Fatal(err)
	}
	var total int64
	entries, err := os.ReadDir(f.dbDir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		total += info.Size()
	}
	return f, total
}

// BenchmarkCreateVsCopy compares a snapshot (checkpoint with hard-linked
// sstables, state file, SHA-256 manifest, syncs) with a plain full copy of
// the same ~100 MB DB directory. ns/op of "full-copy" divided by that of
// "snapshot" is the speed-up. "checkpoint-only" shows how much of a snapshot
// is the checkpoint itself; the rest is reading and hashing every byte for
// the manifest.
func BenchmarkCreateVsCopy(b *testing.B) {
	f, size := newBenchDB(b, 100<<20)
	b.Logf("DB size %.1f MB", float64(size)/1e6)
	b.Run("snapshot", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			name := fmt.Sprintf("bench-%d", i)
			if _, err := Create(context.Background(), CreateOptions{Root: f.root, Name: name, Checkpoint: f.checkpoint}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := os.RemoveAll(filepath.Join(f.root, name)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	// The checkpoint alone, without hashing: the O(files) part of a
	// snapshot.
	b.Run("checkpoint-only", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			dst := filepath.Join(f.base, fmt.Sprintf("checkpoint-%d", i))
			if err := f.checkpoint(dst); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := os.RemoveAll(dst); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("full-copy", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			dst := filepath.Join(f.base, fmt.Sprintf("copy-%d", i))
			if err := CopyDir(context.Background(), f.dbDir, dst); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := os.RemoveAll(dst); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

// BenchmarkVerify measures re-checking a ~100 MB snapshot (reads and hashes
// every byte).
func BenchmarkVerify(b *testing.B) {
	f, size := newBenchDB(b, 100<<20)
	if _, err := Create(context.Background(), CreateOptions{Root: f.root, Name: "v", Checkpoint: f.checkpoint}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(context.Background(), filepath.Join(f.root, "v")); err != nil {
			b.Fatal(err)
		}
	}
}
