package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/teeup/teeup/internal/fsutil"
)

// HashCacheFile is the name, in a snapshot root, of the file that keeps
// the SHA-256 sums of sstables hashed ahead of a snapshot (Prehash), so
// that Create, inside a flag day's closed window, hashes only the
// sstables written since.
const HashCacheFile = ".sst-hashes.json"

// maxCacheEntries bounds the cache (a ledger has far fewer live
// sstables); a larger file on disk is ignored.
const maxCacheEntries = 100_000

// fileKey names one immutable file version: Pebble never rewrites an
// sstable (file numbers are not reused), so the same name, device, inode,
// size and modification time are the same bytes. A hard link in a
// checkpoint shares all of them with the live file.
type fileKey struct {
	Name  string `json:"name"`
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
}

type cacheEntry struct {
	fileKey
	SHA256 string `json:"sha256"`
}

// HashCache holds SHA-256 sums of sstables keyed by their file identity.
// It is a host-local optimisation, never a trust anchor: a wrong entry
// (a tampered cache file) can only make a snapshot's manifest disagree
// with its files, which Verify and Restore then refuse — it cannot make
// altered bytes pass, because a sum that is cached was computed from the
// file's own bytes when it was hashed. Safe for concurrent use.
type HashCache struct {
	path string
	mu   sync.Mutex
	sums map[fileKey]string
}

// OpenHashCache loads root's hash cache. A missing, unreadable or
// malformed cache file is an empty cache (it only saves work).
func OpenHashCache(root string) *HashCache {
	c := &HashCache{path: filepath.Join(root, HashCacheFile), sums: map[fileKey]string{}}
	raw, err := os.ReadFile(c.path)
	if err != nil {
		return c
	}
	var entries []cacheEntry
	if json.Unmarshal(raw, &entries) != nil || len(entries) > maxCacheEntries {
		return c
	}
	for _, e := range entries {
		if validateSum(e.SHA256) == nil {
			c.sums[e.fileKey] = e.SHA256
		}
	}
	return c
}

// keyOf returns the identity of the sstable at p, false for anything that
// is not an sstable (only sstables are immutable).
func keyOf(p string) (fileKey, bool) {
	if !strings.HasSuffix(p, ".sst") {
		return fileKey{}, false
	}
	info, err := os.Lstat(p)
	if err != nil || !info.Mode().IsRegular() {
		return fileKey{}, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{Name: filepath.Base(p), Dev: uint64(st.Dev), Ino: st.Ino, Size: info.Size(), MTime: info.ModTime().UnixNano()}, true
}

func (c *HashCache) lookup(p string) (string, bool) {
	if c == nil {
		return "", false
	}
	k, ok := keyOf(p)
	if !ok {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, ok := c.sums[k]
	return sum, ok
}

// retain drops every entry whose file identity is not in keep and returns
// how many it dropped.
func (c *HashCache) retain(keep map[fileKey]bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	dropped := 0
	for k := range c.sums {
		if !keep[k] {
			delete(c.sums, k)
			dropped++
		}
	}
	return dropped
}

// Save writes the cache atomically.
func (c *HashCache) Save() error {
	c.mu.Lock()
	entries := make([]cacheEntry, 0, len(c.sums))
	for k, s := range c.sums {
		entries = append(entries, cacheEntry{fileKey: k, SHA256: s})
	}
	c.mu.Unlock()
	raw, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(c.path, raw, 0o600); err != nil {
		return fmt.Errorf("save hash cache: %w", err)
	}
	return nil
}

// Prehash hashes every sstable in dir (a ledger DB or a checkpoint of one;
// sub-directories are not read) that the cache does not hold yet, drops
// entries of sstables no longer there, and saves the cache when that
// changed it (an agent runs it every 30 s). It returns the
// number of files and bytes it hashed. Run it ahead of a snapshot — before
// a flag day's activation height — so that the snapshot taken in the
// closed window hashes only what was written since.
func (c *HashCache) Prehash(ctx context.Context, dir string) (files int, bytes int64, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("prehash %s: %w", dir, err)
	}
	keep := map[fileKey]bool{}
	var todo []string
	var before []fileKey
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		k, ok := keyOf(p)
		if !ok {
			continue
		}
		keep[k] = true
		if _, ok := c.lookup(p); !ok {
			todo = append(todo, e.Name())
			before = append(before, k)
		}
	}
	results, err := hashFiles(ctx, dir, todo, false, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("prehash %s: %w", dir, err)
	}
	for i, r := range results {
		if r.err != nil {
			if errors.Is(r.err, fs.ErrNotExist) {
				continue // compacted away meanwhile
			}
			return files, bytes, fmt.Errorf("prehash %s: %w", todo[i], r.err)
		}
		c.storeIfStable(filepath.Join(dir, todo[i]), before[i], r)
		files++
		bytes += r.size
	}
	if c.retain(keep) == 0 && files == 0 {
		return 0, 0, nil // nothing changed: the saved cache is current
	}
	return files, bytes, c.Save()
}

// storeIfStable caches r (the hash of the file at p) only if the file did
// not change while it was hashed: the same identity before and after, and
// exactly its size hashed. An sstable Pebble is still writing grows, so
// its partial hash is never cached under the identity of its final bytes.
func (c *HashCache) storeIfStable(p string, before fileKey, r hashResult) {
	after, ok := keyOf(p)
	if !ok || after != before || r.size != after.Size {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sums[after] = r.sum
}
