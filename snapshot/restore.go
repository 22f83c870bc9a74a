package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
)

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// Snapshot is the snapshot directory to restore (Root/Name).
	Snapshot string
	// LedgerDir is the ledger DB directory to replace. It need not exist;
	// its parent must. No process may have it open.
	LedgerDir string
	// StateFile is where the distribution state file lives. It is required
	// when the snapshot captured one. If the snapshot captured none, a
	// current state file is moved aside (or removed with DiscardPrevious),
	// because the snapshot records that there was none.
	StateFile string
	// DiscardPrevious removes the current ledger directory and state file
	// once the restore has succeeded. By default they are kept beside the
	// restored ones, renamed with a ".pre-restore-TIMESTAMP" suffix, so a
	// restore never destroys data.
	DiscardPrevious bool
}

// restoreTempMarker separates LedgerDir's name from the random suffix of the
// directory Restore builds the new ledger in.
const restoreTempMarker = ".restore-"

// previousMarker separates a path from the timestamp of the copy Restore
// moves aside.
const previousMarker = ".pre-restore-"

// Restore replaces the ledger DB and the state file with the snapshot's.
// It verifies the snapshot first and refuses a corrupt one without touching
// anything. It builds the new ledger directory beside LedgerDir
// (LedgerDir.restore-RANDOM), hard-linking the immutable sstables and
// copying every other file, syncs it, renames the current LedgerDir to
// LedgerDir.pre-restore-TIMESTAMP and the new directory to LedgerDir, then
// replaces the state file atomically (temp file, sync, rename; the old one
// is kept as StateFile.pre-restore-TIMESTAMP). It returns the path the
// previous ledger directory was moved to: "" if there was none or it was
// discarded. Leftover LedgerDir.restore-* directories of an interrupted
// Restore are removed. If Restore fails after the ledger was swapped, run it
// again: the snapshot is unchanged.
func Restore(ctx context.Context, opts RestoreOptions) (previous string, err error) {
	previous, err = restore(ctx, opts)
	if err != nil {
		return previous, fmt.Errorf("restore snapshot %s into %s: %w", opts.Snapshot, opts.LedgerDir, err)
	}
	return previous, nil
}

func restore(ctx context.Context, opts RestoreOptions) (string, error) {
	if opts.Snapshot == "" {
		return "", errors.New("no snapshot directory given")
	}
	if opts.LedgerDir == "" {
		return "", errors.New("no ledger directory given")
	}
	m, err := Verify(ctx, opts.Snapshot)
	if err != nil {
		return "", err
	}
	if m.StateFile != "" && opts.StateFile == "" {
		return "", errors.New("the snapshot holds a state file but no state file path was given")
	}
	ledgerDir := filepath.Clean(opts.LedgerDir)
	parent, base := filepath.Dir(ledgerDir), filepath.Base(ledgerDir)
	if base == "." || base == ".." || base == string(filepath.Separator) {
		return "", fmt.Errorf("ledger directory %q has no name to restore under", opts.LedgerDir)
	}
	if info, err := os.Stat(parent); err != nil {
		return "", err
	} else if !info.IsDir() {
		return "", fmt.Errorf("%s is not a directory", parent)
	}
	perm := fs.FileMode(0o700)
	switch info, err := os.Lstat(ledgerDir); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", err
	case !info.IsDir():
		return "", fmt.Errorf("%s is not a directory", ledgerDir)
	default:
		perm = info.Mode().Perm()
	}
	if opts.StateFile != "" {
		if info, err := os.Lstat(opts.StateFile); err == nil && !info.Mode().IsRegular() {
			return "", fmt.Errorf("state file %s is not a regular file", opts.StateFile)
		}
		if info, err := os.Stat(filepath.Dir(opts.StateFile)); err != nil {
			return "", fmt.Errorf("state file directory: %w", err)
		} else if !info.IsDir() {
			return "", fmt.Errorf("state file directory %s is not a directory", filepath.Dir(opts.StateFile))
		}
	}

	if err := removeLeftovers(parent, base+restoreTempMarker); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, base+restoreTempMarker)
	if err != nil {
		return "", err
	}
	swapped := false
	defer func() {
		if !swapped {
			os.RemoveAll(tmp)
		}
	}()
	if err := buildLedger(ctx, opts.Snapshot, m, tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return "", err
	}
	if err := syncTree(tmp); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}

	stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
	previous := ""
	if _, err := os.Lstat(ledgerDir); err == nil {
		previous = ledgerDir + previousMarker + stamp
		if _, err := os.Lstat(previous); err == nil {
			return "", fmt.Errorf("%s already exists", previous)
		}
		if err := os.Rename(ledgerDir, previous); err != nil {
			return "", fmt.Errorf("move current ledger aside: %w", err)
		}
	}
	if err := os.Rename(tmp, ledgerDir); err != nil {
		if previous != "" {
			if rerr := os.Rename(previous, ledgerDir); rerr != nil {
				return previous, fmt.Errorf("move restored ledger into place: %w; and moving the previous ledger back from %s: %w", err, previous, rerr)
			}
		}
		return "", fmt.Errorf("move restored ledger into place: %w", err)
	}
	swapped = true
	if err := fsutil.SyncDir(parent); err != nil {
		return previous, err
	}

	// The ledger is swapped: finish the (small) state file even if ctx is
	// cancelled now, so ledger and state file match.
	prevState, err := restoreState(context.WithoutCancel(ctx), opts.Snapshot, m, opts.StateFile, stamp)
	if err != nil {
		return previous, err
	}
	if opts.DiscardPrevious {
		if previous != "" {
			if err := os.RemoveAll(previous); err != nil {
				return previous, fmt.Errorf("discard previous ledger: %w", err)
			}
		}
		if prevState != "" {
			if err := os.Remove(prevState); err != nil {
				return "", fmt.Errorf("discard previous state file: %w", err)
			}
		}
		return "", nil
	}
	return previous, nil
}

