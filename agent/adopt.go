package agent

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/teeup/teeup/internal/proc"
)

// ErrAdoptRefused is wrapped by the error of a process found through its
// pid file (left running by an agent that stopped with SIGUSR2, or by a
// crash) that the agent refuses to adopt: its running image is not the
// verified binary it should run.
var ErrAdoptRefused = errors.New("refusing to adopt a running process")

// adopt decides whether the live process pid, which runs want's binary
// path, may be kept. A process this supervisor started or already
// adopted is; any other one first has its running image (/proc/PID/exe,
// the file the kernel executed, even if the path now names another file)
// hashed and compared with the image want must run. A mismatch is
// logged, the process is stopped — nothing vouches for it — and the error
// (ErrAdoptRefused) returned; the caller then starts a verified process.
// Called with s.act held.
func (s *supervisor) adopt(ctx context.Context, pid int, want *procSpec) error {
	s.mu.Lock()
	vouched := s.vouched == pid
	s.mu.Unlock()
	if vouched {
		return nil
	}
	err := checkImage(pid, want)
	if err == nil {
		s.mu.Lock()
		s.vouched = pid
		s.mu.Unlock()
		s.log.Info("adopted a running process: its image is the verified binary", "pid", pid, "binary", want.Binary)
		// After a self-upgrade (exec) this process may still be its
		// parent: reap it when it exits, so it does not linger as a
		// zombie. For any other process Wait4 returns ECHILD at once.
		go func() {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
		}()
		return nil
	}
	err = fmt.Errorf("%w %s (pid %d): %w", ErrAdoptRefused, s.name, pid, err)
	s.log.Error("refusing to adopt: the running process is not the verified binary; stopping it", "pid", pid, "binary", want.Binary, "err", err)
	if serr := proc.StopFromFile(ctx, s.pidPath, want.Binary, 15*time.Second); serr != nil {
		return errors.Join(err, fmt.Errorf("stop %s: %w", s.name, serr))
	}
	return err
}

// checkImage compares the SHA-256 of pid's running image with the one
// want's process must run.
func checkImage(pid int, want *procSpec) error {
	var expect string
	var err error
	if want.Image != nil {
		expect, err = want.Image()
	} else {
		expect, err = proc.FileSHA256(want.Binary)
	}
	if err != nil {
		return fmt.Errorf("expected image of %s: %w", want.Binary, err)
	}
	got, err := proc.ExecutableSHA256(pid)
	if err != nil {
		return err
	}
	if got != expect {
		return fmt.Errorf("its image /proc/%d/exe has SHA-256 %s, the verified %s has %s", pid, got[:16], want.Binary, expect[:min(16, len(expect))])
	}
	return nil
}
