package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/proc"
)

// procSpec is what a supervised process should run.
type procSpec struct {
	Binary string
	Args   []string
	Log    string
	// Verify, if set, runs before every start of the process (first
	// start, restart after an exit, explicit start); an error refuses the
	// start. Inputs are the files it reads: while they are unchanged a
	// refused spec is not verified again.
	Verify func() error
	Inputs []string
	// Image, if set, returns the lower-case hex SHA-256 the running
	// image of an adopted process must have (its verified release's);
	// unset, the binary file's current content is the reference.
	Image func() (string, error)
}

// ErrStartRefused is wrapped by the errors of a start that the spec's
// pre-start verification refused.
var ErrStartRefused = errors.New("refusing to start")

// refusal is a spec whose verification failed: the supervisor does not
// start it again until its input files change or another spec is wanted.
type refusal struct {
	spec  *procSpec
	err   error
	since time.Time
	files []fileStamp
}

// fileStamp identifies a file's content well enough to notice that it was
// replaced or written: size, modification and change times, inode.
type fileStamp struct {
	path         string
	size         int64
	mod, changed time.Time
	ino          uint64
	missing      bool
}

func stampFiles(paths []string) []fileStamp {
	out := make([]fileStamp, 0, len(paths))
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			out = append(out, fileStamp{path: p, missing: true})
			continue
		}
		st := fileStamp{path: p, size: fi.Size(), mod: fi.ModTime()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.ino, st.changed = sys.Ino, time.Unix(sys.Ctim.Sec, sys.Ctim.Nsec)
		}
		out = append(out, st)
	}
	return out
}

func (s *procSpec) equal(o *procSpec) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Binary == o.Binary && slices.Equal(s.Args, o.Args) && s.Log == o.Log
}

// supervisor keeps one process in its desired state: running a given
// binary, or stopped. It starts a missing process with exponential
// back-off, stops one that runs another binary, and adopts a process that
// survived an agent restart (found through its pid file).
type supervisor struct {
	name    string
	pidPath string
	log     *slog.Logger

	// act serialises every action on the process (start, stop, converge),
	// so the periodic loop and an explicit request never both start it.
	act sync.Mutex

	mu       sync.Mutex
	desired  *procSpec
	last     *procSpec // what was started last
	failures int       // consecutive unexpected exits of the same spec
	nextTry  time.Time
	started  time.Time
	refused  *refusal // the desired spec's last verification failed
	// vouched is the pid of the live process known to run the desired
	// binary: started by this supervisor after verification, or adopted
	// after its running image was checked (adopt.go).
	vouched int
}

func newSupervisor(name, pidPath string, log *slog.Logger) *supervisor {
	return &supervisor{name: name, pidPath: pidPath, log: log.With("process", name)}
}

// supervisedEnv is the environment variable every supervised process is
// started with, its value the supervisor's absolute pid file path: it
// names the process as this supervisor's even when its pid never reached
// the pid file (the agent died between the start and the write, or a
// fault killed it there).
const supervisedEnv = "TEEUP_SUPERVISED"

// marker is the environment entry this supervisor's processes carry.
func (s *supervisor) marker() string {
	p, err := filepath.Abs(s.pidPath)
	if err != nil {
		p = s.pidPath
	}
	return supervisedEnv + "=" + p
}

// running returns the pid and executable of the live supervised process:
// the one the pid file names, or else one started with this supervisor's
// marker whose pid the file never received — its pid is then written to
// the file, so every later action (adopt, stop, a rollback's stop) finds
// it, instead of a second process being started beside it.
func (s *supervisor) running() (int, string, bool) {
	if pid, exe, ok := proc.PIDFromFile(s.pidPath); ok {
		return pid, exe, true
	}
	for _, pid := range proc.FindByEnv(s.marker()) {
		exe, ok := proc.Executable(pid)
		if !ok {
			continue
		}
		s.log.Warn("found a process this agent started whose pid file did not name it (the agent stopped while starting it); tracking it", "pid", pid, "binary", exe)
		if err := fsutil.WriteFileAtomic(s.pidPath, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			s.log.Warn("record the found process's pid", "pid", pid, "err", err)
		}
		return pid, exe, true
	}
	return 0, "", false
}

// set changes the desired state without acting; the loop converges.
func (s *supervisor) set(spec *procSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.desired = spec
}

// refusedStart returns why the desired process is not started, if its
// verification refused it.
func (s *supervisor) refusedStart() (refusal, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil || !s.refused.spec.equal(s.desired) {
		return refusal{}, false
	}
	return *s.refused, true
}

// want returns the desired state.
func (s *supervisor) want() *procSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desired
}

// crashesInARow returns how many times in a row the desired process
// ended by itself soon after it was started (each one followed by a
// restart); 0 when it last ran long enough or is not wanted.
func (s *supervisor) crashesInARow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.desired == nil || !s.last.equal(s.desired) {
		return 0
	}
	return s.failures
}

