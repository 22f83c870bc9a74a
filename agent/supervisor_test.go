package agent

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// realBinary returns the resolved path of a system program, so that the
// supervisor's executable check (/proc/PID/exe) matches it.
func realBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found: %v", name, err)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// awaitExit waits until the supervised process is no longer running.
func awaitExit(t *testing.T, s *supervisor) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, ok := s.running(); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the supervised process did not exit")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSupervisorCountsCrashesInARow: a process that exits right after each
// start is counted once per restart; another spec, or a process that keeps
// running, counts zero.
func TestSupervisorCountsCrashesInARow(t *testing.T) {
	dir := t.TempDir()
	s := newSupervisor("node", filepath.Join(dir, "node.pid"), slog.New(slog.DiscardHandler))
	ctx := context.Background()
	crashing := &procSpec{Binary: realBinary(t, "sh"), Args: []string{"-c", "exit 3"}, Log: filepath.Join(dir, "crash.log")}
	if got := s.crashesInARow(); got != 0 {
		t.Fatalf("before any start: %d crashes, want 0", got)
	}
	if err := s.start(ctx, crashing); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 3; want++ {
		awaitExit(t, s)
		if err := s.converge(ctx, true); err != nil {
			t.Fatal(err)
		}
		if got := s.crashesInARow(); got != want {
			t.Fatalf("after %d restarts: %d crashes in a row, want %d", want, got, want)
		}
	}
	awaitExit(t, s)

	steady := &procSpec{Binary: realBinary(t, "sleep"), Args: []string{"60"}, Log: filepath.Join(dir, "steady.log")}
	if err := s.start(ctx, steady); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.stop(context.Background()) })
	if got := s.crashesInARow(); got != 0 {
		t.Fatalf("a new spec: %d crashes in a row, want 0", got)
	}
	if err := s.converge(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := s.crashesInARow(); got != 0 {
		t.Fatalf("a running process: %d crashes in a row, want 0", got)
	}
	if err := s.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.crashesInARow(); got != 0 {
		t.Fatalf("stopped on purpose: %d crashes in a row, want 0", got)
	}
}
