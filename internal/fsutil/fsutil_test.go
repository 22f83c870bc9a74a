package fsutil

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	payload := bytes.Repeat([]byte("teeup "), 100_000)
	if err := os.WriteFile(src, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := os.WriteFile(dst, []byte("an older, shorter file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CopyFile(src, dst, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("copied %d bytes, want the %d of the source", len(got), len(payload))
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, want 0755", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want src and dst only (no temporary file left)", len(entries))
	}
}

func TestCopyFileRejects(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, src, dst, want string
	}{
		{"missing source", filepath.Join(dir, "nope"), filepath.Join(dir, "a"), "copy " + filepath.Join(dir, "nope")},
		{"missing destination directory", src, filepath.Join(dir, "no", "such", "dir", "a"), "write " + filepath.Join(dir, "no", "such", "dir", "a")},
		{"source is a directory", dir, filepath.Join(dir, "b"), "is a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CopyFile(tc.src, tc.dst, 0o644)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CopyFile = %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(tc.dst); !os.IsNotExist(err) {
				t.Fatalf("%s exists after a failed copy", tc.dst)
			}
		})
	}
}