// stop sets the desired state to stopped and stops the process now.
func (s *supervisor) stop(ctx context.Context) error {
	s.act.Lock()
	defer s.act.Unlock()
	s.set(nil)
	return s.stopLocked(ctx)
}

// maxStrays bounds how many processes one stop ends: the pid file's and
// any found by the supervisor's marker.
const maxStrays = 8

func (s *supervisor) stopLocked(ctx context.Context) error {
	for range maxStrays {
		pid, exe, ok := s.running()
		if !ok {
			_ = os.Remove(s.pidPath)
			return nil
		}
		s.log.Info("stopping", "pid", pid, "binary", exe)
		if err := proc.StopFromFile(ctx, s.pidPath, exe, 15*time.Second); err != nil {
			return fmt.Errorf("stop %s: %w", s.name, err)
		}
	}
	return fmt.Errorf("stop %s: more than %d processes carry its marker %s", s.name, maxStrays, s.marker())
}

// start sets the desired state and starts the process now if needed.
func (s *supervisor) start(ctx context.Context, spec *procSpec) error {
	s.set(spec)
	return s.converge(ctx, true)
}

// converge moves the process towards the desired state once. force
// ignores the back-off.
func (s *supervisor) converge(ctx context.Context, force bool) error {
	s.act.Lock()
	defer s.act.Unlock()
	s.mu.Lock()
	want := s.desired
	s.mu.Unlock()
	pid, exe, alive := s.running()
	switch {
	case want == nil:
		if alive {
			return s.stopLocked(ctx)
		}
		return nil
	case alive && exe == filepath.Clean(want.Binary):
		if err := s.adopt(ctx, pid, want); err == nil {
			return nil
		}
		// Refused and stopped: start a verified process below.
	case alive:
		s.log.Info("replacing process running another binary", "pid", pid, "running", exe, "want", want.Binary)
		if err := proc.StopFromFile(ctx, s.pidPath, exe, 15*time.Second); err != nil {
			return fmt.Errorf("stop %s: %w", s.name, err)
		}
	}
	s.mu.Lock()
	crashed := s.last.equal(want) // the same process ended by itself
	if crashed && !force && time.Now().Before(s.nextTry) {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// Verify just before the start: not while backing off, and a refusal
	// is not counted as a crash.
	if err := s.verify(want, force); err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case !crashed, time.Since(s.started) > time.Minute:
		s.failures = 0 // a new process, or the last one ran long enough
	default:
		s.failures++
	}
	s.mu.Unlock()
	newPID, err := proc.StartDetached(want.Binary, want.Args, []string{s.marker()}, want.Log, s.pidPath)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.started = want, time.Now()
	s.nextTry = time.Now().Add(backoff(s.failures + 1))
	if err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	s.vouched = newPID
	if s.failures > 0 {
		s.log.Warn("restarted after an unexpected exit", "pid", newPID, "binary", want.Binary, "consecutive", s.failures)
	} else {
		s.log.Info("started", "pid", newPID, "binary", want.Binary)
	}
	return nil
}

// verify runs want's pre-start check. A refused spec whose input files
// have not changed is not checked again (unless force: an explicit
// start), so a binary that does not verify is neither started nor
// re-hashed every interval: no crash loop, one error in the log.
func (s *supervisor) verify(want *procSpec, force bool) error {
	if want.Verify == nil {
		return nil
	}
	files := stampFiles(want.Inputs)
	s.mu.Lock()
	prev := s.refused
	if prev != nil && !prev.spec.equal(want) {
		prev = nil
	}
	s.mu.Unlock()
	if prev != nil && !force && slices.Equal(prev.files, files) {
		return prev.err
	}
	err := want.Verify()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		if prev != nil {
			s.log.Info("binary verifies again: starting it", "binary", want.Binary)
		}
		s.refused = nil
		return nil
	}
	err = fmt.Errorf("%w %s: %w", ErrStartRefused, s.name, err)
	r := &refusal{spec: want, err: err, since: time.Now(), files: files}
	if prev == nil {
		s.log.Error("refusing to start: the binary does not verify against its signed release; it stays stopped until a correct binary is installed or an operator upgrades or rolls back",
			"binary", want.Binary, "err", err)
	} else {
		// Checked again because its files changed or a start was asked
		// for explicitly: still refused.
		r.since = prev.since
		s.log.Warn("still refusing to start", "binary", want.Binary, "err", err)
	}
	s.refused = r
	return err
}

func backoff(failures int) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < failures && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// run converges every interval until ctx ends.
func (s *supervisor) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// A refused start was logged once by verify.
		if err := s.converge(ctx, false); err != nil && ctx.Err() == nil && !errors.Is(err, ErrStartRefused) {
			s.log.Warn("supervise", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
