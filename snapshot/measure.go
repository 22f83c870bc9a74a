package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Measure times, once each on the same database, a snapshot (Create with
// checkpoint, which must checkpoint the DB in dbDir) and a plain full copy
// of dbDir (CopyDir). Both are written under a fresh temporary directory in
// root, which must be on dbDir's file system for the snapshot to hard-link,
// and which is removed afterwards. The snapshot runs first, so the copy
// reads from a page cache the snapshot's hashing has warmed: the reported
// ratio copyTime/snapshotTime errs on the side of the copy.
func Measure(ctx context.Context, dbDir string, root string, checkpoint func(dst string) error) (snapshotTime, copyTime time.Duration, err error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return 0, 0, fmt.Errorf("measure snapshot of %s: %w", dbDir, err)
	}
	work, err := os.MkdirTemp(root, "measure-")
	if err != nil {
		return 0, 0, fmt.Errorf("measure snapshot of %s: %w", dbDir, err)
	}
	defer func() {
		if rerr := os.RemoveAll(work); rerr != nil {
			err = errors.Join(err, fmt.Errorf("measure snapshot of %s: clean up: %w", dbDir, rerr))
		}
	}()
	start := time.Now()
	if _, err := Create(ctx, CreateOptions{Root: filepath.Join(work, "snapshots"), Name: "measure", Checkpoint: checkpoint}); err != nil {
		return 0, 0, fmt.Errorf("measure snapshot of %s: %w", dbDir, err)
	}
	snapshotTime = time.Since(start)
	start = time.Now()
	if err := CopyDir(ctx, dbDir, filepath.Join(work, "copy")); err != nil {
		return 0, 0, fmt.Errorf("measure snapshot of %s: %w", dbDir, err)
	}
	copyTime = time.Since(start)
	return snapshotTime, copyTime, nil
}
