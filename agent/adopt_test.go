package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/internal/proc"
)

// copyBinary copies a system program into dir under name, so a test can
// replace it.
func copyBinary(t *testing.T, sys, dir, name string) string {
	t.Helper()
	raw, err := os.ReadFile(realBinary(t, sys))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// startLeftOver starts bin as a process an earlier agent left running:
// detached, its pid in pidPath.
func startLeftOver(t *testing.T, bin, pidPath string) int {
	t.Helper()
	pid, err := proc.StartDetached(bin, []string{"300"}, nil, pidPath+".log", pidPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(context.Background(), pid, bin, 0) })
	return pid
}

func alive(pid int) bool { _, ok := proc.Executable(pid); return ok }

// TestSupervisorAdoption: a process found through its pid file is adopted
// (not restarted) when its running image is the expected binary, and
// refused — stopped, with ErrAdoptRefused logged, then replaced by a
// verified start — when it is not.
func TestSupervisorAdoption(t *testing.T) {
	ctx := context.Background()
	notVerified := errors.New("not the release's binary")
	tests := []struct {
		name string
		// tamper changes the world after the process started; image is
		// the spec's expected image (nil: the file's content).
		tamper    func(t *testing.T, bin string)
		image     func(bin string) func() (string, error)
		wantAdopt bool
	}{
		{name: "same image adopted", wantAdopt: true},
		{name: "release's image adopted", image: func(bin string) func() (string, error) {
			return func() (string, error) { return proc.FileSHA256(bin) }
		}, wantAdopt: true},
		{name: "another image than the release's refused", image: func(string) func() (string, error) {
			return func() (string, error) { return proc.FileSHA256(realBinary(t, "true")) }
		}},
		{name: "binary replaced on disk after the start refused", tamper: func(t *testing.T, bin string) {
			other := copyBinary(t, "true", filepath.Dir(bin), "other")
			if err := os.Rename(other, bin); err != nil { // the running image is now a deleted file
				t.Fatal(err)
			}
		}},
		{name: "expected image unknown refused", image: func(string) func() (string, error) {
			return func() (string, error) { return "", notVerified }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := copyBinary(t, "sleep", dir, "sleeper")
			pidPath := filepath.Join(dir, "node.pid")
			pid := startLeftOver(t, bin, pidPath)
			if tt.tamper != nil {
				tt.tamper(t, bin)
			}
			s := newSupervisor("node", pidPath, slog.New(slog.DiscardHandler))
			spec := &procSpec{Binary: bin, Args: []string{"300"}, Log: pidPath + ".log",
				// A refused process is replaced only by a verified one:
				// here none verifies, so nothing starts.
				Verify: func() error { return notVerified }}
			if tt.image != nil {
				spec.Image = tt.image(bin)
			}
			s.set(spec)
			err := s.converge(ctx, false)
			if tt.wantAdopt {
				if err != nil {
					t.Fatalf("converge = %v, want the process adopted", err)
				}
				if got, _, ok := s.running(); !ok || got != pid {
					t.Fatalf("running pid %d (alive %t), want the adopted %d", got, ok, pid)
				}
				// Adopted once: later rounds do not hash it again, and
				// keep it.
				if err := s.converge(ctx, false); err != nil || !alive(pid) {
					t.Fatalf("second converge = %v, alive %t", err, alive(pid))
				}
				return
			}
			if !errors.Is(err, ErrStartRefused) {
				t.Fatalf("converge = %v, want the refused process replaced by a verified start (refused here)", err)
			}
			if alive(pid) {
				t.Fatalf("pid %d still runs after its adoption was refused", pid)
			}
		})
	}
}

