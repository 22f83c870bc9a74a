package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rewriteManifest applies edit to the manifest.json of dir as a generic JSON
// object, so fields can be set to values the Go type would not produce.
func rewriteManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, ManifestFile)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editFile applies edit to the entry of the manifest's files whose path
// starts with prefix.
func editFile(prefix string, edit func(file map[string]any)) func(m map[string]any) {
	return func(m map[string]any) {
		for _, f := range m["files"].([]any) {
			file := f.(map[string]any)
			if strings.HasPrefix(file["path"].(string), prefix) {
				edit(file)
				return
			}
		}
		panic("no file with prefix " + prefix)
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t, 2000)
	m := f.create(t, "snap")
	src := filepath.Join(f.root, "snap")
	sst := firstFile(t, m, ".sst")
	pebbleManifest := firstFileWithPrefix(t, m, "ledger/MANIFEST-")

	flipByte := func(rel string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)/2] ^= 0x01
			if err := os.WriteFile(p, raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write := func(rel, content string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(rel)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	manifest := func(edit func(m map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { rewriteManifest(t, dir, edit) }
	}

	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		want    string // substring naming the offending file
		notCorr bool   // the error is not ErrCorrupt (the manifest is missing)
	}{
		{"sstable modified, same size", flipByte(sst.Path), sst.Path + ": sha256", false},
		{"state file modified, same size", write(StateFileName, `{"next_block":43}`+"\n"), StateFileName + ": sha256", false},
		{"pebble manifest truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, filepath.FromSlash(pebbleManifest.Path)), pebbleManifest.Size-1); err != nil {
				t.Fatal(err)
			}
		}, pebbleManifest.Path + ": size", false},
		{"file grown", func(t *testing.T, dir string) {
			fh, err := os.OpenFile(filepath.Join(dir, filepath.FromSlash(sst.Path)), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fh.Write([]byte{0})
			fh.Close()
		}, sst.Path + ": size", false},
		{"sstable deleted", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(sst.Path))); err != nil {
				t.Fatal(err)
			}
		}, sst.Path + ": missing", false},
		{"state file deleted", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, StateFileName)); err != nil {
				t.Fatal(err)
			}
		}, StateFileName + ": missing", false},
		{"extra file in ledger", write("ledger/999999.sst", "junk"), "ledger/999999.sst: unexpected file", false},
		{"extra file at top", write("notes.txt", ""), "notes.txt: unexpected file", false},
		{"extra directory", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "ledger", "sub"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, "ledger/sub: unexpected directory", false},
		{"file replaced by symlink", func(t *testing.T, dir string) {
			p := filepath.Join(dir, StateFileName)
			os.Remove(p)
			if err := os.Symlink(f.state, p); err != nil {
				t.Fatal(err)
			}
		}, StateFileName + ": not a regular file", false},
		{"manifest missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil {
				t.Fatal(err)
			}
		}, ManifestFile + ": no such file", true},
		{"manifest malformed", write(ManifestFile, "{not json"), ManifestFile + ": corrupt snapshot: decode", false},
		{"manifest empty", write(ManifestFile, ""), ManifestFile + ": corrupt snapshot: decode", false},
		{"manifest trailing data", func(t *testing.T, dir string) {
			raw, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
			write(ManifestFile, string(raw)+"{}")(t, dir)
		}, ManifestFile + ": corrupt snapshot: trailing data", false},
		{"manifest unknown field", manifest(func(m map[string]any) { m["extra"] = 1 }), `unknown field "extra"`, false},
		{"manifest unknown file field", manifest(editFile(sst.Path, func(f map[string]any) { f["mode"] = 0o644 })), `unknown field "mode"`, false},
		{"path traversal", manifest(editFile(sst.Path, func(f map[string]any) { f["path"] = "../x" })), `file "../x"`, false},
		{"path traversal inside", manifest(editFile(sst.Path, func(f map[string]any) { f["path"] = "ledger/../../x" })), `file "ledger/../../x"`, false},
		{"absolute path", manifest(editFile(sst.Path, func(f map[string]any) { f["path"] = "/etc/passwd" })), `file "/etc/passwd"`, false},
		{"backslash path", manifest(editFile(sst.Path, func(f map[string]any) { f["path"] = `ledger\..\x` })), `file "ledger\\..\\x"`, false},
		{"manifest lists itself", manifest(func(m map[string]any) {
			m["files"] = append(m["files"].([]any), map[string]any{"path": ManifestFile, "size": 1, "sha256": sst.SHA256})
		}), `file "manifest.json"`, false},
		{"path outside ledger", manifest(editFile(StateFileName, func(f map[string]any) { f["path"] = "other.state" })), `file "other.state": neither in ledger/`, false},
		{"size changed in manifest", manifest(editFile(sst.Path, func(f map[string]any) { f["size"] = float64(sst.Size + 1) })), sst.Path + ": size", false},
		{"negative size", manifest(editFile(sst.Path, func(f map[string]any) { f["size"] = -1 })), sst.Path + `": negative size`, false},
		{"sha256 changed in manifest", manifest(editFile(sst.Path, func(f map[string]any) { f["sha256"] = strings.Repeat("0", 64) })), sst.Path + ": sha256", false},
		{"sha256 not hex", manifest(editFile(sst.Path, func(f map[string]any) { f["sha256"] = strings.Repeat("g", 64) })), sst.Path + `": sha256`, false},
		{"sha256 upper case", manifest(editFile(sst.Path, func(f map[string]any) { f["sha256"] = strings.ToUpper(sst.SHA256) })), sst.Path + `": sha256`, false},
		{"sha256 short", manifest(editFile(sst.Path, func(f map[string]any) { f["sha256"] = "abcd" })), sst.Path + `": sha256`, false},
		{"files unsorted", manifest(func(m map[string]any) {
			files := m["files"].([]any)
			files[0], files[1] = files[1], files[0]
		}), "not sorted", false},
		{"files duplicated", manifest(func(m map[string]any) {
			files := m["files"].([]any)
			m["files"] = append([]any{files[0]}, files...)
		}), "without duplicates", false},
		{"no files", manifest(func(m map[string]any) { m["files"] = nil; m["state_file"] = "" }), "no files in ledger/", false},
		{"state file not listed", manifest(func(m map[string]any) {
			var keep []any
			for _, f := range m["files"].([]any) {
				if f.(map[string]any)["path"] != StateFileName {
					keep = append(keep, f)
				}
			}
			m["files"] = keep
		}), `file "distribute.state": state file not listed`, false},
		{"state file renamed", manifest(func(m map[string]any) { m["state_file"] = "x.state" }), `state_file is "x.state"`, false},
		{"ledger dir renamed", manifest(func(m map[string]any) { m["ledger"] = "db" }), `ledger is "db"`, false},
		{"bad name", manifest(func(m map[string]any) { m["name"] = "../up" }), `snapshot name "../up"`, false},
		{"no created_at", manifest(func(m map[string]any) { delete(m, "created_at") }), "created_at is missing", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copySnapshot(t, src)
			if _, err := Verify(context.Background(), dir); err != nil {
				t.Fatalf("undamaged copy does not verify: %v", err)
			}
			tt.damage(t, dir)
			_, err := Verify(context.Background(), dir)
			if err == nil {
				t.Fatal("Verify accepted a damaged snapshot")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Verify: err = %v, want naming %q", err, tt.want)
			}
			if errors.Is(err, ErrCorrupt) == tt.notCorr {
				t.Errorf("errors.Is(err, ErrCorrupt) = %v, want %v", !tt.notCorr, !tt.notCorr)
			}
			if tt.notCorr && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("err = %v, want fs.ErrNotExist", err)
			}
		})
	}
	// The original (whose sstables are the live DB's) was never touched.
	if _, err := Verify(context.Background(), src); err != nil {
		t.Fatalf("original snapshot: %v", err)
	}
}

func TestVerifyListsEveryProblem(t *testing.T) {
	f := newFixture(t, 1000)
	f.create(t, "snap")
	dir := copySnapshot(t, filepath.Join(f.root, "snap"))
	if err := os.WriteFile(filepath.Join(dir, "a"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(context.Background(), dir)
	for _, want := range []string{"a: unexpected file", "b: unexpected file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Verify: err = %v, want containing %q", err, want)
		}
	}
	// More than maxProblems problems are summarised.
	for i := range maxProblems + 5 {
		if err := os.WriteFile(filepath.Join(dir, "extra"+string(rune('A'+i))), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Verify(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "and 7 more problems") {
		t.Errorf("Verify: err = %v, want a summary of 7 more problems", err)
	}
}

func TestVerifyCancelled(t *testing.T) {
	f := newFixture(t, 1000)
	f.create(t, "snap")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, filepath.Join(f.root, "snap")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with a cancelled context: err = %v", err)
	}
}