// buildLedger fills dst with the snapshot's ledger files: sstables are
// hard-linked (Pebble never writes to an sstable after creating it), and
// everything else — MANIFEST, WAL, OPTIONS, markers, which Pebble may append
// to, recycle or rewrite — is copied and checked against the manifest's sum. An
// sstable that cannot be linked (another file system) is copied.
func buildLedger(ctx context.Context, snap string, m *Manifest, dst string) error {
	prefix := m.Ledger + "/"
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, ok := strings.CutPrefix(f.Path, prefix)
		if !ok {
			continue
		}
		src := filepath.Join(snap, filepath.FromSlash(f.Path))
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		if strings.HasSuffix(rel, ".sst") {
			if err := os.Link(src, target); err == nil {
				continue
			}
		}
		info, err := os.Stat(src)
		if err != nil {
			return err
		}
		sum, err := copyFile(ctx, src, target, info.Mode().Perm())
		if err != nil {
			return fmt.Errorf("copy %s: %w", f.Path, err)
		}
		if sum != f.SHA256 {
			return fmt.Errorf("%w: %s changed while being restored", ErrCorrupt, f.Path)
		}
	}
	return nil
}

// restoreState puts the snapshot's state file at statePath atomically, or,
// if the snapshot captured none, moves the current one aside. The current
// file is kept as statePath.pre-restore-STAMP, whose path is returned ("" if
// there was no current file).
func restoreState(ctx context.Context, snap string, m *Manifest, statePath, stamp string) (string, error) {
	if statePath == "" {
		return "", nil
	}
	prev := ""
	if _, err := os.Lstat(statePath); err == nil {
		prev = statePath + previousMarker + stamp
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if m.StateFile == "" {
		if prev == "" {
			return "", nil
		}
		if err := os.Rename(statePath, prev); err != nil {
			return "", fmt.Errorf("move state file aside: %w", err)
		}
		return prev, fsutil.SyncDir(filepath.Dir(statePath))
	}
	var want File
	for _, f := range m.Files {
		if f.Path == m.StateFile {
			want = f
		}
	}
	src := filepath.Join(snap, filepath.FromSlash(m.StateFile))
	info, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	// A fixed temporary name: a crash leaves at most one stale file, which
	// the next Restore replaces.
	tmp := statePath + restoreTempMarker + "tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("remove stale temporary state file: %w", err)
	}
	sum, err := copyFile(ctx, src, tmp, info.Mode().Perm())
	if err != nil {
		return "", fmt.Errorf("copy state file: %w", err)
	}
	if sum != want.SHA256 {
		os.Remove(tmp)
		return "", fmt.Errorf("%w: %s changed while being restored", ErrCorrupt, m.StateFile)
	}
	if prev != "" {
		// A second name for the current file keeps it once the rename
		// below replaces statePath.
		if err := os.Link(statePath, prev); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("keep previous state file: %w", err)
		}
	}
	if err := os.Rename(tmp, statePath); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("replace state file: %w", err)
	}
	return prev, fsutil.SyncDir(filepath.Dir(statePath))
}
