// Package proc starts, finds and stops the background processes teeup
// supervises (nodes, agents, distribution), identifying them by pid file
// and executable name so a recycled pid is never mistaken for ours.
package proc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/teeup/teeup/internal/fsutil"
)

// StartDetached starts bin with args in its own session, appending output
// to logPath, and records its pid in pidPath. The process outlives the
// caller.
func StartDetached(bin string, args []string, env []string, logPath, pidPath string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", filepath.Base(bin), err)
	}
	pid := cmd.Process.Pid
	if err := fsutil.WriteFileAtomic(pidPath, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return 0, err
	}
	// Reap the child in the background if we are still around when it
	// exits, so it does not linger as a zombie while the caller runs.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// ReadPID returns the pid recorded in pidPath, if the process is alive and
// still runs bin (a recycled pid is not ours).
func ReadPID(pidPath, bin string) (int, bool) {
	raw, err := os.ReadFile(pidPath)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, Runs(pid, bin)
}

// Runs reports whether pid is alive and runs bin: when bin is an absolute
// path, the process's executable must be that file; otherwise its name
// must match.
func Runs(pid int, bin string) bool {
	exe, ok := Executable(pid)
	if !ok {
		return false
	}
	if filepath.IsAbs(bin) {
		return exe == filepath.Clean(bin)
	}
	return filepath.Base(exe) == filepath.Base(bin)
}

// Executable returns the executable path of a live, non-zombie process.
func Executable(pid int) (string, bool) {
	if pid <= 0 {
		return "", false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return "", false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// A zombie (state Z) has exited.
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return "", false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", false
	}
	return strings.TrimSuffix(exe, " (deleted)"), true
}

// FindByEnv returns the pids of the live processes (other than the
// caller) whose initial environment holds entry ("KEY=VALUE") exactly:
// how a supervisor finds a process it started whose pid never reached
// its pid file (the supervisor died between the start and the write).
// Processes whose environment cannot be read (another user's) are
// skipped.
func FindByEnv(entry string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte(entry)
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				if _, ok := Executable(pid); ok {
					out = append(out, pid)
				}
				break
			}
		}
	}
	return out
}

// PIDFromFile returns the pid recorded in pidPath and the executable the
// process runs, if it is alive.
func PIDFromFile(pidPath string) (int, string, bool) {
	raw, err := os.ReadFile(pidPath)
	if err != nil {
		return 0, "", false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return 0, "", false
	}
	exe, ok := Executable(pid)
	return pid, exe, ok
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then
// sends SIGKILL.
func Stop(ctx context.Context, pid int, bin string, grace time.Duration) error {
	return StopWith(ctx, pid, bin, syscall.SIGTERM, grace)
}

// StopWith is Stop with another first signal than SIGTERM (such as the
// agent's SIGUSR2, which stops it leaving its children running).
func StopWith(ctx context.Context, pid int, bin string, sig syscall.Signal, grace time.Duration) error {
	if !Runs(pid, bin) {
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop pid %d: %w", pid, err)
	}
	exited, err := awaitExit(ctx, pid, bin, grace)
	if err != nil {
		return err
	}
	if exited {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill pid %d: %w", pid, err)
	}
	for i := 0; i < 100 && Runs(pid, bin); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// awaitExit waits up to grace for pid (running bin) to exit and reports
// whether it did. On Linux ≥ 5.3 a pidfd becomes readable the moment the
// process exits, so the exit is seen at once rather than at the next
// poll; without pidfds it checks every 50 ms.
func awaitExit(ctx context.Context, pid int, bin string, grace time.Duration) (bool, error) {
	deadline := time.Now().Add(grace)
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		defer unix.Close(fd)
		for {
			if !Runs(pid, bin) {
				return true, nil
			}
			left := time.Until(deadline)
			if left <= 0 {
				return false, nil
			}
			if err := ctx.Err(); err != nil {
				return false, err
			}
			// Wake at least every 100 ms to notice ctx.
			wait := min(left, 100*time.Millisecond)
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
			if err != nil && !errors.Is(err, unix.EINTR) {
				break // fall back to polling
			}
			if n > 0 && Runs(pid, bin) {
				time.Sleep(time.Millisecond) // exited, not yet a zombie in /proc
			}
		}
	}
	for time.Now().Before(deadline) {
		if !Runs(pid, bin) {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return !Runs(pid, bin), nil
}

// StopFromFile stops the process recorded in pidPath (if it still runs
// bin) and removes the pid file.
func StopFromFile(ctx context.Context, pidPath, bin string, grace time.Duration) error {
	return StopFromFileWith(ctx, pidPath, bin, syscall.SIGTERM, grace)
}

// StopFromFileWith is StopFromFile with another first signal than SIGTERM.
func StopFromFileWith(ctx context.Context, pidPath, bin string, sig syscall.Signal, grace time.Duration) error {
	raw, err := os.ReadFile(pidPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pid file %s: %w", pidPath, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return fmt.Errorf("pid file %s: %w", pidPath, err)
	}
	if err := StopWith(ctx, pid, bin, sig, grace); err != nil {
		return err
	}
	if err := os.Remove(pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ExecutableSHA256 returns the lower-case hex SHA-256 of the image a live
// process runs, read through /proc/PID/exe: the file the kernel executed,
// even if the path now names another file or none.
func ExecutableSHA256(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", fmt.Errorf("executable of pid %d: %w", pid, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("executable of pid %d: %w", pid, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileSHA256 returns the lower-case hex SHA-256 of a file's content.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