// TestStopModes: an agent stopped for any cause but ErrDetach stops its
// node and distribution; one stopped with ErrDetach leaves them running,
// and a restarted agent's supervisors adopt them without restarting them.
func TestStopModes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	nodeBin := copyBinary(t, "sleep", dir, "teeup-node")
	distBin := copyBinary(t, "sleep", dir, "teeup-distribute")
	log := slog.New(slog.DiscardHandler)
	newAgent := func() *Agent {
		h := &realHost{
			node: newSupervisor("node", filepath.Join(dir, "node.pid"), log),
			dist: newSupervisor("distribute", filepath.Join(dir, "distribute.pid"), log),
		}
		return &Agent{log: log, host: h}
	}
	nodeSpec := &procSpec{Binary: nodeBin, Args: []string{"300"}, Log: filepath.Join(dir, "node.log")}
	distSpec := &procSpec{Binary: distBin, Args: []string{"300"}, Log: filepath.Join(dir, "dist.log")}
	a := newAgent()
	if err := a.host.node.start(ctx, nodeSpec); err != nil {
		t.Fatal(err)
	}
	if err := a.host.dist.start(ctx, distSpec); err != nil {
		t.Fatal(err)
	}
	nodePID, _, _ := a.host.node.running()
	distPID, _, _ := a.host.dist.running()
	t.Cleanup(func() {
		_ = proc.Stop(ctx, nodePID, nodeBin, 0)
		_ = proc.Stop(ctx, distPID, distBin, 0)
	})

	a.stopChildren(ErrDetach)
	if !alive(nodePID) || !alive(distPID) {
		t.Fatalf("after a detaching stop: node alive %t, distribution alive %t; want both running", alive(nodePID), alive(distPID))
	}

	b := newAgent() // the restarted agent
	b.host.node.set(nodeSpec)
	b.host.dist.set(distSpec)
	for _, s := range []*supervisor{b.host.node, b.host.dist} {
		if err := s.converge(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	if p, _, _ := b.host.node.running(); p != nodePID {
		t.Fatalf("restarted agent runs node pid %d, want the adopted %d", p, nodePID)
	}
	if p, _, _ := b.host.dist.running(); p != distPID {
		t.Fatalf("restarted agent runs distribution pid %d, want the adopted %d", p, distPID)
	}

	b.stopChildren(ErrStopped)
	if alive(nodePID) || alive(distPID) {
		t.Fatalf("after a stop: node alive %t, distribution alive %t; want both stopped", alive(nodePID), alive(distPID))
	}
}

// TestSignalContext: SIGUSR2 cancels with ErrDetach, SIGTERM with
// ErrStopped.
func TestSignalContext(t *testing.T) {
	for _, tt := range []struct {
		sig  syscall.Signal
		want error
	}{{DetachSignal, ErrDetach}, {syscall.SIGTERM, ErrStopped}} {
		ctx, stop := SignalContext(context.Background())
		if err := syscall.Kill(os.Getpid(), tt.sig); err != nil {
			t.Fatal(err)
		}
		<-ctx.Done()
		if got := context.Cause(ctx); !errors.Is(got, tt.want) {
			t.Errorf("%v: cause %v, want %v", tt.sig, got, tt.want)
		}
		stop()
	}
}

// TestSupervisorFindsAProcessItsPidFileMissed: the agent died after it
// started a process but before the pid file named it (the pid file still
// names the process stopped before). A restarted supervisor finds the
// process by its marker, records it, adopts it instead of starting a
// second one beside it, and a stop ends it; a process carrying another
// supervisor's marker (another host's node on the same machine) is never
// touched.
func TestSupervisorFindsAProcessItsPidFileMissed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bin := copyBinary(t, "sleep", dir, "teeup-node")
	pidPath := filepath.Join(dir, "node.pid")
	s := newSupervisor("node", pidPath, slog.New(slog.DiscardHandler))
	spec := &procSpec{Binary: bin, Args: []string{"300"}, Log: filepath.Join(dir, "node.log")}

	// Started with the marker; its pid went to a scratch file, as if the
	// write to pidPath never happened.
	pid, err := proc.StartDetached(bin, spec.Args, []string{s.marker()}, spec.Log, filepath.Join(dir, "scratch.pid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(ctx, pid, bin, 0) })
	// Another supervisor's process (another host) runs the same binary.
	other := newSupervisor("node", filepath.Join(dir, "other", "node.pid"), slog.New(slog.DiscardHandler))
	otherPID, err := proc.StartDetached(bin, spec.Args, []string{other.marker()}, spec.Log, filepath.Join(dir, "other.pid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(ctx, otherPID, bin, 0) })
	// The pid file names a process that has exited.
	dead, err := proc.StartDetached(realBinary(t, "true"), nil, nil, spec.Log, pidPath)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(dead) {
		if time.Now().After(deadline) {
			t.Fatal("true did not exit")
		}
		time.Sleep(5 * time.Millisecond)
	}

	s.set(spec)
	if err := s.converge(ctx, false); err != nil {
		t.Fatal(err)
	}
	got, _, ok := s.running()
	if !ok || got != pid {
		t.Fatalf("running pid %d (alive %t), want the found %d", got, ok, pid)
	}
	if p, ok := proc.ReadPID(pidPath, bin); !ok || p != pid {
		t.Fatalf("pid file names %d (alive %t), want %d", p, ok, pid)
	}
	if err := s.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d still runs after stop", pid)
	}
	if !alive(otherPID) {
		t.Fatal("stop ended another supervisor's process")
	}
	if _, _, ok := s.running(); ok {
		t.Fatal("a process still counts as running after stop")
	}
}
