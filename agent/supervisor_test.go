package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
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

// levelCounter counts log records by level.
type levelCounter struct {
	mu sync.Mutex
	n  map[slog.Level]int
}

func (c *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *levelCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[slog.Level]int{}
	}
	c.n[r.Level]++
	return nil
}
func (c *levelCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *levelCounter) WithGroup(string) slog.Handler      { return c }
func (c *levelCounter) count(l slog.Level) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[l]
}

// TestSupervisorVerifiesBeforeEveryStart: a spec whose verification fails
// is not started, the refusal is reported and logged at error level once,
// and it is not checked again every interval (no crash loop, no re-hash)
// until its input files change; once they verify, the process starts.
func TestSupervisorVerifiesBeforeEveryStart(t *testing.T) {
	dir := t.TempDir()
	logs := &levelCounter{}
	s := newSupervisor("node", filepath.Join(dir, "node.pid"), slog.New(logs))
	ctx := context.Background()
	input := filepath.Join(dir, "binary")
	if err := os.WriteFile(input, []byte("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	errTampered := errors.New("tampered")
	var checks atomic.Int32
	spec := &procSpec{Binary: realBinary(t, "sleep"), Args: []string{"60"}, Log: filepath.Join(dir, "node.log"), Inputs: []string{input},
		Verify: func() error {
			checks.Add(1)
			raw, err := os.ReadFile(input)
			if err != nil || string(raw) != "genuine" {
				return errTampered
			}
			return nil
		}}
	t.Cleanup(func() { _ = s.stop(context.Background()) })

	err := s.start(ctx, spec)
	if !errors.Is(err, ErrStartRefused) || !errors.Is(err, errTampered) {
		t.Fatalf("start of a spec that does not verify: %v, want ErrStartRefused wrapping the cause", err)
	}
	for range 5 { // the periodic loop
		if err := s.converge(ctx, false); !errors.Is(err, ErrStartRefused) {
			t.Fatalf("converge: %v, want ErrStartRefused", err)
		}
	}
	if _, _, ok := s.running(); ok {
		t.Fatal("a refused spec was started")
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("verified %d times while the files did not change, want once", n)
	}
	r, ok := s.refusedStart()
	if !ok || !errors.Is(r.err, errTampered) || r.spec.Binary != spec.Binary {
		t.Fatalf("refusedStart = %+v, %v", r, ok)
	}
	if n := logs.count(slog.LevelError); n != 1 {
		t.Fatalf("%d error-level log records, want 1", n)
	}

	// The correct file is installed: the next interval verifies and starts.
	if err := os.WriteFile(input, []byte("genuine"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.converge(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.running(); !ok {
		t.Fatal("not started once the binary verifies")
	}
	if _, ok := s.refusedStart(); ok {
		t.Fatal("still reported refused after a verified start")
	}
	if n := logs.count(slog.LevelError); n != 1 {
		t.Fatalf("%d error-level log records, want 1", n)
	}
}
