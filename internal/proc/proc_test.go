package proc

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func resolved(t *testing.T, name string) string {
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

// TestStop: a process that honours SIGTERM ends within the grace; one that
// ignores it is killed after the grace; a cancelled context ends the wait
// with its error and leaves the process running.
func TestStop(t *testing.T) {
	sh := resolved(t, "sh")
	tests := []struct {
		name    string
		script  string
		grace   time.Duration
		cancel  bool
		wantErr error
		alive   bool
	}{
		{name: "honours SIGTERM", script: "exec sleep 300", grace: 30 * time.Second},
		{name: "ignores SIGTERM: killed after the grace", script: "trap '' TERM; while :; do sleep 0.05; done", grace: 200 * time.Millisecond},
		{name: "context cancelled", script: "trap '' TERM; while :; do sleep 0.05; done", grace: 30 * time.Second, cancel: true, wantErr: context.Canceled, alive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pid, err := StartDetached(sh, []string{"-c", tt.script}, nil, filepath.Join(dir, "log"), filepath.Join(dir, "pid"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			bin, _ := Executable(pid)
			if tt.script == "exec sleep 300" {
				// exec replaces sh: wait until the image is sleep's.
				deadline := time.Now().Add(10 * time.Second)
				for filepath.Base(bin) != "sleep" && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
					bin, _ = Executable(pid)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			err = Stop(ctx, pid, bin, tt.grace)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Stop = %v, want %v", err, tt.wantErr)
			}
			if got := Runs(pid, bin); got != tt.alive {
				t.Fatalf("running after Stop: %t, want %t", got, tt.alive)
			}
		})
	}
}

// TestFindByEnv: only processes carrying the exact entry are found.
func TestFindByEnv(t *testing.T) {
	dir := t.TempDir()
	sleep := resolved(t, "sleep")
	a, err := StartDetached(sleep, []string{"300"}, []string{"TEEUP_TEST_MARK=" + dir + "/a"}, filepath.Join(dir, "log"), filepath.Join(dir, "a.pid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Stop(context.Background(), a, sleep, 0) })
	b, err := StartDetached(sleep, []string{"300"}, []string{"TEEUP_TEST_MARK=" + dir + "/ab"}, filepath.Join(dir, "log"), filepath.Join(dir, "b.pid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Stop(context.Background(), b, sleep, 0) })
	got := FindByEnv("TEEUP_TEST_MARK=" + dir + "/a")
	if len(got) != 1 || got[0] != a {
		t.Fatalf("FindByEnv = %v, want [%d]", got, a)
	}
	if err := Stop(context.Background(), a, sleep, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := FindByEnv("TEEUP_TEST_MARK=" + dir + "/a"); len(got) != 0 {
		t.Fatalf("FindByEnv after stop = %v, want none", got)
	}
}
