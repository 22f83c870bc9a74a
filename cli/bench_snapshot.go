package cli

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/spf13/cobra"

	"github.com/teeup/teeup/snapshot"
)

// snapshotBench is one size's measurement.
type snapshotBench struct {
	SizeMB     int           `json:"size_mb"`
	DBBytes    int64         `json:"db_bytes"`
	Checkpoint time.Duration `json:"checkpoint_ns"`
	Snapshot   time.Duration `json:"snapshot_ns"`
	FullCopy   time.Duration `json:"full_copy_ns"`
	CopyVsCkpt float64       `json:"full_copy_over_checkpoint"`
	CopyVsSnap float64       `json:"full_copy_over_snapshot"`
	HashedMBps float64       `json:"snapshot_hash_mb_per_s"`
	// Prehash is hashing the live ledger's sstables ahead (what an agent
	// does once a flag day is scheduled); Prehashed the snapshot taken
	// after it, which reuses those sums (what the closed window pays).
	Prehash      time.Duration `json:"prehash_ns"`
	Prehashed    time.Duration `json:"prehashed_snapshot_ns"`
	SnapVsPre    float64       `json:"snapshot_over_prehashed"`
	GenerateTime time.Duration `json:"generate_ns"`
}

func newBenchSnapshotCmd() *cobra.Command {
	var sizes []string
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "snapshot [--size 100MB --size 1GB]",
		Short: "Time a flag-day snapshot against a full copy of the same ledger, in one run",
		Long: `For each size, write a Pebble ledger of that size (incompressible values, flushed to
sstables), then time, on the same database in the same run: a Pebble checkpoint alone (hard
links), a full flag-day snapshot (checkpoint + SHA-256 of every file + manifest), the same
snapshot after the sstables were hashed ahead (an agent hashes them once a flag day is
scheduled, so the snapshot in the closed window reuses their sums), and a plain full copy of
the directory; print the ratios. Needs about twice the largest size free in --dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var results []snapshotBench
			for _, s := range sizes {
				mb, err := parseMB(s)
				if err != nil {
					return err
				}
				r, err := benchSnapshotSize(cmd.Context(), dir, mb, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				results = append(results, *r)
			}
			out := stdoutOf(cmd)
			if asJSON {
				return printJSON(out, results)
			}
			tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LEDGER\tCHECKPOINT\tSNAPSHOT (+SHA-256)\tPREHASH (AHEAD)\tPREHASHED SNAPSHOT\tFULL COPY\tCOPY/CHECKPOINT\tCOPY/SNAPSHOT\tSNAPSHOT/PREHASHED")
			for _, r := range results {
				fmt.Fprintf(tw, "%d MB\t%s\t%s\t%s\t%s\t%s\t%.1fx\t%.1fx\t%.1fx\n", r.SizeMB, r.Checkpoint.Round(time.Millisecond), r.Snapshot.Round(time.Millisecond),
					r.Prehash.Round(time.Millisecond), r.Prehashed.Round(time.Millisecond),
					r.FullCopy.Round(time.Millisecond), r.CopyVsCkpt, r.CopyVsSnap, r.SnapVsPre)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringSliceVar(&sizes, "size", []string{"100MB", "1GB"}, "ledger sizes (MB or GB)")
	cmd.Flags().StringVar(&dir, "dir", os.TempDir(), "scratch directory (one file system: checkpoints hard-link)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func parseMB(s string) (int, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	switch {
	case strings.HasSuffix(u, "GB"):
		mult, u = 1024, strings.TrimSuffix(u, "GB")
	case strings.HasSuffix(u, "MB"):
		u = strings.TrimSuffix(u, "MB")
	}
	var n int
	if _, err := fmt.Sscan(u, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want e.g. 100MB or 1GB", s)
	}
	return n * mult, nil
}

func benchSnapshotSize(ctx context.Context, scratch string, mb int, progress io.Writer) (*snapshotBench, error) {
	root, err := os.MkdirTemp(scratch, "teeup-bench-snapshot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	dbDir := filepath.Join(root, "ledger")
	start := time.Now()
	fmt.Fprintf(progress, "writing a %d MB ledger...\n", mb)
	db, err := pebble.Open(dbDir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		return nil, err
	}
	val := make([]byte, 1024)
	key := make([]byte, 10)
	copy(key, "b/")
	var written int64
	for i := 0; written < int64(mb)<<20; {
		b := db.NewBatch()
		for j := 0; j < 1000; j++ {
			if _, err := rand.Read(val); err != nil {
				b.Close()
				db.Close()
				return nil, err
			}
			binary.BigEndian.PutUint64(key[2:], uint64(i))
			if err := b.Set(key, val, nil); err != nil {
				b.Close()
				db.Close()
				return nil, err
			}
			i++
			written += int64(len(val) + len(key))
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			db.Close()
			return nil, err
		}
		if ctx.Err() != nil {
			db.Close()
			return nil, ctx.Err()
		}
	}
	if err := db.Flush(); err != nil {
		db.Close()
		return nil, err
	}
	r := &snapshotBench{SizeMB: mb, GenerateTime: time.Since(start)}
	r.DBBytes = dirBytes(dbDir)

	// Checkpoint alone.
	ck := filepath.Join(root, "checkpoint")
	t := time.Now()
	if err := db.Checkpoint(ck, pebble.WithFlushedWAL()); err != nil {
		db.Close()
		return nil, err
	}
	r.Checkpoint = time.Since(t)
	_ = os.RemoveAll(ck)

	fmt.Fprintf(progress, "timing snapshot and full copy of %d MB...\n", r.DBBytes>>20)
	snapT, copyT, err := snapshot.Measure(ctx, dbDir, root, func(dst string) error { return db.Checkpoint(dst, pebble.WithFlushedWAL()) })
	if err != nil {
		db.Close()
		return nil, err
	}
	preRoot := filepath.Join(root, "prehashed")
	cache := snapshot.OpenHashCache(preRoot)
	t = time.Now()
	if _, _, err := cache.Prehash(ctx, dbDir); err != nil {
		db.Close()
		return nil, err
	}
	r.Prehash = time.Since(t)
	t = time.Now()
	_, err = snapshot.Create(ctx, snapshot.CreateOptions{Root: preRoot, Name: "prehashed", HashCache: cache,
		Checkpoint: func(dst string) error { return db.Checkpoint(dst, pebble.WithFlushedWAL()) }})
	r.Prehashed = time.Since(t)
	db.Close()
	if err != nil {
		return nil, err
	}
	r.SnapVsPre = float64(snapT) / float64(max(r.Prehashed, time.Microsecond))
	r.Snapshot, r.FullCopy = snapT, copyT
	r.CopyVsCkpt = float64(copyT) / float64(max(r.Checkpoint, time.Microsecond))
	r.CopyVsSnap = float64(copyT) / float64(max(snapT, time.Microsecond))
	r.HashedMBps = float64(r.DBBytes>>20) / snapT.Seconds()
	return r, nil
}

func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// quietPebble discards Pebble's informational logs.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
