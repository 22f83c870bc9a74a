package distribute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/teeup/teeup/internal/fsutil"
)

// MaxObjectSize bounds the size of an object read back from a destination,
// so a corrupt or hostile destination cannot exhaust memory.
const MaxObjectSize = 64 << 20

// blockPrefix and blockSuffix frame a block's object name.
const (
	blockPrefix = "blocks/"
	blockSuffix = ".blk"
)

// Destination stores published blocks under slash-separated names such as
// ObjectName(height). Put must be atomic: a reader (and Get) sees either no
// object or all of data, and once Put returns the object is durable.
type Destination interface {
	// Put stores data under name, replacing any existing object.
	Put(ctx context.Context, name string, data []byte) error
	// Get returns the object stored under name; found is false (and err
	// nil) when there is none.
	Get(ctx context.Context, name string) (data []byte, found bool, err error)
	// String describes the destination for logs.
	String() string
}

// Lister is implemented by destinations that can enumerate their objects.
// Reconcile uses it, when available, to report blocks stored beyond a gap.
type Lister interface {
	// List returns the names of the objects whose names start with prefix.
	List(ctx context.Context, prefix string) ([]string, error)
}

// ObjectName is the name under which the block at height is published. The
// zero padding makes lexical order equal height order.
func ObjectName(height uint64) string {
	return fmt.Sprintf("%s%020d%s", blockPrefix, height, blockSuffix)
}

// parseObjectName is the inverse of ObjectName.
func parseObjectName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, blockPrefix)
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, blockSuffix); !ok || len(digits) != 20 {
		return 0, false
	}
	h, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return h, true
}

// checkName rejects object names that are not plain relative slash paths:
// empty, absolute, with empty, "." or ".." elements, a backslash, or an
// element starting with "." (reserved for temporary files).
func checkName(name string) error {
	if name == "" {
		return errors.New("empty object name")
	}
	if strings.ContainsRune(name, '\\') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("object name %q: contains a backslash or NUL", name)
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == "" || strings.HasPrefix(elem, ".") {
			return fmt.Errorf("object name %q: empty element or element starting with '.'", name)
		}
	}
	if path.Clean(name) != name {
		return fmt.Errorf("object name %q: not a clean path", name)
	}
	return nil
}

// DirDestination publishes blocks as files under a directory. Each file is
// written atomically (temporary file, fsync, rename, directory fsync).
type DirDestination struct {
	dir string
}

// NewDirDestination returns a destination writing under dir, creating it
// if needed.
func NewDirDestination(dir string) (*DirDestination, error) {
	if dir == "" {
		return nil, errors.New("open destination directory: empty path")
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open destination directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open destination directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open destination directory %s: not a directory", dir)
	}
	return &DirDestination{dir: dir}, nil
}

// Put atomically writes data to the file for name.
func (d *DirDestination) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s in %s: %w", name, d, err)
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("put in %s: %w", d, err)
	}
	file := filepath.Join(d.dir, filepath.FromSlash(name))
	parent := filepath.Dir(file)
	if err := d.mkdirDurable(parent); err != nil {
		return fmt.Errorf("put %s in %s: %w", name, d, err)
	}
	tmp := filepath.Join(parent, "."+filepath.Base(file)+".tmp")
	if err := writeFileAtomic(file, tmp, data, 0o644, nil); err != nil {
		return fmt.Errorf("put %s in %s: %w", name, d, err)
	}
	return nil
}

// mkdirDurable creates dir (inside d.dir) and any missing parents, syncing
// each parent whose entries it changed so the new directories survive a crash.
func (d *DirDestination) mkdirDurable(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if dir == d.dir {
		return fmt.Errorf("destination directory %s has disappeared", dir)
	}
	parent := filepath.Dir(dir)
	if err := d.mkdirDurable(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return fsutil.SyncDir(parent)
}

// Get reads the file for name.
func (d *DirDestination) Get(ctx context.Context, name string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("get %s from %s: %w", name, d, err)
	}
	if err := checkName(name); err != nil {
		return nil, false, fmt.Errorf("get from %s: %w", d, err)
	}
	f, err := os.Open(filepath.Join(d.dir, filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %s from %s: %w", name, d, err)
	}
	defer f.Close()
	data, err := readLimited(f)
	if err != nil {
		return nil, false, fmt.Errorf("get %s from %s: %w", name, d, err)
	}
	return data, true, nil
}

// List returns the names of the regular files under the directory whose
// names start with prefix, skipping temporary files.
func (d *DirDestination) List(ctx context.Context, prefix string) ([]string, error) {
	root := d.dir
	if i := strings.LastIndexByte(prefix, '/'); i > 0 {
		if err := checkName(prefix[:i]); err != nil {
			return nil, fmt.Errorf("list %s: %w", d, err)
		}
		root = filepath.Join(d.dir, filepath.FromSlash(prefix[:i]))
	}
	var names []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if p == root && errors.Is(err, fs.ErrNotExist) {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), ".") && p != root {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(d.dir, p)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d, err)
	}
	return names, nil
}

// String returns "dir:" followed by the directory.
func (d *DirDestination) String() string { return "dir:" + d.dir }

// readLimited reads r to the end, refusing more than MaxObjectSize bytes.
func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxObjectSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxObjectSize {
		return nil, fmt.Errorf("object larger than %d bytes", MaxObjectSize)
	}
	return data, nil
}
