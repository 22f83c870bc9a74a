package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
)

// CreateOptions configures Create.
type CreateOptions struct {
	// Root is the directory holding named snapshots; it is created if
	// missing.
	Root string
	// Name is the snapshot's name: 1 to 128 characters from [A-Za-z0-9._-],
	// not "." or "..", not containing ".partial-".
	Name string
	// Checkpoint writes a consistent checkpoint of the ledger DB into dst,
	// which does not exist yet and is on the same file system as Root (so
	// that sstables can be hard-linked). For Pebble:
	// db.Checkpoint(dst, pebble.WithFlushedWAL()).
	Checkpoint func(dst string) error
	// StateFile is the path of the distribution state file to capture; ""
	// captures none. A missing file is an error unless AllowMissingState.
	StateFile string
	// AllowMissingState makes a missing StateFile acceptable: the snapshot
	// then records that no state file was captured.
	AllowMissingState bool
	// Labels are facts about the captured state recorded in the manifest
	// (chain_id, height, head_hash, schema, mrenclave, version ...).
	Labels map[string]string
	// Progress, if not nil, is called with the number of bytes hashed so
	// far and the total to hash. Files are hashed concurrently, but calls
	// are serialized and done never decreases.
	Progress func(done, total int64)
	// HashCache, if not nil, supplies the sums of sstables hashed before
	// (Prehash, or an earlier snapshot): a checkpoint's sstables are hard
	// links to the live DB's, so an unchanged one is not read again. The
	// sstables this snapshot hashes are added to it and it is saved.
	HashCache *HashCache
}

// Create takes the snapshot Root/Name: a checkpoint of the ledger DB, a copy
// of the state file, and a manifest of their SHA-256 sums. It is atomic:
// the snapshot is built in Root/.Name.partial-RANDOM, synced, and renamed
// into place, so Root/Name is never incomplete. It is idempotent: if
// Root/Name exists, verifies, and carries the same labels, Create returns
// its manifest without calling Checkpoint; if it exists but does not
// verify, Create fails and leaves it alone. Leftover partial directories of
// the same name are removed first. On error, nothing is left at Root/Name.
func Create(ctx context.Context, opts CreateOptions) (*Manifest, error) {
	m, err := create(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("create snapshot %q in %s: %w", opts.Name, opts.Root, err)
	}
	return m, nil
}

