package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/teeup/teeup/internal/fsutil"
)

// bufSize is the read size used when hashing and copying; cancellation and
// progress are checked once per buffer.
const bufSize = 1 << 20

// ctxReader stops reading once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// progressWriter reports every write to a callback.
type progressWriter struct {
	add func(n int64)
}

func (p progressWriter) Write(b []byte) (int, error) {
	p.add(int64(len(b)))
	return len(b), nil
}

// hashFile returns the size and lower-case hex SHA-256 of the regular file
// at p. add, if not nil, is called with the number of bytes hashed after
// each read. If syncFile is set the file is also fsynced, so that a file
// written by someone else (the checkpoint function) is durable before the
// manifest that vouches for it.
func hashFile(ctx context.Context, p string, syncFile bool, add func(int64)) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	var w io.Writer = h
	if add != nil {
		w = io.MultiWriter(h, progressWriter{add: add})
	}
	n, err := io.CopyBuffer(w, ctxReader{ctx: ctx, r: f}, make([]byte, bufSize))
	if err != nil {
		return 0, "", err
	}
	if syncFile {
		if err := f.Sync(); err != nil {
			return 0, "", fmt.Errorf("sync: %w", err)
		}
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// hashResult is the outcome of hashing one file.
type hashResult struct {
	size int64
	sum  string
	err  error
}

// maxHashWorkers bounds how many files are hashed at once.
const maxHashWorkers = 4

// hashFiles hashes the files (slash paths relative to dir) concurrently, on
// up to min(GOMAXPROCS, 4) goroutines, and returns one result per path in
// the order given. add, if not nil, is called with each number of bytes
// hashed; calls are serialized. An error hashing one file does not stop the
// others; a done ctx does, and is returned.
func hashFiles(ctx context.Context, dir string, paths []string, syncFiles bool, add func(int64)) ([]hashResult, error) {
	results := make([]hashResult, len(paths))
	var mu sync.Mutex
	var serialAdd func(int64)
	if add != nil {
		serialAdd = func(n int64) {
			mu.Lock()
			defer mu.Unlock()
			add(n)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), maxHashWorkers, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				r := &results[i]
				r.size, r.sum, r.err = hashFile(ctx, filepath.Join(dir, filepath.FromSlash(paths[i])), syncFiles, serialAdd)
			}
		})
	}
feed:
	for i := range paths {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return results, nil
}

// copyFile copies the regular file src to dst, which must not exist, with
// mode perm, and syncs dst. It returns the lower-case hex SHA-256 of the
// bytes written. On error dst is removed.
func copyFile(ctx context.Context, src, dst string, perm fs.FileMode) (sum string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	h := sha256.New()
	// The reader wrapper also keeps io.Copy from handing the copy to the
	// kernel (copy_file_range may share extents), so this is a real copy.
	if _, err := io.CopyBuffer(io.MultiWriter(out, h), ctxReader{ctx: ctx, r: in}, make([]byte, bufSize)); err != nil {
		return "", err
	}
	if err := out.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", dst, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// syncTree syncs every directory in the tree rooted at root, deepest first,
// then root's parent.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Reverse(dirs)
	dirs = append(dirs, filepath.Dir(root))
	for _, d := range dirs {
		if err := fsutil.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// removeLeftovers removes the directories in parent whose names start with
// prefix: temporary directories left by an interrupted Create or Restore.
func removeLeftovers(parent, prefix string) error {
	entries, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(parent, e.Name())); err != nil {
			return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
		}
	}
	return nil
}

// CopyDir copies the directory tree src to dst, which must not exist, byte
// by byte: the plain full copy a snapshot is measured against, and a tool
// for moving snapshots between file systems. Directories and regular files
// are copied with their permission bits, every file and directory is synced,
// and any other kind of entry (symlink, device, socket) is an error. On
// error, dst may hold a partial copy. ctx is checked between reads.
func CopyDir(ctx context.Context, src, dst string) error {
	if err := copyDir(ctx, src, dst); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

func copyDir(ctx context.Context, src, dst string) error {
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", src)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%s already exists", dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(target, info.Mode().Perm()|0o700)
		case d.Type().IsRegular():
			_, err := copyFile(ctx, p, target, info.Mode().Perm())
			if err != nil {
				return fmt.Errorf("copy %s: %w", rel, err)
			}
			return nil
		default:
			return fmt.Errorf("%s: not a regular file or directory (%s)", rel, d.Type())
		}
	})
	if err != nil {
		return err
	}
	return syncTree(dst)
}
