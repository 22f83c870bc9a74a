package release

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFileAtomic writes data to path through a temporary file in the same
// directory, fsync and rename, so that path never holds a partial file. See
// writeAtomic.
func writeFileAtomic(path string, data []byte, mode os.FileMode, exclusive bool) error {
	return writeAtomic(path, mode, exclusive, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// writeAtomic creates a temporary file beside path, lets fill write it,
// fsyncs it and moves it to path, then fsyncs the directory. If anything
// fails the temporary file is removed and path is untouched. With
// exclusive, an existing path is an error (os.ErrExist) and is not
// replaced: the move is a hard link, which fails atomically if path exists.
func writeAtomic(path string, mode os.FileMode, exclusive bool, fill func(*os.File) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp) // after a rename this is a no-op; after a link it drops the extra name
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fill(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("write %s: %w", path, cerr)
	}
	if exclusive {
		if err := os.Link(tmp, path); err != nil {
			return fmt.Errorf("write %s: refusing to replace it: %w", path, err)
		}
	} else if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: some platforms cannot sync a directory
		d.Close()
	}
	return nil
}
