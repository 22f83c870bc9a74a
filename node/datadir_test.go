package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/teeup/teeup/internal/fsutil"
)

// A data directory that already exists with group or other access is
// refused before anything is read or written in it, with an error saying
// how to fix it.
func TestRunRefusesSharedDataDir(t *testing.T) {
	dir := t.TempDir()
	raw, err := json.Marshal(govGenesis())
	if err != nil {
		t.Fatal(err)
	}
	genesis := filepath.Join(dir, "genesis.json")
	if err := os.WriteFile(genesis, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), Config{NodeID: 1, Genesis: genesis, DataDir: data, Platform: filepath.Join(dir, "platform")},
		Options{Stderr: io.Discard})
	if !errors.Is(err, fsutil.ErrNotPrivate) {
		t.Fatalf("Run over a 0755 data dir: %v, want fsutil.ErrNotPrivate", err)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 0 {
		t.Fatalf("the refused data dir holds %d entries", len(ents))
	}
}