func create(ctx context.Context, opts CreateOptions) (*Manifest, error) {
	if opts.Root == "" {
		return nil, errors.New("no root directory given")
	}
	if err := validateName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Checkpoint == nil {
		return nil, errors.New("no checkpoint function given")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	final := filepath.Join(opts.Root, opts.Name)
	if _, err := os.Lstat(final); err == nil {
		return existing(ctx, final, opts)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// Check the state file before doing any work.
	captureState := false
	if opts.StateFile != "" {
		info, err := os.Stat(opts.StateFile)
		switch {
		case errors.Is(err, fs.ErrNotExist) && opts.AllowMissingState:
		case err != nil:
			return nil, fmt.Errorf("state file: %w", err)
		case !info.Mode().IsRegular():
			return nil, fmt.Errorf("state file %s is not a regular file", opts.StateFile)
		default:
			captureState = true
		}
	}
	if err := os.MkdirAll(opts.Root, 0o700); err != nil {
		return nil, err
	}
	if err := removeLeftovers(opts.Root, "."+opts.Name+partialMarker); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(opts.Root, "."+opts.Name+partialMarker)
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()

	if err := opts.Checkpoint(filepath.Join(tmp, LedgerSubdir)); err != nil {
		return nil, fmt.Errorf("checkpoint ledger: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &Manifest{
		Name:   opts.Name,
		Labels: maps.Clone(opts.Labels),
		Ledger: LedgerSubdir,
	}
	if captureState {
		info, err := os.Stat(opts.StateFile)
		if err != nil {
			return nil, fmt.Errorf("state file: %w", err)
		}
		if _, err := copyFile(ctx, opts.StateFile, filepath.Join(tmp, StateFileName), info.Mode().Perm()); err != nil {
			return nil, fmt.Errorf("copy state file %s: %w", opts.StateFile, err)
		}
		m.StateFile = StateFileName
	}
	if info, err := os.Stat(filepath.Join(tmp, LedgerSubdir)); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("checkpoint function did not create directory %s", LedgerSubdir)
	}
	t, err := scanTree(tmp)
	if err != nil {
		return nil, err
	}
	files, err := hashTree(ctx, tmp, t.files, opts.Progress, opts.HashCache)
	if err != nil {
		return nil, err
	}
	m.Files = files
	m.CreatedAt = time.Now().UTC()
	// What the checkpoint wrote must make a snapshot that verifies: only
	// files under ledger/, no empty directories.
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("checkpoint result: %w", err)
	}
	if err := checkTree(m, t); err != nil {
		return nil, fmt.Errorf("checkpoint result: %w", err)
	}
	if err := writeManifest(tmp, m); err != nil {
		return nil, err
	}
	if err := syncTree(tmp); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	done = true
	if err := fsutil.SyncDir(opts.Root); err != nil {
		return nil, err
	}
	return m, nil
}

// existing handles Create for a name that already exists.
func existing(ctx context.Context, dir string, opts CreateOptions) (*Manifest, error) {
	m, err := Verify(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("%s exists and does not verify; refusing to overwrite it: %w", dir, err)
	}
	if m.Name != opts.Name {
		return nil, fmt.Errorf("%s exists but its manifest names %q", dir, m.Name)
	}
	if !maps.Equal(m.Labels, opts.Labels) {
		return nil, fmt.Errorf("%s exists with different labels %v (want %v): %w; refusing to reuse it", dir, m.Labels, opts.Labels, ErrConflict)
	}
	if opts.StateFile != "" && !opts.AllowMissingState && m.StateFile == "" {
		return nil, fmt.Errorf("%s exists without a state file, but one is required: %w", dir, ErrConflict)
	}
	return m, nil
}

// hashTree hashes and syncs the files (slash paths relative to dir) and
// returns their manifest entries, in the order given. Sstables whose sum
// cache holds are neither read nor synced (a hard link to a live sstable
// Pebble synced when it wrote it); the ones hashed are added to cache.
func hashTree(ctx context.Context, dir string, paths []string, progress func(done, total int64), cache *HashCache) ([]File, error) {
	files := make([]File, len(paths))
	var todo []string
	var todoIdx []int
	var before []fileKey
	var total int64
	for i, p := range paths {
		full := filepath.Join(dir, filepath.FromSlash(p))
		info, err := os.Stat(full)
		if err != nil {
			return nil, err
		}
		if sum, ok := cache.lookup(full); ok {
			files[i] = File{Path: p, Size: info.Size(), SHA256: sum}
			continue
		}
		k, _ := keyOf(full)
		todo, todoIdx, before = append(todo, p), append(todoIdx, i), append(before, k)
		total += info.Size()
	}
	var done int64
	var add func(int64)
	if progress != nil {
		progress(0, total)
		add = func(n int64) {
			done += n
			progress(done, total)
		}
	}
	results, err := hashFiles(ctx, dir, todo, true, add)
	if err != nil {
		return nil, err
	}
	for j, r := range results {
		if r.err != nil {
			return nil, fmt.Errorf("hash %s: %w", todo[j], r.err)
		}
		files[todoIdx[j]] = File{Path: todo[j], Size: r.size, SHA256: r.sum}
		if cache != nil && before[j] != (fileKey{}) {
			cache.storeIfStable(filepath.Join(dir, filepath.FromSlash(todo[j])), before[j], r)
		}
	}
	if cache != nil {
		if err := cache.Save(); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// tree is the content of a snapshot directory: slash paths relative to it,
// sorted.
type tree struct {
	files []string // regular files, except the top-level manifest.json
	dirs  []string // directories, except the root
	sizes map[string]int64
}

// scanTree lists dir. Anything that is neither a regular file nor a
// directory is an error wrapping ErrCorrupt.
func scanTree(dir string) (*tree, error) {
	t := &tree{sizes: make(map[string]int64)}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			t.dirs = append(t.dirs, rel)
		case d.Type().IsRegular():
			if rel == ManifestFile {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			t.files = append(t.files, rel)
			t.sizes[rel] = info.Size()
		default:
			return fmt.Errorf("%w: %s: not a regular file or directory (%s)", ErrCorrupt, rel, d.Type())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(t.files)
	slices.Sort(t.dirs)
	return t, nil
}

// List returns the manifests of the complete snapshots in root, sorted by
// CreatedAt (then Name). Entries that are not snapshots — files,
// directories without a manifest.json, and Create's unfinished
// .NAME.partial-* directories — are skipped; a snapshot directory whose
// manifest is invalid or names another snapshot is an error. List reads
// manifests only; use Verify to check files. A missing root holds no
// snapshots.
func List(root string) ([]*Manifest, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", root, err)
	}
	var out []*Manifest
	for _, e := range entries {
		if !e.IsDir() || validateName(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Lstat(filepath.Join(dir, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		m, err := Open(dir)
		if err != nil {
			return nil, fmt.Errorf("list snapshots in %s: %w", root, err)
		}
		if m.Name != e.Name() {
			return nil, fmt.Errorf("list snapshots in %s: %w: %s: manifest names %q", root, ErrCorrupt, e.Name(), m.Name)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Manifest) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out, nil
}
