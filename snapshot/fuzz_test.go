package snapshot

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzOpenManifest feeds arbitrary bytes to Open as manifest.json. Open must
// not panic; whatever it accepts must only name clean paths inside the
// snapshot (under ledger/ or the state file), and must survive an
// encode/decode round trip unchanged.
func FuzzOpenManifest(f *testing.F) {
	sum := strings.Repeat("ab", 32)
	valid := Manifest{
		Name:      "pre-v2",
		CreatedAt: time.Date(2026, 11, 1, 12, 0, 0, 5, time.UTC),
		Labels:    map[string]string{"chain_id": "test", "height": "100"},
		Files: []File{
			{Path: "distribute.state", Size: 18, SHA256: sum},
			{Path: "ledger/000005.sst", Size: 1024, SHA256: sum},
			{Path: "ledger/MANIFEST-000001", Size: 100, SHA256: sum},
		},
		Ledger:    LedgerSubdir,
		StateFile: StateFileName,
	}
	raw, err := json.Marshal(valid)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := parseManifest(raw); err != nil {
		f.Fatalf("valid seed rejected: %v", err)
	}
	f.Add(raw)
	for _, evil := range []string{"../x", "ledger/../../x", "/etc/passwd", `ledger\..\x`, "ledger//x", "ledger/./x", "ledger/", "manifest.json", ""} {
		f.Add([]byte(strings.Replace(string(raw), "ledger/000005.sst", evil, 1)))
	}
	f.Add([]byte(strings.Replace(string(raw), `"ledger":"ledger"`, `"ledger":".."`, 1)))
	f.Add([]byte(strings.Replace(string(raw), `"state_file":"distribute.state"`, `"state_file":"../distribute.state"`, 1)))
	f.Add(append(raw, raw...))
	f.Add([]byte(`{"name":"a","NAME":"b"}`))
	f.Add([]byte("null"))
	f.Add([]byte("{"))
	f.Add([]byte{})

	// One directory per fuzzing process; inputs run one at a time in it.
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Open(dir)
		if err != nil {
			if m != nil {
				t.Fatal("Open returned a manifest with an error")
			}
			return
		}
		for _, file := range m.Files {
			p := file.Path
			local := filepath.FromSlash(p)
			if !filepath.IsLocal(local) || path.Clean(p) != p || strings.ContainsRune(p, '\\') || p == ManifestFile {
				t.Fatalf("Open accepted path %q", p)
			}
			if !strings.HasPrefix(p, LedgerSubdir+"/") && p != StateFileName {
				t.Fatalf("Open accepted path %q outside the snapshot layout", p)
			}
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseManifest(again)
		if err != nil {
			t.Fatalf("re-encoded manifest rejected: %v", err)
		}
		if !back.CreatedAt.Equal(m.CreatedAt) {
			t.Fatalf("created_at %v became %v", m.CreatedAt, back.CreatedAt)
		}
		back.CreatedAt = m.CreatedAt
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip changed the manifest: %+v became %+v", m, back)
		}
	})
}
