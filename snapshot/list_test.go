package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestList(t *testing.T) {
	f := newFixture(t, 500)
	// Created in this order; names sort the other way, so the result order
	// shows List sorts by CreatedAt.
	names := []string{"c", "b", "a"}
	for _, n := range names {
		f.create(t, n)
	}
	// Give them distinct, known creation times.
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i, n := range names {
		rewriteManifest(t, filepath.Join(f.root, n), func(m map[string]any) {
			m["created_at"] = base.Add(time.Duration(i) * time.Hour).Format(time.RFC3339Nano)
		})
	}
	// Things that are not snapshots.
	if err := os.WriteFile(filepath.Join(f.root, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.root, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.root, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := CopyDir(context.Background(), filepath.Join(f.root, "a"), filepath.Join(f.root, ".d.partial-1")); err != nil {
		t.Fatal(err)
	}

	list, err := List(f.root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list {
		got = append(got, m.Name)
	}
	if strings.Join(got, ",") != "c,b,a" {
		t.Errorf("List = %v, want [c b a] (by CreatedAt)", got)
	}

	list, err = List(filepath.Join(f.base, "absent"))
	if err != nil || len(list) != 0 {
		t.Errorf("List of a missing root = %v, %v", list, err)
	}
}

func TestListRejects(t *testing.T) {
	f := newFixture(t, 500)
	f.create(t, "good")
	tests := []struct {
		name   string
		damage func(t *testing.T, root string)
		want   string
	}{
		{"invalid manifest", func(t *testing.T, root string) {
			if err := os.WriteFile(filepath.Join(root, "good", ManifestFile), []byte("{}"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "good: manifest.json"},
		{"manifest names another snapshot", func(t *testing.T, root string) {
			if err := os.Rename(filepath.Join(root, "good"), filepath.Join(root, "renamed")); err != nil {
				t.Fatal(err)
			}
		}, `renamed: manifest names "good"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := copySnapshot(t, f.root)
			if _, err := List(root); err != nil {
				t.Fatalf("undamaged root: %v", err)
			}
			tt.damage(t, root)
			_, err := List(root)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("List: err = %v, want ErrCorrupt naming %q", err, tt.want)
			}
		})
	}
}

func TestCopyDir(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "emptydir"), 0o750); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"top": "1", "a/mid": strings.Repeat("m", 3*bufSize+7), "a/b/deep": "", "private": "secret"}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(src, filepath.FromSlash(p)), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(src, "private"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := CopyDir(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	want, got := treeSums(t, src), treeSums(t, dst)
	if len(want) != len(got) {
		t.Fatalf("copied tree %v, want %v", got, want)
	}
	for p, sum := range want {
		if got[p] != sum {
			t.Errorf("%s: copy %s, source %s", p, got[p], sum)
		}
	}
	for p := range files {
		a, _ := os.Stat(filepath.Join(src, filepath.FromSlash(p)))
		b, _ := os.Stat(filepath.Join(dst, filepath.FromSlash(p)))
		if os.SameFile(a, b) {
			t.Errorf("%s: copy shares the source's inode", p)
		}
		if a.Mode() != b.Mode() {
			t.Errorf("%s: mode %v, source %v", p, b.Mode(), a.Mode())
		}
	}

	withLink := filepath.Join(t.TempDir(), "link")
	if err := os.MkdirAll(withLink, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(withLink, "l")); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		src, dst string
		want     string
	}{
		{"dst exists", context.Background(), src, dst, "already exists"},
		{"src missing", context.Background(), filepath.Join(src, "absent"), filepath.Join(t.TempDir(), "x"), "no such file"},
		{"src is a file", context.Background(), filepath.Join(src, "top"), filepath.Join(t.TempDir(), "x"), "is not a directory"},
		{"symlink", context.Background(), withLink, filepath.Join(t.TempDir(), "x"), "l: not a regular file"},
		{"cancelled", cancelled, src, filepath.Join(t.TempDir(), "x"), "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CopyDir(tt.ctx, tt.src, tt.dst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CopyDir: err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestMeasure(t *testing.T) {
	f := newFixture(t, 2000)
	root := filepath.Join(f.base, "bench")
	snapTime, copyTime, err := Measure(context.Background(), f.dbDir, root, f.checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if snapTime <= 0 || copyTime <= 0 {
		t.Errorf("times %v, %v; want both positive", snapTime, copyTime)
	}
	if left := siblings(t, root, ""); len(left) != 0 {
		t.Errorf("Measure left %v", left)
	}
	if _, _, err := Measure(context.Background(), f.dbDir, root, func(string) error { return errors.New("no") }); err == nil {
		t.Error("Measure with a failing checkpoint succeeded")
	}
	if left := siblings(t, root, ""); len(left) != 0 {
		t.Errorf("failed Measure left %v", left)
	}
}
