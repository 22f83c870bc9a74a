package snapshot

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sstBytes is the total size of the live DB's sstables.
func sstBytes(t *testing.T, dir string) (n int64, files int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".sst") {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			n += info.Size()
			files++
		}
	}
	return n, files
}

// TestPrehashSparesTheSnapshotItsSstables: after Prehash of the live DB,
// a snapshot hashes none of the sstables it hard-links (only what was
// written since and the copied files), its manifest still lists every
// file with its real sum, and it verifies; an sstable flushed after the
// prehash is hashed by the snapshot and cached for the next one.
func TestPrehashSparesTheSnapshotItsSstables(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3000)
	cache := OpenHashCache(f.root)
	live, nsst := sstBytes(t, f.dbDir)
	files, hashed, err := cache.Prehash(ctx, f.dbDir)
	if err != nil || files != nsst || hashed != live {
		t.Fatalf("Prehash = %d files %d bytes, %v; want %d files %d bytes", files, hashed, err, nsst, live)
	}
	// Again: nothing new to hash.
	if files, _, err := cache.Prehash(ctx, f.dbDir); err != nil || files != 0 {
		t.Fatalf("second Prehash hashed %d files (%v), want 0", files, err)
	}

	f.put(t, 5000, 6000, "late")
	f.flush(t) // one sstable the prehash has not seen
	var total int64
	m, err := Create(ctx, CreateOptions{Root: f.root, Name: "s1", Checkpoint: f.checkpoint, HashCache: OpenHashCache(f.root),
		Progress: func(_, tot int64) { total = tot }})
	if err != nil {
		t.Fatal(err)
	}
	var all int64
	for _, file := range m.Files {
		all += file.Size
	}
	if total >= all-live+1 || total == 0 {
		t.Fatalf("the snapshot hashed %d bytes of %d; the %d prehashed sstable bytes should be spared", total, all, live)
	}
	if _, err := Verify(ctx, filepath.Join(f.root, "s1")); err != nil {
		t.Fatalf("a snapshot made with cached sums does not verify: %v", err)
	}
	sums := treeSums(t, filepath.Join(f.root, "s1"))
	for _, file := range m.Files {
		if sums[file.Path] != file.SHA256 {
			t.Errorf("%s: manifest %s, file %s", file.Path, file.SHA256, sums[file.Path])
		}
	}
	// The late sstable is cached now: a second snapshot hashes no sstable.
	m2, err := Create(ctx, CreateOptions{Root: f.root, Name: "s2", Checkpoint: f.checkpoint, HashCache: OpenHashCache(f.root),
		Progress: func(_, tot int64) { total = tot }})
	if err != nil {
		t.Fatal(err)
	}
	var nonSST int64
	for _, file := range m2.Files {
		if !strings.HasSuffix(file.Path, ".sst") {
			nonSST += file.Size
		}
	}
	if total != nonSST {
		t.Fatalf("second snapshot hashed %d bytes, want only the %d bytes of non-sstable files", total, nonSST)
	}
}

// TestHashCacheNeverBlessesOtherBytes: a tampered cache (a wrong sum for
// a live sstable) makes the snapshot fail verification — it cannot make
// other bytes pass; a malformed cache file is an empty cache; a file that
// grows while it is hashed is not cached.
func TestHashCacheNeverBlessesOtherBytes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 3000)
	cache := OpenHashCache(f.root)
	if _, _, err := cache.Prehash(ctx, f.dbDir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(f.root, HashCacheFile))
	if err != nil {
		t.Fatal(err)
	}
	var entries []cacheEntry
	if err := json.Unmarshal(raw, &entries); err != nil || len(entries) == 0 {
		t.Fatalf("cache file: %d entries, %v", len(entries), err)
	}
	entries[0].SHA256 = strings.Repeat("0", 64)
	raw, _ = json.Marshal(entries)
	if err := os.WriteFile(filepath.Join(f.root, HashCacheFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(ctx, CreateOptions{Root: f.root, Name: "bad", Checkpoint: f.checkpoint, HashCache: OpenHashCache(f.root)}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, filepath.Join(f.root, "bad")); err == nil {
		t.Fatal("a snapshot whose manifest took a tampered cached sum verifies")
	}

	if err := os.WriteFile(filepath.Join(f.root, HashCacheFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := OpenHashCache(f.root); len(c.sums) != 0 {
		t.Fatalf("a malformed cache loaded %d entries", len(c.sums))
	}

	// Growing while hashed: the identity before differs from after.
	p := filepath.Join(t.TempDir(), "000999.sst")
	if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, ok := keyOf(p)
	if !ok {
		t.Fatal("no key for an .sst file")
	}
	if err := os.WriteFile(p, []byte("partial and more"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := OpenHashCache(t.TempDir())
	c.storeIfStable(p, before, hashResult{size: 7, sum: strings.Repeat("a", 64)})
	if _, ok := c.lookup(p); ok {
		t.Fatal("a file that changed while it was hashed was cached")
	}
}

// FuzzOpenHashCache: any cache file content loads without panicking, and
// only entries with well-formed sums are kept.
func FuzzOpenHashCache(f *testing.F) {
	f.Add([]byte(`[{"name":"000001.sst","dev":1,"ino":2,"size":3,"mtime_ns":4,"sha256":"` + strings.Repeat("ab", 32) + `"}]`))
	f.Add([]byte(`[{"sha256":"XYZ"}]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, HashCacheFile), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		c := OpenHashCache(root)
		for k, sum := range c.sums {
			if validateSum(sum) != nil {
				t.Fatalf("entry %+v kept with a malformed sum %q", k, sum)
			}
		}
	})
}
