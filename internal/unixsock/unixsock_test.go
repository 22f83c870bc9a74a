package unixsock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "a.sock")
	ln, err := Listen(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	if _, err := Listen(p); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Listen = %v", err)
	}
	ln.Close()
	// A stale file (no listener) is replaced.
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln2, err := Listen(p)
	if err != nil {
		t.Fatalf("Listen over a stale file: %v", err)
	}
	ln2.Close()
}
