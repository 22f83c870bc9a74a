package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrNotPrivate is wrapped by PrivateDir's error for an existing
// directory that grants its group or other users any access.
var ErrNotPrivate = errors.New("grants access to group or others")

// ErrNotDir is wrapped by PrivateDir's error for a path that exists but
// is not a directory.
var ErrNotDir = errors.New("is not a directory")

// PrivateDir makes sure dir is a directory only its owner may use: it
// creates dir (and missing parents) with mode 0700, and refuses an existing
// one whose permission bits give its group or others anything, with an
// error saying how to fix it. Data, agent and platform directories hold
// ledgers, sealed keys and platform secrets: a directory that other users
// can list or enter is not silently used as it is.
func PrivateDir(dir string) error {
	if dir == "" {
		return errors.New("private directory: no path given")
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
		// MkdirAll applies the umask; 0700 has nothing it could remove
		// for the owner, but make the mode exact all the same.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", dir, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("directory %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("directory %s %w", dir, ErrNotDir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("directory %s has mode %04o and %w: refusing to use it (restrict it with 'chmod 700 %s')", dir, perm, ErrNotPrivate, dir)
	}
	return nil
}
