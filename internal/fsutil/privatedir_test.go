package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivateDirCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: mode %v, want a directory with 0700", d, fi.Mode())
		}
	}
	// An existing private directory is accepted as it is.
	if err := PrivateDir(dir); err != nil {
		t.Fatalf("PrivateDir on an existing 0700 directory: %v", err)
	}
}

func TestPrivateDirRejects(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mode    os.FileMode // of an existing directory; 0 means use path as is
		path    string
		wantErr error
	}{
		{"0755", 0o755, "", ErrNotPrivate},
		{"0750 (group may list)", 0o750, "", ErrNotPrivate},
		{"0701 (others may enter)", 0o701, "", ErrNotPrivate},
		{"0770", 0o770, "", ErrNotPrivate},
		{"0777", 0o777, "", ErrNotPrivate},
		{"0710 (group may enter)", 0o710, "", ErrNotPrivate},
		{"a regular file", 0, file, ErrNotDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if tt.mode != 0 {
				path = filepath.Join(base, strings.ReplaceAll(tt.name, " ", "_"))
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			err := PrivateDir(path)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("PrivateDir(%s) = %v, want %v", path, err, tt.wantErr)
			}
			if tt.wantErr == ErrNotPrivate && !strings.Contains(err.Error(), "chmod 700 "+path) {
				t.Fatalf("error %q does not say how to fix it", err)
			}
			if tt.mode != 0 {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tt.mode {
					t.Fatalf("PrivateDir changed the refused directory's mode to %v", fi.Mode().Perm())
				}
			}
		})
	}
	if err := PrivateDir(""); err == nil {
		t.Fatal("PrivateDir(\"\") succeeded")
	}
}
